"""``gc.asnumpy``: any array an executor hands out, as a NumPy array on the host."""

from __future__ import annotations

import numpy as np


def asnumpy(array) -> np.ndarray:
    """The values of ``array`` as a NumPy array: the array itself on the CPU, a copy from the
    device for a GPU executor's arrays (``arg_dict``, ``grad_dict``, ``outputs``), as MXNet's
    ``NDArray.asnumpy()``.

    >>> import numpy as np, graphc as gc
    >>> gc.asnumpy(np.arange(3)).tolist()
    [0, 1, 2]
    """
    if isinstance(array, np.ndarray):
        return array
    copy_to_host = getattr(array, "copy_to_host", None)
    if copy_to_host is not None:
        return copy_to_host()
    return np.asarray(array)


def assign(array, value) -> None:
    """Copy the host value ``value`` into ``array`` in place, a NumPy array or a GPU
    executor's device array, cast as NumPy's ``same_kind`` rule allows; shapes must match.

    >>> import numpy as np, graphc as gc
    >>> target = np.zeros(2, np.float32)
    >>> gc.runtime.arrays.assign(target, [1, 2])
    >>> target.tolist()
    [1.0, 2.0]
    """
    value = np.asarray(value)
    if isinstance(array, np.ndarray):
        np.copyto(array, value, casting="same_kind")
        return
    if value.shape != tuple(array.shape):
        raise ValueError(f"assign: a value of shape {value.shape} into an array of {array.shape}")
    if not np.can_cast(value.dtype, array.dtype, casting="same_kind"):
        raise TypeError(f"assign: cannot cast {value.dtype} to {array.dtype} (same_kind)")
    array.copy_to_device(np.ascontiguousarray(value, dtype=array.dtype))
