"""Run-time: contexts, bind and the executor. The executor binds through the target of its
context (``graphc.backend.target``) and imports no backend."""

from graphc.ir.symbol import register_binders
from graphc.runtime.arrays import asnumpy, assign
from graphc.runtime.bind import bind, simple_bind
from graphc.runtime.context import Context, cpu, gpu
from graphc.runtime.executor import Executor

register_binders(simple_bind=simple_bind, bind=bind)
