"""Run-time: contexts, the kernel cache, memory plans, and the executor."""

from graphc.cache_location import cache_dir
from graphc.runtime import lr_scheduler, optimizer
from graphc.runtime.bind import bind, simple_bind
from graphc.runtime.cache import KernelCacheWarning
from graphc.runtime.context import Context, cpu, gpu
from graphc.runtime.executor import Executor
