"""Argument frames (``codegen_cpu.frames``): a kernel called on the native values packed from
its arguments computes what a call on the tuple computes, with the same checks."""

import numba
import numpy as np
import pytest
from numba.core import types
from numba.core.registry import cpu_target

from graphc.codegen_cpu import frames
from graphc.codegen_cpu.frames import frame_set, kinds_of, spec
from graphc.codegen_cpu.native_call import argument_types, entry


@numba.njit(cache=True)
def mixed(a, b, out, scale, flag, nothing, geometry, counts, small):
    """out = a * scale + b + geometry[0] * 100 + geometry[1] + counts + small, where flag."""
    if scale < 0:
        raise ValueError("negative scale")
    if flag and nothing is None:
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = (
                    a[i, j] * scale + b[j] + geometry[0] * 100 + geometry[1] + counts[i, j] + small
                )


def _arguments(scale=2.5):
    a = np.arange(24.0).reshape(3, 8)[:, ::4]  # strided: layout "A"
    b = np.array([1.5, -2.0], dtype=np.float32)
    b.flags.writeable = False
    counts = np.arange(6, dtype=np.int32).reshape(3, 2)
    return (a, b, np.zeros((3, 2)), scale, True, None, (7, 3), counts, np.float32(0.25))


def _caller(offset: int, text: str):
    """A generated caller of one frame, as the training loop spells it."""
    source = (
        "import numba\n"
        "from graphc.codegen_cpu.frames import call_frame\n"
        "@numba.njit\n"
        "def caller(pair, address):\n"
        f"    call_frame(pair, address + {offset}, {text!r})\n"
    )
    namespace = {}
    exec(source, namespace)
    return namespace["caller"]


def test_a_kernel_on_its_frame_computes_what_its_tuple_gives():
    arguments = _arguments()
    expected = np.zeros((3, 2))
    mixed(*arguments[:2], expected, *arguments[3:])
    # The first tuple is left unframed: the second's slot starts at offset 0 of the buffer.
    packed = frame_set([(np.zeros(1),), arguments], [False, True])
    assert list(packed.slots) == [1]
    offset, text = packed.slots[1]
    assert kinds_of(text) == argument_types(arguments)
    _caller(offset, text)(entry(mixed, arguments), packed.address)
    np.testing.assert_array_equal(arguments[2], expected)
    assert expected[0, 0] == 0 * 2.5 + 1.5 + 703 + 0 + 0.25


def test_a_frame_refuses_an_entry_compiled_for_other_types_and_passes_exceptions_on():
    arguments = _arguments(scale=-1.0)
    packed = frame_set([arguments], [True])
    caller = _caller(*packed.slots[0])
    address, check = entry(mixed, arguments)
    with pytest.raises(RuntimeError, match="bound for other argument types"):
        caller((address, check ^ 1), packed.address)
    with pytest.raises(ValueError, match="negative scale"):
        caller((address, check), packed.address)


def test_several_frames_lie_one_after_another_on_words():
    first, second = _arguments(), _arguments(scale=0.5)
    packed = frame_set([first, second], [True, True])
    (offset0, text), (offset1, _) = packed.slots[0], packed.slots[1]
    assert offset0 == 0 and offset1 > 0 and offset1 % frames.WORD == 0
    caller = _caller(offset1, text)
    caller(entry(mixed, second), packed.address)
    np.testing.assert_allclose(second[2][:, 0], second[0][:, 0] * 0.5 + 1.5 + 703.25 + [0, 2, 4])
    assert not first[2].any()  # only the second frame's kernel ran


@pytest.mark.parametrize(
    "kind",
    [
        types.Array(types.float32, 4, "C"),
        types.Array(types.int32, 1, "A", readonly=True),
        types.UniTuple(types.int64, 8),
        types.Tuple((types.float32, types.int64, types.boolean)),
        types.Tuple((types.Array(types.float64, 2, "C"), types.none, types.Tuple(()))),
        types.float32,
        types.boolean,
    ],
)
def test_the_frame_layout_is_llvms_and_specs_round_trip(kind):
    context = cpu_target.target_context
    data_type = context.data_model_manager[kind].get_data_type()
    size, align = frames._size_align(data_type)
    assert size == data_type.get_abi_size(context.target_data)
    assert align == data_type.get_abi_alignment(context.target_data)
    assert kinds_of(spec((kind,))) == (kind,)


def test_kinds_frames_do_not_carry_have_no_spec():
    assert spec((types.IntegerLiteral(3),)) is None
    assert spec((types.unicode_type,)) is None
    packed = frame_set([("text", np.zeros(2))], [True])
    assert packed.slots == {}


def test_a_frame_set_sees_an_array_change_type():
    arguments = _arguments()
    packed = frame_set([arguments], [True])
    assert packed.still_valid()
    arguments[2].flags.writeable = False  # now array(float64, 2d, C, readonly)
    assert not packed.still_valid()
