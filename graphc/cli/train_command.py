"""``graphc train MODEL.py --data ...`` and ``graphc evaluate PREFIX EPOCH --data ...``.

The data sets are graphc's (``gc.datasets``): ``fashion-mnist`` (the full set when it is
installed, else the subset bundled with graphc; the output says which), a directory of
Fashion-MNIST's IDX files, ``housing`` (features standardized) and ``hiawatha`` (characters
in BPTT windows, time-major). Images are flattened for a model whose ``input_shapes`` give
its data two dimensions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

import graphc as gc
from graphc.cli.compile_command import parse_option
from graphc.cli.model_files import load_model_file
from graphc.training.heads import loss_heads
from graphc.training.plot import matplotlib_modules


@dataclass
class DataSplit:
    train: object
    test: object | None
    what: str
    images: np.ndarray | None = None  # the test images, for evaluate's report
    labels: np.ndarray | None = None


def add_parsers(commands, common) -> None:
    train = commands.add_parser("train", parents=[common], help="train a model file with Model.fit")
    train.add_argument("model", help="a .py model file")
    train.add_argument(
        "--option",
        action="append",
        type=parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="an argument of the file's get_symbol() or build() (repeatable)",
    )
    _data_options(train)
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--optimizer", default="sgd")
    train.add_argument("--lr", type=float, default=0.1)
    train.add_argument("--momentum", type=float, default=None)
    train.add_argument("--wd", type=float, default=None)
    train.add_argument("--checkpoint", metavar="PREFIX", default=None, help="save every epoch")
    train.add_argument(
        "--resume",
        metavar="EPOCH",
        type=int,
        default=None,
        help="continue from the checkpoint PREFIX of this epoch",
    )
    train.add_argument("--plot", metavar="PNG", default=None, help="the loss and metric curves")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--np",
        type=int,
        default=1,
        metavar="N",
        help="train on N processes with kvstore dist_sync: runs mpiexec -n N for you",
    )
    train.add_argument(
        "--kvstore",
        choices=["local", "dist_sync"],
        default="local",
        help="dist_sync when launched under mpiexec yourself (each rank reads its part)",
    )
    train.set_defaults(run=run_train)
    evaluate = commands.add_parser(
        "evaluate", parents=[common], help="the metrics of a saved model, a report"
    )
    evaluate.add_argument("prefix")
    evaluate.add_argument("epoch", type=int)
    _data_options(evaluate)
    evaluate.add_argument(
        "--report",
        metavar="PNG",
        default=None,
        help="a classifier's confusion matrix and worst mistakes as PNG",
    )
    evaluate.set_defaults(run=run_evaluate)


def _data_options(parser) -> None:
    parser.add_argument(
        "--data", required=True, help="fashion-mnist, housing, hiawatha or a directory of IDX files"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--bptt", type=int, default=100, help="hiawatha: the window length")


def load_data(
    name: str, batch: int, bptt: int, flatten: bool, parts: tuple[int, int] = (1, 0)
) -> DataSplit:
    """The training (and test) iterators of ``name``; ``parts``: (number of parts, this
    rank's part) of the training data, for a data-parallel run."""
    shard = {"num_parts": parts[0], "part_index": parts[1]}
    if name == "housing":
        features, targets = gc.datasets.housing()
        features = gc.datasets.standardized(features)
        train = gc.io.NDArrayIter(features, targets, batch_size=batch, **shard)
        return DataSplit(train, None, f"Boston Housing, {len(targets)} districts")
    if name == "hiawatha":
        corpus = gc.datasets.text()
        train = gc.io.BPTTIter(corpus.data, batch, bptt, layout="TN", **shard)
        return DataSplit(train, None, f"The Song of Hiawatha, {len(corpus.data):,} characters")
    if name == "fashion-mnist" or os.path.isdir(name):
        if name == "fashion-mnist":
            try:
                arrays, what = gc.datasets.fashion_mnist(), "Fashion-MNIST, the full set"
            except FileNotFoundError:
                arrays, what = (
                    gc.datasets.fashion_mnist(bundled=True),
                    "Fashion-MNIST, the subset bundled with graphc",
                )
        else:
            arrays, what = gc.datasets.fashion_mnist(name), f"Fashion-MNIST from {name}"
        train_x, train_y, test_x, test_y = arrays
        if flatten:
            train_x, test_x = (x.reshape(len(x), -1) for x in (train_x, test_x))
        return DataSplit(
            gc.io.NDArrayIter(train_x, train_y, batch_size=batch, shuffle=True, seed=0, **shard),
            gc.io.NDArrayIter(test_x, test_y, batch_size=batch),
            f"{what}: {len(train_y):,} training and {len(test_y):,} test images",
            test_x,
            test_y,
        )
    raise ValueError(f"--data {name!r}: use fashion-mnist, housing, hiawatha or a directory")


def reads_flat_images(symbol, shapes) -> bool:
    """Whether the model takes images as rows of 784: its data declared two-dimensional,
    else the image shape not fitting where a flat row does."""
    if "data" in shapes:
        return len(shapes["data"]) == 2
    try:
        symbol.infer_shape_partial(data=(1, 1, 28, 28))
    except gc.ShapeError:
        return True
    return False


def run_train(args: argparse.Namespace) -> int:
    if args.np < 1:
        raise ValueError(f"--np {args.np}: the number of processes must be at least 1")
    if args.np > 1:
        return _launch_ranks(args)
    kv = gc.kvstore.create(args.kvstore)
    model_file = load_model_file(args.model, dict(args.option))
    flat = reads_flat_images(model_file.symbol, model_file.input_shapes)
    data = load_data(args.data, args.batch_size, args.bptt, flat, (kv.num_workers, kv.rank))
    if kv.rank == 0:  # the other ranks of a data-parallel run print nothing
        print(f"data:       {data.what}")
    if kv.num_workers > 1 and kv.rank == 0:
        print(
            f"workers:    {kv.num_workers} (kvstore dist_sync), batch {args.batch_size} each,"
            f" {args.batch_size * kv.num_workers} in all"
        )
    if args.resume is not None:
        if args.checkpoint is None:
            raise ValueError("--resume needs --checkpoint PREFIX")
        model = gc.Model.load(args.checkpoint, args.resume)
    else:
        model = gc.Model(model_file.symbol, label_names=model_file.label_names)
    params = {"learning_rate": args.lr}
    if args.momentum is not None:
        params["momentum"] = args.momentum
    if args.wd is not None:
        params["wd"] = args.wd
    callbacks = model.checkpoint_callback(args.checkpoint) if args.checkpoint else None
    model.fit(
        data.train,
        eval_data=data.test,
        optimizer=args.optimizer,
        optimizer_params=params,
        num_epoch=(args.resume or 0) + args.epochs,
        begin_epoch=args.resume or 0,
        epoch_end_callback=callbacks,
        verbose=not args.quiet,
        kvstore=kv,
    )
    if args.plot and kv.rank == 0:
        gc.plot.history(model.history, args.plot, title=os.path.basename(args.model))
        print(f"plot:       {args.plot}")
    return 0


def _launch_ranks(args: argparse.Namespace) -> int:
    """``graphc train ... --np N``: the same command on N ranks under ``mpiexec`` (the one
    installed beside this Python first: the ``mpich`` wheel's), with ``--kvstore
    dist_sync``; its exit status."""
    here = os.path.dirname(sys.executable)
    mpiexec = shutil.which("mpiexec", path=here) or shutil.which("mpiexec")
    if mpiexec is None:
        raise ImportError("--np needs mpiexec: pip install 'graphc[dist]' (mpi4py and mpich)")
    argv = list(args.argv)
    for index, item in enumerate(argv):  # drop --np N / --np=N
        if item == "--np":
            del argv[index : index + 2]
            break
        if item.startswith("--np="):
            del argv[index]
            break
    command = [mpiexec, "-n", str(args.np), sys.executable, "-m", "graphc.cli", *argv]
    return subprocess.run([*command, "--kvstore", "dist_sync"], check=False).returncode


def run_evaluate(args: argparse.Namespace) -> int:
    model = gc.Model.load(args.prefix, args.epoch)
    data = load_data(args.data, args.batch_size, args.bptt, reads_flat_images(model.symbol, {}))
    split = data.test if data.test is not None else data.train
    print(f"data:       {data.what} ({'test' if data.test is not None else 'all'})")
    for name, value in model.score(split):
        print(f"{name}: {value:.6g}")
    heads = loss_heads(model.symbol)
    classifier = bool(heads) and heads[0].definition.output == "class_probabilities"
    if data.images is not None and classifier:
        probs = model.predict(data.images, batch_size=args.batch_size)
        base = args.report or f"{args.prefix}-{args.epoch:04d}-report"
        _classifier_report(probs, data.labels, data.images, base)
    elif args.report:
        print("report:     none (a report is of a classifier on images)")
    return 0


def _classifier_report(probs, labels, images, base: str) -> None:
    """The confusion matrix and the most confident mistakes: printed, written to
    ``base.txt``, and drawn to ``base.png`` when matplotlib is installed."""
    predicted = probs.argmax(axis=1)
    truth = labels.astype(int)
    classes = probs.shape[1]
    confusion = np.zeros((classes, classes), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    lines = ["confusion (rows: true class, columns: predicted)"]
    lines.append("      " + " ".join(f"{c:5d}" for c in range(classes)))
    lines += [f"{row:5d} " + " ".join(f"{n:5d}" for n in confusion[row]) for row in range(classes)]
    wrong = np.flatnonzero(predicted != truth)
    worst = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:10]
    lines.append("most confident mistakes (test index, true, predicted, probability)")
    lines += [
        f"  {i:6d} {truth[i]:4d} {predicted[i]:4d} {probs[i, predicted[i]]:.3f}" for i in worst
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(base + ".txt", "w", encoding="utf-8") as handle:
        handle.write(text)
    written = [base + ".txt"]
    try:
        _report_png(base + ".png", confusion, images, truth, predicted, probs, worst)
        written.append(base + ".png")
    except ImportError:
        pass  # the text is the report; the PNG needs matplotlib
    print(f"report:     {', '.join(written)}")


def _report_png(png, confusion, images, truth, predicted, probs, worst) -> None:
    figure_class, _ = matplotlib_modules("graphc evaluate --report")
    figure = figure_class(figsize=(12, 5))
    axes = figure.add_subplot(1, 2, 1)
    axes.imshow(confusion, cmap="Blues")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("confusion matrix")
    for slot, index in enumerate(worst[:8]):
        ax = figure.add_subplot(2, 8, 5 + slot + (slot // 4) * 4)
        ax.imshow(images[index].reshape(28, 28), cmap="gray")
        ax.set_title(
            f"{truth[index]}->{predicted[index]} {probs[index, predicted[index]]:.2f}", fontsize=8
        )
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(png)
