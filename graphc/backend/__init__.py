"""The seam between the target-independent compiler and the backends: the kernel calling
convention and the lowering table keyed by (target, op) (``lowering``), the targets the
runtime binds through (``target``), the content-addressed source cache (``source_cache``)
and where caches live (``cache_location``). Nothing here imports Numba."""

from graphc.backend.cache_location import cache_dir
from graphc.backend.lowering import Kernel, NodeSpec, kernel_for, lower, lowering
from graphc.backend.source_cache import KernelCacheWarning, load_kernel
from graphc.backend.target import ArrayOps, Target, register_target, target_for
