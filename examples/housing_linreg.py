"""Boston Housing: linear regression as in Knet's tutorial, then an MLP that overfits.

    python examples/housing_linreg.py

(a) Linear regression on the 13 features standardized (zero mean, unit variance per column),
trained by full-batch SGD on all 506 districts, as Knet's housing tutorial does: the mean
squared error falls from about 600 to below 30 in 10 steps and levels off near 21.9, the
least-squares optimum. (b) A network with two hidden layers of 64 and 15 relu units on a
seeded 80/20 train/validation split, trained long enough to overfit: the training error
keeps falling while the validation error rises from its minimum.

Every loss printed is the mean squared error (MSE) in (1000 $)^2, what Knet prints; graphc's
``LinearRegressionOutput`` itself minimizes half of it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import graphc as gc

LABEL = "lro_label"

# A model file too: graphc compile/train examples/housing_linreg.py reads these.
net = gc.models.linreg()
input_shapes = {"data": (506, 13)}
label_names = (LABEL,)
HIDDEN = (64, 15)
VALIDATION_FRACTION = 0.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="(a): full-batch SGD steps")
    parser.add_argument("--lr", type=float, default=0.1, help="(a): SGD learning rate")
    parser.add_argument("--epochs", type=int, default=1000, help="(b): epochs of the MLP")
    parser.add_argument("--batch-size", type=int, default=32, help="(b): MLP batch size")
    parser.add_argument("--mlp-lr", type=float, default=0.001, help="(b): Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="initialization and (b)'s split")
    parser.add_argument("--ctx", choices=("cpu",), default="cpu", help="device (cpu only)")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="a directory holding housing.csv"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary lines")
    args = parser.parse_args(argv)
    for name in ("steps", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """``train`` and ``others`` shifted and scaled by the mean and standard deviation of each
    column of ``train``, so that no statistic leaks from held-out rows."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    return [((array - mean) / std).astype(np.float32) for array in (train, *others)]


def report_every(count: int) -> int:
    """About ten reports after the first ten steps or epochs."""
    return max(1, math.ceil(count / 10))


def linear_regression(args, features, targets, ctx) -> list[float]:
    """Part (a); returns the training MSE after 0, 1, ..., ``args.steps`` steps."""
    (x,) = standardize(features)
    rows = len(x)
    full_batch = gc.io.NDArrayIter(x, targets, batch_size=rows, label_name=LABEL)
    model = gc.Model(gc.models.linreg(), ctx, label_names=(LABEL,))
    model.fit(
        full_batch,
        eval_metric="mse",
        optimizer="sgd",
        # Knet differentiates the MSE, whose gradient is twice that of the half-MSE our
        # head minimizes: rescale_grad = 2 / rows makes each step Knet's step with the same
        # learning rate (fit's default 1 / rows would halve it).
        optimizer_params={"learning_rate": args.lr, "rescale_grad": 2.0 / rows},
        # Knet's initial weights, 0.1 * randn; the bias starts at zero.
        initializer=gc.initializer.Normal(sigma=0.1),
        num_epoch=args.steps,
        seed=args.seed,
        verbose=False,
    )
    # The metric of an epoch (here one step) is measured before its update, so history[k]
    # is the loss after k steps; one more forward gives the loss after the last step.
    losses = list(model.history["train_mse"])
    losses.append(model.score(full_batch, "mse")[0][1])
    if not args.quiet:
        print(f"(a) linear regression, {rows} rows, full-batch SGD lr {args.lr}: training MSE")
        every = report_every(args.steps)
        for step, loss in enumerate(losses):
            if step <= 10 or step % every == 0 or step == args.steps:
                print(f"  step {step:4d}  mse {loss:9.3f}")
    at_ten = losses[min(10, args.steps)]
    print(
        f"(a) mse: initial {losses[0]:.2f}, after {min(10, args.steps)} steps {at_ten:.2f}, "
        f"after {args.steps} steps {losses[-1]:.2f}"
    )
    return losses


def mlp_regression(hidden: tuple[int, ...] = HIDDEN) -> gc.Symbol:
    """FullyConnected + relu per hidden layer, then one linear output with a squared loss."""
    net = gc.Variable("data")
    for index, width in enumerate(hidden, start=1):
        net = gc.FullyConnected(net, num_hidden=width, name=f"fc{index}")
        net = gc.Activation(net, act_type="relu", name=f"relu{index}")
    net = gc.FullyConnected(net, num_hidden=1, name=f"fc{len(hidden) + 1}")
    return gc.LinearRegressionOutput(net, name="lro")


def overfitting_mlp(args, features, targets, ctx) -> dict[str, list]:
    """Part (b); returns ``Model.history``."""
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(features))
    train_rows = order[: round(len(order) * (1 - VALIDATION_FRACTION))]
    val_rows = order[len(train_rows) :]
    x_train, x_val = standardize(features[train_rows], features[val_rows])
    train = gc.io.NDArrayIter(
        x_train,
        targets[train_rows],
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
        label_name=LABEL,
    )
    val = gc.io.NDArrayIter(x_val, targets[val_rows], batch_size=len(x_val), label_name=LABEL)
    model = gc.Model(mlp_regression(), ctx, label_names=(LABEL,))
    history = model.fit(
        train,
        val,
        eval_metric="mse",
        optimizer="adam",
        optimizer_params={"learning_rate": args.mlp_lr},
        num_epoch=args.epochs,
        seed=args.seed,
        verbose=False,
    )
    train_mse, val_mse = history["train_mse"], history["val_mse"]
    if not args.quiet:
        widths = "-".join(str(width) for width in HIDDEN)
        print(
            f"(b) MLP {widths} relu, {len(x_train)} training / {len(x_val)} validation rows, "
            f"Adam lr {args.mlp_lr}, batch {args.batch_size}: MSE per epoch"
        )
        every = report_every(args.epochs)
        for epoch in range(1, args.epochs + 1):
            if epoch == 1 or epoch % every == 0:
                train_value, val_value = train_mse[epoch - 1], val_mse[epoch - 1]
                print(f"  epoch {epoch:5d}  train {train_value:8.3f}  val {val_value:8.3f}")
    best = int(np.argmin(val_mse))
    print(
        f"(b) best validation mse {val_mse[best]:.3f} at epoch {best + 1} (train "
        f"{train_mse[best]:.3f}); at epoch {args.epochs}: train {train_mse[-1]:.3f}, "
        f"val {val_mse[-1]:.3f}"
    )
    return history


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ctx = gc.cpu()
    csv = None if args.data_dir is None else args.data_dir / "housing.csv"
    features, targets = gc.datasets.housing(csv)
    linear_regression(args, features, targets, ctx)
    overfitting_mlp(args, features, targets, ctx)


if __name__ == "__main__":
    main()
