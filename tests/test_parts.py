"""The shared parallel loop (``codegen_cpu.parts``): every part of a kernel runs once, on the
kernel's own arguments, an exception a part raises reaches the caller, and a part function
compiled for other arguments is refused."""

import numba
import numpy as np
import pytest
from numba import typeof

from graphc.codegen_cpu.parts import (
    FrameOf,
    PartFrame,
    frame_arguments,
    part_frame,
    parts_call,
    parts_cell,
    run_parts,
)


@numba.njit
def _mark_part(frame, part):
    """out[part] = part * scale + offset[0]; a negative scale raises in part 1."""
    out, scale, offset, parts, _ = frame_arguments(frame)
    if scale < 0 and part == 1:
        raise ValueError("part 1 refused a negative scale")
    out[part] = part * scale + offset[0]


@numba.njit
def _kernel(out, scale, offset, parts, cell):
    run_parts(cell, part_frame(cell, (out, scale, offset, parts, cell)), parts)


def _bound(parts: int, scale: float = 2.0):
    out = np.full(parts, -1.0)
    cell = parts_cell()
    arguments = (out, scale, (7,), parts, cell)
    parts_call(cell, _mark_part, arguments).fill()
    return arguments


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_every_part_runs_once_on_the_kernels_arguments(parts):
    arguments = _bound(parts)
    _kernel(*arguments)
    np.testing.assert_array_equal(arguments[0], np.arange(parts) * 2.0 + 7)


def test_an_exception_in_a_part_reaches_the_caller():
    out, _, offset, parts, cell = _bound(3, scale=-1.0)
    with pytest.raises(ValueError, match="part 1 refused a negative scale"):
        _kernel(out, -1.0, offset, parts, cell)
    assert cell[2] == 1
    _kernel(out, 0.5, offset, parts, cell)  # the next call starts with no part failed
    np.testing.assert_array_equal(out, [7.0, 7.5, 8.0])
    assert cell[2] == 0


def test_an_exception_of_the_only_part_reaches_the_caller():
    out, single = np.zeros(1), parts_cell()
    parts_call(single, _raise_alone, (out, single)).fill()
    with pytest.raises(ValueError, match="the only part"):
        _alone(out, single)


@numba.njit
def _raise_alone(frame, part):
    frame_arguments(frame)
    raise ValueError("the only part raised")


@numba.njit
def _alone(out, cell):
    run_parts(cell, part_frame(cell, (out, cell)), 1)


@numba.njit
def _once_then_fine(frame, part):
    """Raises the first time part 1 runs (flag[0] counts), never after."""
    flag, _ = frame_arguments(frame)
    if part == 1:
        flag[0] += 1
        if flag[0] == 1:
            raise ValueError("only once")


@numba.njit
def _flaky_kernel(flag, cell):
    run_parts(cell, part_frame(cell, (flag, cell)), 2)


def test_a_part_that_fails_only_in_the_region_is_an_error_not_a_success():
    flag, cell = np.zeros(1, dtype=np.int64), parts_cell()
    parts_call(cell, _once_then_fine, (flag, cell)).fill()
    with pytest.raises(RuntimeError, match="failed in the parallel region"):
        _flaky_kernel(flag, cell)
    assert flag[0] == 2  # once in the region, once alone


def test_a_part_function_compiled_for_other_arguments_is_refused():
    out, scale, offset, parts, cell = _bound(2)
    other = parts_cell()
    parts_call(other, _mark_part, (out.astype(np.float32), scale, offset, parts, other)).fill()
    with pytest.raises(RuntimeError, match="bound for other argument types"):
        _kernel(out, scale, offset, parts, other)
    empty = parts_cell()  # never filled: refused, never a jump to address 0
    with pytest.raises(RuntimeError, match="bound for other argument types"):
        _kernel(out, scale, offset, parts, empty)
    assert (out == -1.0).all()


def test_a_frames_type_names_the_tuple_it_holds():
    arguments = (np.zeros(3), 1.5, None)
    assert typeof(FrameOf(arguments)) == PartFrame(typeof(arguments))


def test_a_parts_cell_starts_numbas_thread_pool():
    """A kernel's machine code loaded from the disk cache may call the pool without
    starting it; the cell, made at bind before any kernel runs, starts it (``parts_cell``)."""
    import subprocess
    import sys

    program = (
        "from numba.np.ufunc import parallel\n"
        "from graphc.codegen_cpu.parts import parts_cell\n"
        "assert not parallel._is_initialized, 'started by the import alone'\n"
        "parts_cell()\n"
        "assert parallel._is_initialized\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
