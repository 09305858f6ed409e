"""Optimization passes: graph -> graph functions and the pipeline that runs them by level."""

from graphc.passes.check import check_ir, ir_checker
from graphc.passes.dump import to_dot, to_text
from graphc.passes.identities import IDENTITIES
from graphc.passes.pipeline import LEVEL_PASSES, optimize
from graphc.passes.rewrite import rewrite, transform
from graphc.passes.simplify import (
    apply_identities,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    fold_constants,
    prune_zero_gradients,
    simplify,
)
