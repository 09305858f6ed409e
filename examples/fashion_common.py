"""What the Fashion-MNIST examples share: flags, data, training with gc.Model, the report.

Each example (``mnist_softmax.py``, ``mnist_mlp.py``, ``lenet.py``) gives its symbol and
its default hyper-parameters; this module parses the flags, loads the data (the subset
bundled with graphc by default, the full set with ``--full`` or ``--data-dir``), trains with
``gc.Model.fit`` (progress bar, one summary line per epoch), reports the test accuracy and
optionally saves a checkpoint.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc


def parse(description: str, epochs: int, batch_size: int, lr: float, momentum: float, wd: float):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--momentum", type=float, default=momentum)
    parser.add_argument("--wd", type=float, default=wd)
    parser.add_argument("--ctx", default="cpu", choices=["cpu"], help="device (cpu only)")
    parser.add_argument("--data-dir", default=None, help="directory with the full IDX files")
    parser.add_argument("--full", action="store_true", help="the full data set (not bundled)")
    parser.add_argument("--shuffle", action="store_true", help="reshuffle every epoch")
    parser.add_argument("--checkpoint", default=None, help="save PREFIX-symbol.json, .npz")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use the first N images")
    return parser.parse_args()


def load(args, flatten: bool):
    bundled = args.data_dir is None and not args.full
    train_x, train_y, test_x, test_y = gc.datasets.fashion_mnist(
        path=args.data_dir, bundled=bundled
    )
    if args.limit:
        train_x, train_y = train_x[: args.limit], train_y[: args.limit]
        test_x, test_y = test_x[: args.limit], test_y[: args.limit]
    if flatten:
        train_x, test_x = train_x.reshape(len(train_x), -1), test_x.reshape(len(test_x), -1)
    what = "bundled subset" if bundled else "full set"
    print(f"Fashion-MNIST ({what}): {len(train_x):,} training, {len(test_x):,} test images")
    return train_x, train_y, test_x, test_y


def train(symbol: gc.Symbol, args, flatten: bool) -> float:
    """Train ``symbol`` as the flags say and return the test accuracy."""
    train_x, train_y, test_x, test_y = load(args, flatten)
    train_iter = gc.io.NDArrayIter(
        train_x, train_y, batch_size=args.batch_size, shuffle=args.shuffle, seed=args.seed
    )
    test_iter = gc.io.NDArrayIter(test_x, test_y, batch_size=args.batch_size)
    model = gc.Model(symbol, ctx=gc.cpu())
    params = {"learning_rate": args.lr, "wd": args.wd}
    if args.momentum:
        params["momentum"] = args.momentum
    start = time.perf_counter()
    model.fit(
        train_iter,
        eval_data=test_iter,
        eval_metric="acc",
        optimizer="sgd",
        optimizer_params=params,
        initializer=gc.init.Xavier(),
        num_epoch=args.epochs,
        seed=args.seed,
        quiet=True if args.quiet else None,
    )
    seconds = time.perf_counter() - start
    predictions = model.predict(test_x, batch_size=args.batch_size)
    accuracy = float(np.mean(predictions.argmax(axis=1) == test_y))
    print(f"test accuracy {accuracy:.4f} after {args.epochs} epochs ({seconds:.1f} s training)")
    if args.checkpoint:
        model.save_checkpoint(args.checkpoint, args.epochs)
        print(f"saved {args.checkpoint}-symbol.json and {args.checkpoint}-{args.epochs:04d}.npz")
    return accuracy
