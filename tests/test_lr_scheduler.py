"""Learning-rate schedules: values at chosen updates, computed by hand from MXNet's formulas;
purity (the rate depends on the count only); validation."""

from __future__ import annotations

import math

import pytest

from graphc.training.lr_scheduler import CosineScheduler, FactorScheduler, MultiFactorScheduler

pytestmark = pytest.mark.unit


def rates(schedule, updates):
    return [schedule(n) for n in updates]


def test_factor_scheduler_decays_every_step_updates():
    schedule = FactorScheduler(step=3, factor=0.5, base_lr=0.8)
    # Updates 1-3 at 0.8, 4-6 at 0.4, 7-9 at 0.2: MXNet decays once num_update > k * step.
    assert rates(schedule, [0, 1, 3, 4, 6, 7, 10]) == [0.8, 0.8, 0.8, 0.4, 0.4, 0.2, 0.1]


def test_factor_scheduler_stops_at_stop_factor_lr():
    schedule = FactorScheduler(step=1, factor=0.1, stop_factor_lr=0.005, base_lr=1.0)
    assert rates(schedule, [1, 2, 3, 4, 50]) == [1.0, 0.1, pytest.approx(0.01), 0.005, 0.005]
    below = FactorScheduler(step=1, factor=0.5, stop_factor_lr=0.1, base_lr=0.05)
    assert rates(below, [1, 5]) == [0.05, 0.05], "a base under the floor does not rise to it"


def test_factor_scheduler_with_linear_and_constant_warmup():
    linear = FactorScheduler(step=5, factor=0.5, base_lr=1.0, warmup_steps=4, warmup_begin_lr=0.2)
    # 0.2 + (1.0 - 0.2) * n / 4 below update 4, then the schedule (decays after 5 and 10).
    expected = [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.5, 0.25]
    assert rates(linear, [0, 1, 2, 3, 4, 5, 6, 11]) == pytest.approx(expected)
    constant = FactorScheduler(
        step=5, base_lr=1.0, warmup_steps=4, warmup_begin_lr=0.2, warmup_mode="constant"
    )
    assert rates(constant, [1, 3, 4]) == [0.2, 0.2, 1.0]


def test_multi_factor_scheduler():
    schedule = MultiFactorScheduler(step=[2, 5], factor=0.1, base_lr=1.0)
    expected = [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01]
    assert rates(schedule, [1, 2, 3, 4, 5, 6, 100]) == pytest.approx(expected)
    warm = MultiFactorScheduler(step=[4], factor=0.5, base_lr=1.0, warmup_steps=2)
    assert rates(warm, [0, 1, 2, 4, 5]) == [0.0, 0.5, 1.0, 1.0, 0.5]


def test_cosine_scheduler():
    schedule = CosineScheduler(max_update=10, base_lr=1.0, final_lr=0.0)
    # (1 + cos(pi * n / 10)) / 2 at n = 0, 5, 10; cos(pi / 5) = 0.809017 at n = 2.
    assert rates(schedule, [0, 2, 5, 10, 20]) == pytest.approx(
        [1.0, (1 + 0.8090169943749475) / 2, 0.5, 0.0, 0.0]
    )
    warm = CosineScheduler(max_update=12, base_lr=1.0, final_lr=0.2, warmup_steps=2)
    # Warmup from 0 to 1 over 2 updates; then 0.2 + 0.8 * (1 + cos(pi * (n - 2) / 10)) / 2.
    assert rates(warm, [1, 2, 7, 12, 13]) == pytest.approx([0.5, 1.0, 0.6, 0.2, 0.2])


@pytest.mark.parametrize(
    "schedule",
    [
        FactorScheduler(step=2, factor=0.7, base_lr=1.0, warmup_steps=3),
        MultiFactorScheduler(step=[3, 6, 9], factor=0.5, base_lr=1.0),
        CosineScheduler(max_update=9, base_lr=1.0, warmup_steps=2),
    ],
)
def test_schedules_are_functions_of_the_count(schedule):
    """Asked out of order, backwards or twice, each count gets the same rate, so a resumed
    run sees exactly the rates of an uninterrupted one."""
    forward = rates(schedule, range(15))
    assert rates(schedule, reversed(range(15))) == forward[::-1]
    assert rates(schedule, [12, 3, 12, 0]) == [forward[12], forward[3], forward[12], forward[0]]
    assert len(set(forward)) > 2, "the schedule changes the rate"


def test_base_lr_from_the_optimizer_unless_given():
    schedule = CosineScheduler(max_update=4)
    assert schedule.base_lr == 0.01, "MXNet's default on its own"
    schedule.set_default_base_lr(0.4)
    assert schedule(0) == 0.4 and schedule(2) == pytest.approx(0.2)
    given = CosineScheduler(max_update=4, base_lr=1.0)
    given.set_default_base_lr(0.4)
    assert given(0) == 1.0
    warm = FactorScheduler(step=2, warmup_steps=2, warmup_begin_lr=0.05)
    with pytest.raises(ValueError, match=r"warmup_begin_lr \(0.05\) must not exceed base_lr"):
        warm.set_default_base_lr(0.01)
    warm.set_default_base_lr(0.1)
    assert warm(1) == pytest.approx(0.075)


BAD_SCHEDULES = [
    (lambda: FactorScheduler(step=0), "FactorScheduler: step must be an int >= 1, got 0"),
    (lambda: FactorScheduler(step=2.5), "FactorScheduler: step must be an int >= 1, got 2.5"),
    (lambda: FactorScheduler(step=2, factor=1.5), "factor must be in (0, 1], got 1.5"),
    (lambda: FactorScheduler(step=2, factor=0), "factor must be in (0, 1], got 0"),
    (lambda: FactorScheduler(step=2, base_lr=-1), "base_lr must be a finite number >= 0, got -1"),
    (lambda: FactorScheduler(step=2, warmup_steps=-1), "warmup_steps must be an int >= 0, got -1"),
    (lambda: FactorScheduler(step=2, warmup_mode="cubic"), "warmup_mode must be one of"),
    (
        lambda: FactorScheduler(step=2, base_lr=0.1, warmup_steps=2, warmup_begin_lr=0.5),
        "warmup_begin_lr (0.5) must not exceed base_lr (0.1)",
    ),
    (lambda: MultiFactorScheduler(step=[]), "step must be a non-empty list of ints, got []"),
    (lambda: MultiFactorScheduler(step=[5, 3]), "step must be strictly increasing, got [5, 3]"),
    (lambda: MultiFactorScheduler(step=[0, 3]), "step must be an int >= 1, got 0"),
    (lambda: CosineScheduler(max_update=0), "max_update must be an int >= 1, got 0"),
    (
        lambda: CosineScheduler(max_update=5, warmup_steps=5),
        "warmup_steps (5) must be less than max_update (5)",
    ),
    (lambda: CosineScheduler(max_update=5, final_lr=math.inf), "final_lr must be a finite"),
]


@pytest.mark.parametrize("make, message", BAD_SCHEDULES)
def test_bad_parameters_are_named(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert message in str(error.value)


def test_negative_count_is_an_error():
    with pytest.raises(ValueError, match="FactorScheduler: num_update must be >= 0, got -1"):
        FactorScheduler(step=1)(-1)
