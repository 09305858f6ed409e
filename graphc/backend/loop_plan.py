"""The contract of a compiled training loop: what ``Model.fit``'s compiled path hands a
target's loop generator beside the forward and backward kernels (``codegen_cpu.train_loop``
renders it for the CPU)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoopPlan:
    """What the generated loop calls, beside the kernels.

    ``head``: 'softmax' or 'regression' (which statistics helper computes the loss);
    ``metric``: 'accuracy' or 'perplexity' (softmax), 'mse', 'rmse' or 'mae' (regression).
    ``states``: how many recurrent states the loop carries from step to step (each zeroed
    where ``fresh[step]``, else the previous step's state output). ``sources``: how
    many arrays are cut into batches (data then labels). ``update``: the optimizer's kernel;
    ``scalars``: how many scalars it takes after its arrays, ``grad_scale_index`` where
    the global-norm factor goes among them; ``clip_global_norm``: whether to compute it.

    ``views``: where the kernels read the bound inputs, as (phase 'forward' or 'backward',
    kernel index, the nesting of its arguments, the path to the argument, source index); when
    given, a batch whose rows are consecutive in the data is read in place (a view of the
    data, no copy; ``in_place[step]`` says which, as :func:`training.compiled_loop.in_place_steps`
    computes it) and only a shuffled or wrapped batch is gathered into the bound input.
    None: every batch is gathered. ``label_source``: the source that is the head's label
    (read in place likewise by the loss and metric), or -1."""

    head: str
    metric: str
    sources: int
    parameters: int
    update: object
    scalars: int
    grad_scale_index: int
    clip_global_norm: bool
    states: int = 0
    views: tuple[tuple[str, int, tuple, tuple, int], ...] | None = None
    label_source: int = -1
