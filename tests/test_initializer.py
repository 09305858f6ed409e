"""Initializers: MXNet's formulas, name dispatch, seeded reproducibility and clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc.training import initializer as init

pytestmark = pytest.mark.unit


def _xavier_scale(shape, factor_type="avg", magnitude=3.0):
    """MXNet's Xavier scale written out by hand for 2-D and 4-D shapes."""
    receptive = math.prod(shape[2:])
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    factor = {"avg": (fan_in + fan_out) / 2, "in": fan_in, "out": fan_out}[factor_type]
    return math.sqrt(magnitude / factor)


def test_xavier_scale_matches_the_formula_for_lenet_shapes():
    # conv1 of LeNet: fan_in = 1*25, fan_out = 20*25; fc1: fan_in 800, fan_out 500.
    assert init.Xavier().scale("conv1_weight", (20, 1, 5, 5)) == pytest.approx(math.sqrt(3 / 262.5))
    assert init.Xavier(factor_type="in").scale("fc1_weight", (500, 800)) == pytest.approx(
        math.sqrt(3 / 800)
    )
    assert init.Xavier(factor_type="out", magnitude=2).scale("fc1_weight", (500, 800)) == (
        pytest.approx(math.sqrt(2 / 500))
    )


@pytest.mark.parametrize("shape", [(20, 1, 5, 5), (500, 800)], ids=["conv", "fc"])
@pytest.mark.parametrize("factor_type", ["avg", "in", "out"])
@pytest.mark.parametrize("rnd_type", ["uniform", "gaussian"])
def test_xavier_draws_have_the_formula_bound_and_std(shape, factor_type, rnd_type):
    weight = np.empty(shape, dtype=np.float32)
    init.Xavier(rnd_type, factor_type, magnitude=3)("w_weight", weight, np.random.default_rng(7))
    scale = _xavier_scale(shape, factor_type)
    values = weight.astype(np.float64)
    if rnd_type == "uniform":
        expected_std = scale / math.sqrt(3)
        # Relative standard error of a sample std: sqrt((kurtosis - 1) / 4n), 9/5 for uniform.
        standard_error = math.sqrt(0.2 / values.size)
        assert np.abs(values).max() <= scale
        assert np.abs(values).max() > 0.95 * scale
    else:
        expected_std = scale
        standard_error = math.sqrt(0.5 / values.size)
    assert abs(values.std() / expected_std - 1) < 4 * standard_error
    assert abs(values.mean()) < 4 * expected_std / math.sqrt(values.size)


def test_xavier_values_are_numpy_draws_from_the_given_generator():
    weight = np.empty((6, 4))
    init.Xavier()("fc_weight", weight, np.random.default_rng(3))
    scale = math.sqrt(3 / 5)
    np.testing.assert_array_equal(weight, np.random.default_rng(3).uniform(-scale, scale, (6, 4)))


def test_float32_arrays_get_the_float64_draws_cast():
    single, double = np.empty((5, 3), np.float32), np.empty((5, 3), np.float64)
    init.Normal(0.3)("fc_weight", single, np.random.default_rng(1))
    init.Normal(0.3)("fc_weight", double, np.random.default_rng(1))
    np.testing.assert_array_equal(single, double.astype(np.float32))


def test_xavier_on_a_vector_weight_names_the_parameter_and_shape():
    with pytest.raises(gc.ShapeError, match=r"'scale_weight' of shape \(7,\)"):
        init.Xavier()("scale_weight", np.empty(7), np.random.default_rng(0))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: init.Xavier(rnd_type="normal"), r"rnd_type='normal'.*'uniform', 'gaussian'"),
        (lambda: init.Xavier(factor_type="sum"), r"factor_type='sum'.*'avg', 'in', 'out'"),
        (lambda: init.Xavier(magnitude=-1), r"magnitude=-1 must be a finite number >= 0"),
        (lambda: init.Uniform(-0.1), r"Uniform: scale=-0.1"),
        (lambda: init.Normal(sigma=float("nan")), r"Normal: sigma=nan"),
        (lambda: init.Orthogonal(rand_type="gaussian"), r"rand_type='gaussian'.*'normal'"),
        (lambda: init.Orthogonal(scale=-1.0), r"Orthogonal: scale=-1.0"),
    ],
)
def test_bad_attributes_name_the_attribute_and_allowed_values(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("fc1_bias", 0.0),
        ("lstm_i2h_bias", 0.0),
        ("bn1_gamma", 1.0),
        ("bn1_beta", 0.0),
        ("bn1_moving_mean", 0.0),
        ("bn1_moving_var", 1.0),
    ],
)
def test_names_other_than_weights_get_mxnet_fixed_values(name, expected):
    array = np.full(4, 9.0, dtype=np.float32)
    init.Uniform(0.5)(name, array, np.random.default_rng(0))
    assert array.tolist() == [expected] * 4


def test_an_unknown_name_is_an_error_naming_the_parameter():
    with pytest.raises(ValueError, match=r"'softmax_label' of shape \(3,\)"):
        init.Xavier()("softmax_label", np.empty(3), np.random.default_rng(0))


def test_init_weight_applies_the_rule_whatever_the_name():
    array = np.zeros(3)
    init.Constant(2.5).init_weight("lstm_init_h", array, np.random.default_rng(0))
    assert array.tolist() == [2.5, 2.5, 2.5]


def test_a_legacy_random_state_is_refused():
    with pytest.raises(TypeError, match=r"'fc_weight'.*np.random.Generator"):
        init.Uniform()("fc_weight", np.empty((2, 2)), np.random.RandomState(0))


def test_uniform_normal_zero_one_constant():
    rng = np.random.default_rng(5)
    uniform, normal = np.empty((400, 250)), np.empty((400, 250))
    init.Uniform(0.2)("a_weight", uniform, rng)
    init.Normal(0.3)("b_weight", normal, rng)
    assert uniform.min() >= -0.2 and uniform.max() <= 0.2
    assert uniform.std() == pytest.approx(0.2 / math.sqrt(3), rel=0.01)
    assert normal.std() == pytest.approx(0.3, rel=0.01)
    arrays = {name: np.full((2, 3), 7.0) for name in ("z_weight", "o_weight", "c_weight")}
    init.Zero()("z_weight", arrays["z_weight"], rng)
    init.One()("o_weight", arrays["o_weight"], rng)
    init.Constant([1.0, 2.0, 3.0])("c_weight", arrays["c_weight"], rng)
    assert arrays["z_weight"].sum() == 0.0
    assert arrays["o_weight"].sum() == 6.0
    assert arrays["c_weight"].tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]


def test_constant_that_does_not_broadcast_names_both_shapes():
    with pytest.raises(gc.ShapeError, match=r"shape \(2,\).*'fc_weight' of shape \(2, 3\)"):
        init.Constant([1.0, 2.0])("fc_weight", np.empty((2, 3)), np.random.default_rng(0))


@pytest.mark.parametrize("rand_type", ["uniform", "normal"])
@pytest.mark.parametrize(
    "shape", [(32, 8), (8, 32), (12, 12), (4, 2, 3)], ids=["tall", "wide", "square", "3d"]
)
def test_orthogonal_gives_orthonormal_rows_or_columns_times_scale(shape, rand_type):
    weight = np.empty(shape)
    init.Orthogonal(scale=1.5, rand_type=rand_type)(
        "lstm_h2h_weight", weight, np.random.default_rng(2)
    )
    matrix = weight.reshape(shape[0], -1)
    rows, cols = matrix.shape
    # MXNet keeps u when it has the matrix's shape (rows >= cols), else v: the smaller side
    # is the orthonormal one.
    gram = matrix.T @ matrix if rows >= cols else matrix @ matrix.T
    np.testing.assert_allclose(gram, 1.5**2 * np.eye(min(rows, cols)), atol=1e-12)


def test_lstm_bias_sets_only_the_forget_gate():
    bias = np.empty(4 * 3)
    init.LSTMBias(forget_bias=2.0).init_weight("lstm_i2h_bias", bias, np.random.default_rng(0))
    assert bias.tolist() == [0.0] * 3 + [2.0] * 3 + [0.0] * 6
    with pytest.raises(gc.ShapeError, match=r"'lstm_i2h_bias' has shape \(6,\)"):
        init.LSTMBias().init_weight("lstm_i2h_bias", np.empty(6), np.random.default_rng(0))


def _lstm_params(dtype=np.float32):
    hidden, features = 4, 3
    return {
        "lstm_i2h_weight": np.empty((4 * hidden, features), dtype),
        "lstm_h2h_weight": np.empty((4 * hidden, hidden), dtype),
        "lstm_i2h_bias": np.full(4 * hidden, 5.0, dtype),
        "lstm_h2h_bias": np.full(4 * hidden, 5.0, dtype),
        "fc1_weight": np.empty((6, hidden), dtype),
        "fc1_bias": np.full(6, 5.0, dtype),
    }


def test_initialize_is_reproducible_and_independent_of_dict_order():
    first, second = _lstm_params(), _lstm_params()
    reversed_order = dict(reversed(list(_lstm_params().items())))
    init.initialize(first, init.Xavier(), seed=11)
    init.initialize(second, init.Xavier(), seed=11)
    init.initialize(reversed_order, init.Xavier(), seed=11)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
        np.testing.assert_array_equal(first[name], reversed_order[name])
    other_seed = init.initialize(_lstm_params(), init.Xavier(), seed=12)
    assert not np.array_equal(first["fc1_weight"], other_seed["fc1_weight"])


def test_initialize_draws_in_sorted_name_order_from_one_generator():
    params = init.initialize(_lstm_params(np.float64), "xavier", seed=4)
    rng = np.random.default_rng(4)
    expected = {}
    for name in sorted(params):
        if name.endswith("weight"):
            scale = _xavier_scale(params[name].shape)
            expected[name] = rng.uniform(-scale, scale, params[name].shape)
        else:
            expected[name] = np.zeros(params[name].shape)
    for name, values in expected.items():
        np.testing.assert_array_equal(params[name], values)


def test_initialize_defaults_to_mxnet_module_uniform_and_zero_biases():
    params = init.initialize(_lstm_params(), seed=0)
    assert np.abs(params["fc1_weight"]).max() <= 0.01
    assert params["fc1_weight"].std() > 0
    for name in ("lstm_i2h_bias", "lstm_h2h_bias", "fc1_bias"):
        assert not params[name].any(), name


def test_overrides_take_precedence_and_the_first_matching_pattern_wins():
    overrides = {
        r"lstm_h2h_weight$": init.Orthogonal(scale=1.0),
        r"lstm_.*_weight$": init.Constant(0.5),
        r"lstm_i2h_bias$": init.LSTMBias(forget_bias=1.0),
    }
    params = init.initialize(_lstm_params(), "xavier", seed=0, overrides=overrides)
    h2h = params["lstm_h2h_weight"].astype(np.float64)
    np.testing.assert_allclose(h2h.T @ h2h, np.eye(4), atol=1e-6)
    assert (params["lstm_i2h_weight"] == 0.5).all()
    assert params["lstm_i2h_bias"].tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 8
    assert not params["lstm_h2h_bias"].any()
    assert np.abs(params["fc1_weight"]).max() <= _xavier_scale((6, 4))


def test_an_override_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match=r"override pattern 'lstm_i2h_wieght' matches none"):
        init.initialize(_lstm_params(), overrides={"lstm_i2h_wieght": init.Zero()})


def test_mixed_picks_the_first_match_and_keeps_name_dispatch():
    mixed = init.Mixed([r".*h2h", r".*"], [init.Constant(3.0), "one"])
    rng = np.random.default_rng(0)
    h2h_weight, h2h_bias, fc_weight = np.empty((2, 2)), np.empty(2), np.empty((2, 2))
    mixed("lstm_h2h_weight", h2h_weight, rng)
    mixed("lstm_h2h_bias", h2h_bias, rng)
    mixed("fc_weight", fc_weight, rng)
    assert (h2h_weight == 3.0).all() and (h2h_bias == 0.0).all() and (fc_weight == 1.0).all()
    with pytest.raises(ValueError, match=r"'fc_weight' matches none of the patterns \['lstm'\]"):
        init.Mixed(["lstm"], [init.Zero()])("fc_weight", np.empty((2, 2)), rng)
    with pytest.raises(ValueError, match="2 patterns but 1 initializers"):
        init.Mixed(["a", "b"], [init.Zero()])


def test_create_by_name_instance_and_unknown_name():
    assert init.create("Xavier", factor_type="in") == init.Xavier(factor_type="in")
    assert init.create("orthogonal") == init.Orthogonal(1.414, "uniform")
    assert isinstance(init.create("zero"), init.Zero) and isinstance(init.create("one"), init.One)
    assert init.create("uniform") == init.Uniform(0.07)
    assert init.create("normal") == init.Normal(0.01)
    instance = init.Uniform(0.3)
    assert init.create(instance) is instance
    with pytest.raises(ValueError, match=r"unknown initializer 'glorot'.*'orthogonal'"):
        init.create("glorot")
