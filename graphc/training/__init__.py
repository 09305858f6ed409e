"""Training: ``Model`` and its parts (the fit loops, the compiled fit, bindings, loss heads,
recurrent states, checkpoints), optimizers, learning-rate schedules, initializers, metrics,
progress display and plots."""

from graphc.training import initializer, kvstore, lr_scheduler, metric, optimizer, plot
from graphc.training.compiled_fit import StepByStepWarning
from graphc.training.model import Model, TrainingDivergedError
