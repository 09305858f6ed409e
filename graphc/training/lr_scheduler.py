"""Learning-rate schedules (MXNet's ``mx.lr_scheduler``): the rate as a function of the
number of updates done.

An optimizer calls ``scheduler(num_update)`` before each update with the count that includes
it, so the first update reads ``scheduler(1)``. MXNet's schedulers keep a running state that
only moves forward; these compute the same rate from the count alone, so a run resumed from a
checkpoint at update ``n`` gets exactly the rates an uninterrupted run would have had.

``base_lr`` left out (``None``) means "the optimizer's ``learning_rate``": the optimizer sets
it when it receives the scheduler, as MXNet's does. A scheduler used on its own starts from
0.01, MXNet's default.

>>> from graphc.training.lr_scheduler import FactorScheduler
>>> schedule = FactorScheduler(step=2, factor=0.5, base_lr=1.0)
>>> [schedule(n) for n in range(1, 7)]
[1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from numbers import Integral, Real

DEFAULT_BASE_LR = 0.01
WARMUP_MODES = ("linear", "constant")


class LRScheduler:
    """The base learning rate and MXNet's warmup, shared by every schedule.

    For ``num_update < warmup_steps`` the rate is the warmup rate (see ``get_warmup_lr``);
    from ``warmup_steps`` on it is the schedule's own (``decayed_lr``).
    """

    def __init__(
        self,
        base_lr: float | None = None,
        warmup_steps: int = 0,
        warmup_begin_lr: float = 0.0,
        warmup_mode: str = "linear",
    ) -> None:
        self.base_lr_given = base_lr is not None
        self.base_lr = DEFAULT_BASE_LR if base_lr is None else self._rate("base_lr", base_lr)
        self.warmup_steps = self._count("warmup_steps", warmup_steps, minimum=0)
        self.warmup_begin_lr = self._rate("warmup_begin_lr", warmup_begin_lr)
        if warmup_mode not in WARMUP_MODES:
            raise ValueError(
                f"{self._name}: warmup_mode must be one of {WARMUP_MODES}, got {warmup_mode!r}"
            )
        self.warmup_mode = warmup_mode
        if self.base_lr_given:
            self._check_warmup(self.base_lr)

    def set_default_base_lr(self, learning_rate: float) -> None:
        """Take ``learning_rate`` as ``base_lr`` unless the user gave one (the optimizer calls
        this with its own learning rate)."""
        if not self.base_lr_given:
            self._check_warmup(self._rate("base_lr", learning_rate))
            self.base_lr = float(learning_rate)

    def __call__(self, num_update: int) -> float:
        """The learning rate for update number ``num_update`` (the first update is 1)."""
        if num_update < 0:
            raise ValueError(f"{self._name}: num_update must be >= 0, got {num_update}")
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        return self.decayed_lr(num_update)

    def get_warmup_lr(self, num_update: int) -> float:
        """MXNet's warmup: ``'linear'`` rises from ``warmup_begin_lr`` by equal steps and
        reaches ``base_lr`` at ``warmup_steps``; ``'constant'`` stays at ``warmup_begin_lr``."""
        if self.warmup_mode == "constant":
            return self.warmup_begin_lr
        rise = (self.base_lr - self.warmup_begin_lr) * num_update / self.warmup_steps
        return self.warmup_begin_lr + rise

    def decayed_lr(self, num_update: int) -> float:
        """The schedule's rate once warmup is over."""
        raise NotImplementedError(f"{self._name} does not define decayed_lr")

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _check_warmup(self, base_lr: float) -> None:
        if self.warmup_steps > 0 and self.warmup_begin_lr > base_lr:
            raise ValueError(
                f"{self._name}: warmup_begin_lr ({self.warmup_begin_lr}) must not exceed "
                f"base_lr ({base_lr})"
            )

    def _rate(self, parameter: str, value) -> float:
        number = isinstance(value, Real) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and value >= 0):
            raise ValueError(
                f"{self._name}: {parameter} must be a finite number >= 0, got {value!r}"
            )
        return float(value)

    def _count(self, parameter: str, value, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
            raise ValueError(
                f"{self._name}: {parameter} must be an int >= {minimum}, got {value!r}"
            )
        return int(value)

    def _factor(self, value) -> float:
        if not isinstance(value, Real) or not 0 < value <= 1:
            raise ValueError(f"{self._name}: factor must be in (0, 1], got {value!r}")
        return float(value)


class FactorScheduler(LRScheduler):
    """Multiply the rate by ``factor`` every ``step`` updates, never going below
    ``stop_factor_lr`` (MXNet's ``FactorScheduler``)::

        lr = max(base_lr * factor ** floor((num_update - 1) / step), stop_factor_lr)

    so updates 1..step use ``base_lr``, updates step+1..2*step use ``base_lr * factor``, ...

    >>> schedule = FactorScheduler(step=10, factor=0.5, stop_factor_lr=0.2, base_lr=1.0)
    >>> [schedule(n) for n in (10, 11, 21, 31, 1000)]
    [1.0, 0.5, 0.25, 0.2, 0.2]
    """

    def __init__(
        self,
        step: int,
        factor: float = 1,
        stop_factor_lr: float = 1e-8,
        base_lr: float | None = None,
        warmup_steps: int = 0,
        warmup_begin_lr: float = 0.0,
        warmup_mode: str = "linear",
    ) -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        self.step = self._count("step", step, minimum=1)
        self.factor = self._factor(factor)
        self.stop_factor_lr = self._rate("stop_factor_lr", stop_factor_lr)

    def decayed_lr(self, num_update: int) -> float:
        decays = max(0, (num_update - 1) // self.step)
        # A base_lr already under stop_factor_lr stays where it is rather than jumping up.
        floor = min(self.stop_factor_lr, self.base_lr)
        return max(self.base_lr * self.factor**decays, floor)


class MultiFactorScheduler(LRScheduler):
    """Multiply the rate by ``factor`` after each update count in ``step`` (MXNet's
    ``MultiFactorScheduler``)::

        lr = base_lr * factor ** (number of s in step with num_update > s)

    >>> schedule = MultiFactorScheduler(step=[3, 5], factor=0.5, base_lr=1.0)
    >>> [schedule(n) for n in range(1, 8)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """

    def __init__(
        self,
        step: Sequence[int],
        factor: float = 1,
        base_lr: float | None = None,
        warmup_steps: int = 0,
        warmup_begin_lr: float = 0.0,
        warmup_mode: str = "linear",
    ) -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if isinstance(step, (str, bytes)) or not isinstance(step, Sequence) or not step:
            raise ValueError(f"{self._name}: step must be a non-empty list of ints, got {step!r}")
        steps = [self._count("step", value, minimum=1) for value in step]
        if any(later <= earlier for earlier, later in zip(steps, steps[1:])):
            raise ValueError(f"{self._name}: step must be strictly increasing, got {list(step)}")
        self.step = steps
        self.factor = self._factor(factor)

    def decayed_lr(self, num_update: int) -> float:
        decays = bisect.bisect_left(self.step, num_update)
        return self.base_lr * self.factor**decays


class CosineScheduler(LRScheduler):
    """Cosine decay from ``base_lr`` to ``final_lr`` over ``max_update`` updates (MXNet's
    ``CosineScheduler``)::

        lr = final_lr + (base_lr - final_lr) * (1 + cos(pi * (num_update - warmup_steps)
                                                        / (max_update - warmup_steps))) / 2

    for ``warmup_steps <= num_update <= max_update``, and ``final_lr`` after.

    >>> schedule = CosineScheduler(max_update=10, base_lr=1.0, final_lr=0.2)
    >>> [round(schedule(n), 6) for n in (0, 5, 10, 11)]
    [1.0, 0.6, 0.2, 0.2]
    """

    def __init__(
        self,
        max_update: int,
        base_lr: float | None = None,
        final_lr: float = 0.0,
        warmup_steps: int = 0,
        warmup_begin_lr: float = 0.0,
        warmup_mode: str = "linear",
    ) -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        self.max_update = self._count("max_update", max_update, minimum=1)
        if self.warmup_steps >= self.max_update:
            raise ValueError(
                f"{self._name}: warmup_steps ({self.warmup_steps}) must be less than "
                f"max_update ({self.max_update})"
            )
        self.final_lr = self._rate("final_lr", final_lr)

    def decayed_lr(self, num_update: int) -> float:
        if num_update > self.max_update:
            return self.final_lr
        progress = (num_update - self.warmup_steps) / (self.max_update - self.warmup_steps)
        return (
            self.final_lr + (self.base_lr - self.final_lr) * (1 + math.cos(math.pi * progress)) / 2
        )
