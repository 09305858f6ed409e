"""Executors bound to ``gc.gpu()``: the device arena, device arrays in ``arg_dict`` and
``grad_dict``, and forward and backward passes equal to the CPU backend's, under Numba's
CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1 unless told otherwise; with a
GPU and NUMBA_ENABLE_CUDASIM=0 the same tests run on the device).

The simulator runs a Python thread per CUDA thread, so the models are tiny; what they
exercise is every kernel a training step of each model family launches, the memory plan on
the device, and the copies between host and device.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.cuda


def small_lenet(dtype="float64"):
    """LeNet's layers (convolution, tanh, max pooling, fully connected, softmax) at a size
    the simulator runs in seconds; the second convolution has stride and padding, and is
    followed by average pooling."""
    data = gc.Variable("data", dtype=dtype)
    net = gc.Convolution(data, kernel=(3, 3), num_filter=2, name="conv1")
    net = gc.Activation(net, act_type="tanh", name="tanh1")
    net = gc.Pooling(net, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool1")
    net = gc.Convolution(net, kernel=(2, 2), num_filter=3, stride=(2, 2), pad=(1, 1), name="conv2")
    net = gc.Pooling(net, pool_type="avg", kernel=(2, 2), stride=(2, 2), name="pool2")
    net = gc.FullyConnected(gc.Flatten(net), num_hidden=4, name="fc1")
    return gc.SoftmaxOutput(net, name="softmax")


MODELS = {
    "mlp": (lambda: gc.models.mlp(hidden=(3,), num_classes=3, dtype="float64"), (2, 4)),
    "linreg": (lambda: gc.models.linreg(dtype="float64"), (3, 5)),
    "lenet": (small_lenet, (2, 1, 7, 7)),
    "charlm": (
        lambda: gc.models.charlm(5, embed=3, hidden=4, stateful=True, dtype="float64"),
        (3, 2),
    ),
}


def _values(executor, rng, classes):
    """Random parameters and data; class indices for the labels and an Embedding's data."""
    indices = {name for name in executor.arg_dict if name.endswith("label")}
    if "embed_weight" in executor.arg_dict:
        indices.add("data")
    values = {}
    for name, array in executor.arg_dict.items():
        if name in indices and classes:
            values[name] = rng.integers(0, classes, array.shape).astype(array.dtype)
        else:
            values[name] = (rng.standard_normal(array.shape) * 0.5).astype(array.dtype)
    return values


def _bound_pair(name, grad_req="write", opt_level=None):
    build, data_shape = MODELS[name]
    net = build()
    cpu = net.simple_bind(gc.cpu(), grad_req=grad_req, opt_level=opt_level, data=data_shape)
    gpu = net.simple_bind(gc.gpu(), grad_req=grad_req, opt_level=opt_level, data=data_shape)
    classes = 0 if name == "linreg" else net.infer_shape(data=data_shape)[1][0][-1]
    values = _values(cpu, np.random.default_rng(0), classes)
    for executor in (cpu, gpu):
        executor.copy_params_from(values)
    return cpu, gpu


@pytest.mark.parametrize("opt_level", [0, 2])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_training_pass_on_the_gpu_equals_the_cpu(name, opt_level):
    cpu, gpu = _bound_pair(name, opt_level=opt_level)
    want = cpu.forward(is_train=True)[0].copy()
    got = gpu.forward(is_train=True)[0]
    assert not isinstance(got, np.ndarray)  # a device array, read with gc.asnumpy
    np.testing.assert_allclose(gc.asnumpy(got), want, rtol=1e-12, atol=1e-12)
    cpu.backward()
    gpu.backward()
    assert sorted(gpu.grad_dict) == sorted(cpu.grad_dict)
    for argument, gradient in cpu.grad_dict.items():
        np.testing.assert_allclose(
            gc.asnumpy(gpu.grad_dict[argument]), gradient, rtol=1e-11, atol=1e-12, err_msg=argument
        )


def test_sgd_steps_on_the_gpu_follow_the_cpu():
    """Three steps of plain SGD on the small LeNet, the update applied to both executors'
    parameters from their own gradients: the parameters stay equal to the CPU's."""
    cpu, gpu = _bound_pair("lenet")
    learning_rate = 0.5
    for _ in range(3):
        for executor in (cpu, gpu):
            executor.forward(is_train=True)
            executor.backward()
        for argument, gradient in cpu.grad_dict.items():
            if argument == "data":
                continue
            cpu.arg_dict[argument] -= learning_rate * gradient
            updated = gc.asnumpy(gpu.arg_dict[argument]) - learning_rate * gc.asnumpy(
                gpu.grad_dict[argument]
            )
            gpu.copy_params_from({argument: updated})
    for argument, value in cpu.arg_dict.items():
        np.testing.assert_allclose(
            gc.asnumpy(gpu.arg_dict[argument]), value, rtol=1e-10, atol=1e-12, err_msg=argument
        )


def test_grad_req_add_accumulates_on_the_device():
    cpu, gpu = _bound_pair("mlp", grad_req="add")
    for _ in range(2):
        for executor in (cpu, gpu):
            executor.forward(is_train=True)
            executor.backward()
    for argument, gradient in cpu.grad_dict.items():
        np.testing.assert_allclose(
            gc.asnumpy(gpu.grad_dict[argument]), gradient, rtol=1e-12, atol=1e-12
        )
        assert np.abs(gradient).sum() > 0


def test_forward_takes_host_inputs_and_float32_works():
    net = gc.models.mlp(hidden=(3,), num_classes=3)
    cpu = net.simple_bind(gc.cpu(), data=(2, 4))
    gpu = net.simple_bind(gc.gpu(), data=(2, 4))
    rng = np.random.default_rng(1)
    values = _values(cpu, rng, 3)
    data = values.pop("data")
    for executor in (cpu, gpu):
        executor.copy_params_from(values)
    want = cpu.forward(is_train=False, data=data)[0]
    got = gc.asnumpy(gpu.forward(is_train=False, data=data)[0])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    with pytest.raises(gc.ShapeError, match=r"argument 'data' expects shape \(2, 4\)"):
        gpu.forward(data=np.zeros((3, 4), np.float32))


def test_a_bad_label_on_the_gpu_raises_as_on_the_cpu():
    cpu, gpu = _bound_pair("mlp")
    labels = np.array([9.0, 7.0])  # two bad labels: the first position is the one named
    for executor in (cpu, gpu):
        with pytest.raises(ValueError, match=r"label element 0 is 9\.0") as caught:
            executor.forward(is_train=True, softmax_label=labels)
        assert "softmax (SoftmaxOutput)" in " ".join(getattr(caught.value, "__notes__", []))
    # An inference forward ignores the label, and the fault does not outlive the error.
    gc.asnumpy(gpu.forward(is_train=False)[0])
    gpu.forward(is_train=True, softmax_label=np.array([0.0, 2.0]))


def test_bind_needs_device_arrays_on_the_gpu():
    from numba import cuda

    net = gc.FullyConnected(gc.Variable("x"), num_hidden=2, name="fc")
    host = {
        "x": np.ones((3, 4), np.float32),
        "fc_weight": np.ones((2, 4), np.float32),
        "fc_bias": np.zeros(2, np.float32),
    }
    device = {name: cuda.to_device(value) for name, value in host.items()}
    words = r"args\['fc_bias'\] must be a writeable C-contiguous device array on gpu\(0\)"
    with pytest.raises(gc.DTypeError, match=words):
        net.bind(gc.gpu(), {**device, "fc_bias": host["fc_bias"]})
    executor = net.bind(gc.gpu(), device)
    assert gc.asnumpy(executor.forward()[0]).tolist() == [[4.0, 4.0]] * 3
    assert executor.arg_dict["fc_weight"] is device["fc_weight"]  # bound in place, not copied


def test_without_a_gpu_the_bind_says_what_is_missing():
    child = textwrap.dedent(
        """
        import os
        os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # no GPU, even on a machine that has one
        import graphc as gc
        try:
            gc.models.mlp().simple_bind(gc.gpu(0), data=(4, 784))
        except gc.GraphcError as error:
            print(error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    message = result.stdout.strip().splitlines()[-1]
    assert message.startswith("bind to gpu(0): ")
    assert "NUMBA_ENABLE_CUDASIM=1" in message or "no CUDA GPU" in message


def test_executors_of_one_kernel_keep_their_own_grids():
    """Two batch sizes of one net share compiled kernels but not launch grids: binding a
    small batch after a large one (whose GEMMs need more tiles) leaves the large one whole."""
    net = gc.models.mlp(hidden=(3,), num_classes=3, dtype="float64")
    large_cpu = net.simple_bind(gc.cpu(), data=(40, 4))
    large = net.simple_bind(gc.gpu(), data=(40, 4))
    values = _values(large_cpu, np.random.default_rng(3), 3)
    for executor in (large_cpu, large):
        executor.copy_params_from(values)
    net.simple_bind(gc.gpu(), data=(2, 4)).forward()
    np.testing.assert_allclose(
        gc.asnumpy(large.forward()[0]), large_cpu.forward()[0], rtol=1e-12, atol=1e-12
    )


def test_only_the_first_gpu_binds():
    with pytest.raises(
        gc.GraphcError, match=r"bind to gpu\(1\): the CUDA backend binds to gpu\(0\) only"
    ):
        gc.models.mlp().simple_bind(gc.gpu(1), data=(2, 784))


def test_elementwise_members_run_in_the_gemm_store():
    """A product whose result is exported and also read by a chain with a broadcast operand
    and a constant: one GEMM kernel computes both outputs (the anchor kept in a register,
    the chain in the store), as the CPU computes them."""
    x, w, row = gc.Variable("x"), gc.Variable("w"), gc.Variable("row")
    product = gc.dot(x, w, name="product")
    chain = gc.relu(product * 2.0 + row, name="chain")
    net = gc.Group([product, chain])
    shapes = {"x": (5, 3), "w": (3, 7), "row": (1, 7)}
    cpu = net.simple_bind(gc.cpu(), grad_req="null", type_dict={"x": "float64"}, **shapes)
    gpu = net.simple_bind(gc.gpu(), grad_req="null", type_dict={"x": "float64"}, **shapes)
    assert gpu.stats()["forward_kernels"] == 1
    rng = np.random.default_rng(4)
    values = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    for executor in (cpu, gpu):
        executor.copy_params_from(values)
        executor.forward()
    for got, want in zip(gpu.outputs, cpu.outputs):
        np.testing.assert_allclose(gc.asnumpy(got), want, rtol=1e-12, atol=1e-12)


def _epilogue_cases():
    """Groups led by every GEMM-computed anchor, with the output layouts each maps (m, n)
    to, read by a chain with a broadcast operand: (name, symbol, shapes)."""
    x, w, b, row = (gc.Variable(name) for name in ("x", "w", "b", "row"))
    fc_nd = gc.FullyConnected(x, weight=w, bias=b, num_hidden=5, flatten=False, name="fc")
    flat = gc.FullyConnected(x, weight=w, bias=b, num_hidden=5, name="fc")
    product = gc.dot(x, w, name="d")
    conv = gc.Convolution(
        x, weight=w, bias=b, kernel=(3, 3), num_filter=4, stride=(2, 1), pad=(1, 0), name="cv"
    )
    image = {"x": (2, 3, 7, 6), "w": (4, 3, 3, 3), "b": (4,), "row": (1, 4, 1, 1)}
    return [
        ("fc_nd", gc.Group([fc_nd, gc.relu(fc_nd * 2.0 + row)]),
         {"x": (2, 3, 4), "w": (5, 4), "b": (5,), "row": (2, 1, 5)}),
        ("fc_flat", gc.relu(flat + row), {"x": (3, 2, 2), "w": (5, 4), "b": (5,), "row": (3, 1)}),
        ("dot_nd", gc.tanh(product - row), {"x": (2, 3, 4), "w": (4, 5), "row": (3, 1)}),
        ("dot_0d", gc.tanh(product * row), {"x": (2, 3, 4), "w": (4, 5), "row": ()}),
        ("dot_transposed", gc.tanh(gc.dot(x, w, transpose_a=True, transpose_b=True) + row),
         {"x": (4, 3), "w": (5, 4), "row": (3, 1)}),
        ("batch_dot", gc.sigmoid(gc.batch_dot(x, w, transpose_b=True) + row),
         {"x": (3, 3, 4), "w": (3, 5, 4), "row": (3, 1, 5)}),
        ("conv", gc.relu(conv * row), image),
    ]  # fmt: skip


EPILOGUES = _epilogue_cases()


@pytest.mark.parametrize("name, net, shapes", EPILOGUES, ids=[case[0] for case in EPILOGUES])
def test_every_gemm_anchor_takes_its_epilogue(name, net, shapes):
    """One kernel per group, equal to the CPU; batch_dot has 3 products, past the
    simulator's 2 grid layers, so its loop over products runs."""
    types = {key: "float64" for key in shapes}
    cpu = net.simple_bind(gc.cpu(), grad_req="null", type_dict=types, **shapes)
    gpu = net.simple_bind(gc.gpu(), grad_req="null", type_dict=types, **shapes)
    assert gpu.stats()["forward_kernels"] == 1
    rng = np.random.default_rng(5)
    values = {key: rng.standard_normal(shape) for key, shape in shapes.items()}
    for executor in (cpu, gpu):
        executor.copy_params_from(values)
        executor.forward()
    for got, want in zip(gpu.outputs, cpu.outputs):
        np.testing.assert_allclose(gc.asnumpy(got), want, rtol=1e-12, atol=1e-12)


def test_a_convolution_data_gradient_takes_its_epilogue():
    """The backward of a convolution after relu: relu's gradient runs in the store of the
    data-gradient GEMM."""
    x, w, b = gc.Variable("x"), gc.Variable("w"), gc.Variable("b")
    conv = gc.Convolution(
        gc.relu(x), weight=w, bias=b, kernel=(3, 3), num_filter=4, stride=(2, 2), pad=(1, 1)
    )
    net = gc.MakeLoss(gc.sum(conv * conv))
    shapes = {"x": (2, 3, 7, 6), "w": (4, 3, 3, 3), "b": (4,)}
    types = {key: "float64" for key in shapes}
    cpu = net.simple_bind(gc.cpu(), type_dict=types, **shapes)
    gpu = net.simple_bind(gc.gpu(), type_dict=types, **shapes)
    fused = [launch.node.name for launch in gpu._backward_launches]
    assert any(name.startswith("fused(conv_backward_data") for name in fused), fused
    rng = np.random.default_rng(6)
    values = {key: rng.standard_normal(shape) for key, shape in shapes.items()}
    for executor in (cpu, gpu):
        executor.copy_params_from(values)
        executor.forward(is_train=True)
        executor.backward()
    for key, gradient in cpu.grad_dict.items():
        np.testing.assert_allclose(
            gc.asnumpy(gpu.grad_dict[key]), gradient, rtol=1e-11, atol=1e-11, err_msg=key
        )


def _one_hot_like_after_a_product():
    product = gc.dot(gc.Variable("x"), gc.Variable("w"), name="a")
    return product * 2.0 - gc.one_hot_like(gc.Variable("lab"), product)


INDEX_FAULTS = [
    (
        "embedding",
        lambda: gc.Embedding(gc.Variable("d"), input_dim=4, output_dim=2, name="emb"),
        {"d": np.array([1.0, 4.5, 7.0]), "emb_weight": np.ones((4, 2))},
        r"^Embedding: index element 1 is not an integer in \[0, 4\)",
    ),
    (
        "pick",
        lambda: gc.pick(gc.Variable("d"), gc.Variable("i"), axis=1),
        {"d": np.ones((3, 4)), "i": np.array([0.0, 2.0, -1.0])},
        r"^pick: index element 2 is not an integer in \[0, 4\)",
    ),
    (
        "one_hot",
        lambda: gc.one_hot(gc.Variable("i"), depth=3),
        {"i": np.array([0.0, 3.0, 1.0, 5.0])},
        r"^one_hot: index element 1 is not an integer in \[0, 3\)",
    ),
    (
        "one_hot_like_in_an_epilogue",
        _one_hot_like_after_a_product,
        {"x": np.ones((4, 3)), "w": np.ones((3, 5)), "lab": np.array([0.0, 1.0, 7.0, 9.0])},
        r"^one_hot_like: an index is not an integer in range \[0, extent\)",
    ),
]


@pytest.mark.parametrize(
    "build, values, words", [case[1:] for case in INDEX_FAULTS], ids=[c[0] for c in INDEX_FAULTS]
)
def test_a_bad_index_raises_the_cpus_error_and_is_cleared(build, values, words):
    net = build()
    shapes = {name: value.shape for name, value in values.items()}
    types = {name: "float64" for name in values}
    for ctx in (gc.cpu(), gc.gpu()):
        executor = net.simple_bind(ctx, grad_req="null", type_dict=types, **shapes)
        executor.copy_params_from(values)
        with pytest.raises(ValueError, match=words):
            executor.forward()
        good = {name: np.zeros_like(value) for name, value in values.items()}
        executor.copy_params_from(good)
        executor.forward()  # the fault flag was cleared: a good batch runs


def test_nonfinite_flags_each_array_as_the_cpu_does():
    """The training loop's gradient check: NaN and infinities flagged per array, on the
    device in one wait."""
    from numba import cuda

    from graphc.backend.target import HOST_ARRAYS
    from graphc.codegen_cuda.memory import DEVICE_ARRAYS

    arrays = [np.ones((3, 5)), np.array([1.0, np.nan]), np.full((2, 2, 2), -np.inf), np.zeros(0)]
    arrays[0][2, 4] = 7.0  # finite values only
    want = [False, True, True, False]
    assert HOST_ARRAYS.nonfinite(arrays) == want
    assert DEVICE_ARRAYS.nonfinite([cuda.to_device(array) for array in arrays]) == want
