"""Initializers: fill parameter arrays in place, as MXNet's ``mx.init`` does, from a seeded
NumPy generator so that every run starts from the same values.

Called on a parameter, an initializer picks its rule from the end of the name, as MXNet's
does: ``bias``, ``beta`` and ``moving_mean`` are zeros, ``gamma`` and ``moving_var`` ones,
and ``weight`` gets the initializer's own weight rule (``Xavier``, ``Uniform``, ...). A name
with any other ending is an error. :meth:`Initializer.init_weight` applies the weight rule
whatever the name, which is how ``initialize(..., overrides=...)`` and MXNet's per-variable
``init=`` work.

Every rule draws its values in float64 from the generator it is given and casts them to the
array's dtype on assignment, so float32 and float64 parameters see the same draws.

>>> import numpy as np
>>> from graphc.training.initializer import Xavier, initialize
>>> params = {"fc1_weight": np.empty((4, 6), np.float32), "fc1_bias": np.empty(4, np.float32)}
>>> _ = initialize(params, Xavier(), seed=0)
>>> bool(np.abs(params["fc1_weight"]).max() <= np.sqrt(3 / 5)), params["fc1_bias"].tolist()
(True, [0.0, 0.0, 0.0, 0.0])
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from graphc.ir.errors import ShapeError

Shape = tuple[int, ...]

# The values MXNet gives parameters by the end of their names, whatever the initializer; only
# names ending in "weight" get the initializer's own rule. Checked with str.endswith, as
# MXNet does, so a bare "bias" or "weight" variable is covered too.
FIXED_BY_SUFFIX: tuple[tuple[str, float], ...] = (
    ("bias", 0.0),
    ("gamma", 1.0),
    ("beta", 0.0),
    ("moving_mean", 0.0),
    ("moving_var", 1.0),
)


class Initializer:
    """Base class: dispatch on the parameter name, and a weight rule the subclasses define.

    A subclass implements :meth:`weight_values`, which returns new float64 values for a
    shape; the base class does the name dispatch, the checks and the in-place assignment.

    >>> import numpy as np
    >>> gamma = np.zeros(3, np.float32)
    >>> Uniform(0.1)("bn1_gamma", gamma, np.random.default_rng(0))
    >>> gamma.tolist()
    [1.0, 1.0, 1.0]
    """

    def __call__(self, name: str, array: np.ndarray, rng: np.random.Generator) -> None:
        """Fill ``array`` in place by the rule its ``name`` ends with.

        Raises ValueError naming the parameter when the name ends in none of ``weight``,
        ``bias``, ``gamma``, ``beta``, ``moving_mean`` and ``moving_var``.
        """
        _check_target(name, array, rng)
        for suffix, value in FIXED_BY_SUFFIX:
            if name.endswith(suffix):
                array[...] = value
                return
        if name.endswith("weight"):
            self.init_weight(name, array, rng)
            return
        endings = ", ".join(repr(suffix) for suffix, _ in FIXED_BY_SUFFIX)
        raise ValueError(
            f"no initialization rule for parameter {name!r} of shape {array.shape}: by name, "
            f"only names ending in 'weight', {endings} are initialized; give it an override "
            f"pattern (initialize(..., overrides={{{name!r}: ...}})) to choose its initializer"
        )

    def init_weight(self, name: str, array: np.ndarray, rng: np.random.Generator) -> None:
        """Fill ``array`` in place with this initializer's weight rule, whatever the name.

        >>> import numpy as np
        >>> offset = np.empty(2)
        >>> Constant(0.5).init_weight("offset", offset, np.random.default_rng(0))
        >>> offset.tolist()
        [0.5, 0.5]
        """
        _check_target(name, array, rng)
        if array.size == 0:
            return
        array[...] = self.weight_values(name, array.shape, rng)

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        """New float64 values of ``shape`` for the weight ``name``, drawn from ``rng``."""
        raise NotImplementedError(
            f"{type(self).__name__} has no weight rule: a subclass of Initializer defines "
            f"weight_values(name, shape, rng)"
        )


@dataclass(frozen=True)
class Xavier(Initializer):
    """Xavier (Glorot) initialization, exactly as MXNet's ``mx.init.Xavier``.

    With ``hw_scale`` the product of the dimensions after the first two (1 for a 2-D
    weight), ``fan_in = shape[1] * hw_scale`` and ``fan_out = shape[0] * hw_scale``;
    ``factor`` is their mean (``'avg'``), ``fan_in`` (``'in'``) or ``fan_out`` (``'out'``),
    and ``scale = sqrt(magnitude / factor)``. Values are uniform in ``[-scale, scale]``
    (``rnd_type='uniform'``) or normal with standard deviation ``scale`` (``'gaussian'``).

    Parameters
    ----------
    rnd_type : {'uniform', 'gaussian'}
    factor_type : {'avg', 'in', 'out'}
    magnitude : float
        Non-negative. MXNet's default 3 makes the uniform variance ``1 / factor``.

    >>> import numpy as np
    >>> weight = np.empty((20, 1, 5, 5), np.float32)
    >>> Xavier()("conv1_weight", weight, np.random.default_rng(0))
    >>> bool(np.abs(weight).max() <= np.sqrt(3 / ((25 + 500) / 2)))
    True
    """

    rnd_type: str = "uniform"
    factor_type: str = "avg"
    magnitude: float = 3.0

    def __post_init__(self) -> None:
        _check_choice(self, "rnd_type", ("uniform", "gaussian"))
        _check_choice(self, "factor_type", ("avg", "in", "out"))
        _check_non_negative(self, "magnitude")

    def scale(self, name: str, shape: Shape) -> float:
        """The bound (uniform) or standard deviation (gaussian) for a weight of ``shape``.

        >>> Xavier(factor_type="in", magnitude=2).scale("fc1_weight", (500, 800))
        0.05
        """
        if len(shape) < 2:
            raise ShapeError(
                f"Xavier cannot initialize parameter {name!r} of shape {tuple(shape)}: its fan-in "
                f"and fan-out need at least 2 dimensions (out, in, ...); use Uniform or Normal"
            )
        hw_scale = math.prod(shape[2:])
        fan_in, fan_out = shape[1] * hw_scale, shape[0] * hw_scale
        factors = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}
        return math.sqrt(self.magnitude / factors[self.factor_type])

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        scale = self.scale(name, shape)
        if self.rnd_type == "uniform":
            return rng.uniform(-scale, scale, size=shape)
        return rng.normal(0.0, scale, size=shape)


@dataclass(frozen=True)
class Uniform(Initializer):
    """Weights uniform in ``[-scale, scale]``, as MXNet's ``mx.init.Uniform``.

    >>> import numpy as np
    >>> weight = np.empty((3, 4))
    >>> Uniform(0.5)("fc1_weight", weight, np.random.default_rng(0))
    >>> bool(np.abs(weight).max() <= 0.5)
    True
    """

    scale: float = 0.07

    def __post_init__(self) -> None:
        _check_non_negative(self, "scale")

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-self.scale, self.scale, size=shape)


@dataclass(frozen=True)
class Normal(Initializer):
    """Weights normal with mean 0 and standard deviation ``sigma``, as ``mx.init.Normal``.

    >>> import numpy as np
    >>> weight = np.empty((300, 300))
    >>> Normal(0.5)("fc1_weight", weight, np.random.default_rng(0))
    >>> round(float(weight.std()), 2)
    0.5
    """

    sigma: float = 0.01

    def __post_init__(self) -> None:
        _check_non_negative(self, "sigma")

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, self.sigma, size=shape)


@dataclass(frozen=True)
class Constant(Initializer):
    """Weights set to ``value``: a number, or an array that broadcasts to the weight.

    >>> import numpy as np
    >>> weight = np.empty((2, 2))
    >>> Constant(0.25)("fc1_weight", weight, np.random.default_rng(0))
    >>> weight.tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """

    value: float | np.ndarray

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        value = np.asarray(self.value, dtype=np.float64)
        try:
            return np.broadcast_to(value, shape).copy()
        except ValueError:
            raise ShapeError(
                f"Constant: value of shape {value.shape} does not broadcast to parameter "
                f"{name!r} of shape {tuple(shape)}"
            ) from None


@dataclass(frozen=True)
class Zero(Initializer):
    """Weights set to zero, as ``mx.init.Zero``.

    >>> import numpy as np
    >>> weight = np.ones(3)
    >>> Zero().init_weight("embed_weight", weight, np.random.default_rng(0))
    >>> weight.tolist()
    [0.0, 0.0, 0.0]
    """

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(shape)


@dataclass(frozen=True)
class One(Initializer):
    """Weights set to one, as ``mx.init.One``.

    >>> import numpy as np
    >>> weight = np.zeros(2)
    >>> One()("scale_weight", weight, np.random.default_rng(0))
    >>> weight.tolist()
    [1.0, 1.0]
    """

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        return np.ones(shape)


@dataclass(frozen=True)
class Orthogonal(Initializer):
    """An orthogonal matrix times ``scale``, as MXNet's ``mx.init.Orthogonal`` (Saxe et al.).

    The weight is viewed as ``(shape[0], prod(shape[1:]))``; a random matrix of that shape,
    uniform in ``[-1, 1]`` or standard normal (``rand_type``), is split by SVD into
    ``u s v``, and whichever of ``u`` or ``v`` has the matrix's shape is kept. So a weight
    with at least as many rows as columns gets orthonormal columns (``W^T W = scale^2 I``)
    and a wider one orthonormal rows (``W W^T = scale^2 I``). Suits recurrent weights such as
    ``lstm_h2h_weight``.

    Parameters
    ----------
    scale : float
        Non-negative; MXNet's default is 1.414 (about sqrt 2).
    rand_type : {'uniform', 'normal'}

    >>> import numpy as np
    >>> weight = np.empty((8, 2))
    >>> Orthogonal(scale=1.0)("lstm_h2h_weight", weight, np.random.default_rng(0))
    >>> np.allclose(weight.T @ weight, np.eye(2))
    True
    """

    scale: float = 1.414
    rand_type: str = "uniform"

    def __post_init__(self) -> None:
        _check_non_negative(self, "scale")
        _check_choice(self, "rand_type", ("uniform", "normal"))

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        if len(shape) < 1:
            raise ShapeError(f"Orthogonal cannot initialize the scalar parameter {name!r}")
        rows, cols = shape[0], math.prod(shape[1:])
        if self.rand_type == "uniform":
            random_matrix = rng.uniform(-1.0, 1.0, size=(rows, cols))
        else:
            random_matrix = rng.standard_normal(size=(rows, cols))
        u, _, v = np.linalg.svd(random_matrix, full_matrices=False)
        orthonormal = u if u.shape == random_matrix.shape else v
        return self.scale * orthonormal.reshape(shape)


@dataclass(frozen=True)
class LSTMBias(Initializer):
    """An LSTM bias of zeros except the forget gate's, as MXNet's ``mx.init.LSTMBias``.

    The bias is ``(4H,)`` with the gates in the order input, forget, cell, output (as
    ``graphc.ir.ops.lstm``), so ``forget_bias`` fills ``[H:2H]``. A forget bias of 1 keeps
    the cell state early in training. Apply it explicitly, since by name a bias is zero:
    ``initialize(params, overrides={r".*i2h_bias$": LSTMBias()})``.

    >>> import numpy as np
    >>> bias = np.empty(8)
    >>> LSTMBias(1.0).init_weight("lstm_i2h_bias", bias, np.random.default_rng(0))
    >>> bias.tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """

    forget_bias: float = 1.0

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        if len(shape) != 1 or shape[0] % 4 != 0:
            raise ShapeError(
                f"LSTMBias needs a bias of shape (4 * num_hidden,), but parameter {name!r} "
                f"has shape {tuple(shape)}"
            )
        hidden = shape[0] // 4
        values = np.zeros(shape)
        values[hidden : 2 * hidden] = self.forget_bias
        return values


@dataclass(frozen=True, init=False)
class Mixed(Initializer):
    """The initializer of the first pattern that matches the name, as MXNet's ``Mixed``.

    Patterns are regular expressions matched from the start of the name (``re.match``, as
    MXNet does); end one with ``$`` to anchor it, and add ``".*"`` last for a default. The
    chosen initializer then dispatches on the name as usual, so a matched bias stays zero.

    >>> import numpy as np
    >>> init = Mixed([".*h2h_weight", ".*"], [Orthogonal(), Uniform(0.1)])
    >>> init.pick("lstm_h2h_weight")
    Orthogonal(scale=1.414, rand_type='uniform')
    """

    patterns: tuple[str, ...]
    initializers: tuple[Initializer, ...]

    def __init__(self, patterns: Sequence[str], initializers: Sequence[Initializer | str]) -> None:
        if len(patterns) != len(initializers):
            raise ValueError(
                f"Mixed: {len(patterns)} patterns but {len(initializers)} initializers; "
                f"each pattern needs one initializer"
            )
        for pattern in patterns:
            _compile_pattern("Mixed", pattern)
        # frozen: set once here, as the generated __init__ of a frozen dataclass does.
        object.__setattr__(self, "patterns", tuple(patterns))
        object.__setattr__(self, "initializers", tuple(create(i) for i in initializers))

    def pick(self, name: str) -> Initializer:
        """The initializer of the first pattern that matches ``name``."""
        for pattern, initializer in zip(self.patterns, self.initializers):
            if re.match(pattern, name):
                return initializer
        raise ValueError(
            f"Mixed: parameter {name!r} matches none of the patterns {list(self.patterns)}; "
            f"add '.*' as the last pattern for a default initializer"
        )

    def __call__(self, name: str, array: np.ndarray, rng: np.random.Generator) -> None:
        self.pick(name)(name, array, rng)

    def weight_values(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        return self.pick(name).weight_values(name, shape, rng)


# MXNet's registered names, lower case; "zeros" and "ones" are MXNet's aliases.
INITIALIZERS: dict[str, type[Initializer]] = {
    "xavier": Xavier,
    "uniform": Uniform,
    "normal": Normal,
    "zero": Zero,
    "zeros": Zero,
    "one": One,
    "ones": One,
    "constant": Constant,
    "orthogonal": Orthogonal,
    "lstmbias": LSTMBias,
}


def create(initializer: str | Initializer, **kwargs) -> Initializer:
    """An initializer from its MXNet name (any case) and keyword arguments, or as given.

    >>> create("xavier", magnitude=2.34)
    Xavier(rnd_type='uniform', factor_type='avg', magnitude=2.34)
    >>> create(Uniform(0.1))
    Uniform(scale=0.1)
    """
    if isinstance(initializer, Initializer):
        if kwargs:
            raise ValueError(
                f"create: keyword arguments {sorted(kwargs)} given with the instance "
                f"{initializer!r}, which is already configured"
            )
        return initializer
    if not isinstance(initializer, str):
        raise TypeError(
            f"create: expected an initializer name or an Initializer, not "
            f"{type(initializer).__name__}"
        )
    key = initializer.lower()
    if key not in INITIALIZERS:
        raise ValueError(
            f"create: unknown initializer {initializer!r}; allowed names are {sorted(INITIALIZERS)}"
        )
    return INITIALIZERS[key](**kwargs)


def initialize(
    params: Mapping[str, np.ndarray],
    initializer: str | Initializer | None = None,
    seed: int = 0,
    overrides: Mapping[str, str | Initializer] | None = None,
) -> Mapping[str, np.ndarray]:
    """Fill every array of ``params`` in place, reproducibly, and return ``params``.

    Arrays are filled in sorted name order from one ``np.random.default_rng(seed)``, so the
    values depend on the seed and the set of names, never on the dict's order. A name
    matched by an ``overrides`` pattern (a regular expression matched from the start of the
    name, ``re.match``; the first pattern in the mapping's order wins) gets that
    initializer's weight rule whatever its name ends with, as a variable's ``init=`` does in
    MXNet; any other name gets ``initializer`` by its name (biases and betas zero, gammas
    one, weights the initializer's rule).

    Parameters
    ----------
    params : mapping of name to ndarray
        The arrays to fill, e.g. an executor's ``arg_dict`` without its data and labels.
    initializer : Initializer or str, optional
        Default ``Uniform(0.01)``, the default of MXNet's ``Module.init_params``.
    seed : int
    overrides : mapping of pattern to Initializer or str, optional
        A pattern that matches no parameter is an error, so that a typo does not go unseen.

    >>> import numpy as np
    >>> params = {"lstm_h2h_weight": np.empty((8, 2)), "lstm_h2h_bias": np.empty(8)}
    >>> _ = initialize(params, "xavier", overrides={".*h2h_weight": Orthogonal(1.0)})
    >>> w = params["lstm_h2h_weight"]
    >>> bool(np.allclose(w.T @ w, np.eye(2))), float(np.abs(params["lstm_h2h_bias"]).max())
    (True, 0.0)
    """
    default = Uniform(0.01) if initializer is None else create(initializer)
    rules = [(pattern, create(chosen)) for pattern, chosen in (overrides or {}).items()]
    for pattern, _ in rules:
        _compile_pattern("initialize: override", pattern)
        if not any(re.match(pattern, name) for name in params):
            raise ValueError(
                f"initialize: override pattern {pattern!r} matches none of the parameters "
                f"{sorted(params)} (patterns are matched from the start of the name)"
            )
    rng = np.random.default_rng(seed)
    for name in sorted(params):
        chosen = next((rule for pattern, rule in rules if re.match(pattern, name)), None)
        if chosen is None:
            default(name, params[name], rng)
        else:
            chosen.init_weight(name, params[name], rng)
    return params


def _check_target(name: str, array: np.ndarray, rng: np.random.Generator) -> None:
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"parameter {name!r}: expected a NumPy array to fill in place, not "
            f"{type(array).__name__}"
        )
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"parameter {name!r}: rng must be a np.random.Generator (np.random.default_rng), "
            f"not {type(rng).__name__}"
        )


def _check_choice(owner: Initializer, attr: str, allowed: tuple[str, ...]) -> None:
    value = getattr(owner, attr)
    if value not in allowed:
        raise ValueError(
            f"{type(owner).__name__}: {attr}={value!r} is not allowed; choose one of {allowed}"
        )


def _check_non_negative(owner: Initializer, attr: str) -> None:
    value = getattr(owner, attr)
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (is_real and math.isfinite(value) and value >= 0):
        raise ValueError(f"{type(owner).__name__}: {attr}={value!r} must be a finite number >= 0")


def _compile_pattern(where: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except (re.error, TypeError) as err:
        raise ValueError(
            f"{where} pattern {pattern!r} is not a regular expression: {err}"
        ) from None
