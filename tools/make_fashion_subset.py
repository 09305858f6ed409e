"""Write the Fashion-MNIST subset that ships with graphc (``fashion_mnist(bundled=True)``).

From the full data set (by default the Debian package's files, ``apt-get install -y
dataset-fashion-mnist``) it picks, with a seeded ``numpy.random.Generator``, the same number
of images from each class without replacement: 600 per class from the training set and 100
per class from the test set. The picked images keep their original order, and the files are
gzip IDX with a fixed header (no name, zero time stamp), so the same source and seed give the
same bytes. Usage, from the repository root::

    .venv/bin/python tools/make_fashion_subset.py

Record any change of the rule or the seed in ``graphc/data/datasets/bundled/PROVENANCE.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from graphc.data.datasets.idx import read_idx, write_idx
from graphc.data.datasets.images import (
    BUNDLED_FASHION_MNIST_DIR,
    DEBIAN_FASHION_MNIST_DIR,
    IDX_FILE_NAMES,
    NUM_CLASSES,
)

SEED = 20170825  # Fashion-MNIST's release date; any fixed value would do.


def balanced_selection(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_class`` samples of each class, drawn without replacement and
    returned sorted (so the subset keeps the source's order)."""
    chosen = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"class {label} has {len(members)} samples, fewer than {per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def source_file(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{directory}: no {name} or {name}.gz (apt-get install -y dataset-fashion-mnist)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEBIAN_FASHION_MNIST_DIR)
    parser.add_argument("--out", type=Path, default=BUNDLED_FASHION_MNIST_DIR)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parser.parse_args()

    train_images, train_labels, test_images, test_labels = (
        read_idx(source_file(args.source, name)) for name in IDX_FILE_NAMES
    )
    # One generator for both splits, train first: the seed fixes the whole subset.
    rng = np.random.default_rng(args.seed)
    train = balanced_selection(train_labels, args.train_per_class, rng)
    test = balanced_selection(test_labels, args.test_per_class, rng)

    args.out.mkdir(parents=True, exist_ok=True)
    subsets = (train_images[train], train_labels[train], test_images[test], test_labels[test])
    total = 0
    for name, array in zip(IDX_FILE_NAMES, subsets):
        path = args.out / f"{name}.gz"
        write_idx(path, array, compresslevel=9)
        total += path.stat().st_size
        print(f"{path}: {array.shape} {path.stat().st_size:,} bytes")
    print(f"total {total:,} bytes")


if __name__ == "__main__":
    main()
