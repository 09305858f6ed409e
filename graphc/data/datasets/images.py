"""Fashion-MNIST and MNIST: 28x28 grey images in ten classes, read from their IDX files.

Neither full data set ships with graphc (Fashion-MNIST is 30 MB compressed): the loaders look
for the four standard files in a list of directories. A class-balanced subset of
Fashion-MNIST (6,000 training and 1,000 test images) does ship, for tests and examples that
must run without any download: ``fashion_mnist(bundled=True)``.

>>> train_x, train_y, test_x, test_y = fashion_mnist(bundled=True)
>>> train_x.shape, test_y.shape
((6000, 1, 28, 28), (1000,))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graphc.backend.cache_location import cache_dir
from graphc.data.datasets.errors import DataFormatError
from graphc.data.datasets.idx import read_idx

IDX_FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_SIZE = 28
NUM_CLASSES = 10

# Where `apt-get install dataset-fashion-mnist` puts the files (`dpkg -L dataset-fashion-mnist`).
# A module attribute, read at each call, so tests can point it elsewhere.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

BUNDLED_FASHION_MNIST_DIR = Path(__file__).resolve().parent / "bundled" / "fashion-mnist-subset"

Arrays4 = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def fashion_mnist(path: str | Path | None = None, bundled: bool = False) -> Arrays4:
    """Zalando's Fashion-MNIST: 60,000 training and 10,000 test images of clothing.

    Parameters
    ----------
    path : str or Path, optional
        A directory holding the four IDX files (each raw or ``.gz``). When given, it is the
        only place searched. Otherwise the search goes, in order, through
        ``$GRAPHC_DATA/fashion-mnist``, ``$GRAPHC_DATA``, ``<cache>/data/fashion-mnist``,
        ``<cache>/data`` (``<cache>`` is ``$GRAPHC_CACHE_DIR``, default ``~/.cache/graphc``)
        and the Debian package's ``/usr/share/datasets/fashion-mnist``; the first directory
        that holds all four files is used.
    bundled : bool
        Load the subset shipped with graphc instead: 600 images per class from the training
        set and 100 per class from the test set (see ``graphc/data/datasets/bundled/PROVENANCE.md``).

    Returns
    -------
    train_x, train_y, test_x, test_y : numpy.ndarray
        Images as float32 in [0, 1] of shape (N, 1, 28, 28); labels as float32 class
        indices 0..9 of shape (N,), the form ``SoftmaxOutput`` takes.

    Raises
    ------
    FileNotFoundError
        No directory searched holds all four files; the message lists the directories,
        the file names and how to install the data set.
    DataFormatError
        A file is corrupt or truncated, or the labels do not match the images.

    Examples
    --------
    >>> train_x, train_y, test_x, test_y = fashion_mnist(bundled=True)
    >>> float(train_x.min()), float(train_x.max()), train_x.dtype.name
    (0.0, 1.0, 'float32')
    """
    if bundled:
        if path is not None:
            raise ValueError("fashion_mnist: pass either path or bundled=True, not both")
        return _load_idx_set(_find_idx_files([BUNDLED_FASHION_MNIST_DIR]))
    if path is not None:
        directories = [Path(path)]
    else:
        directories = [*_default_directories("fashion-mnist"), DEBIAN_FASHION_MNIST_DIR]
    found = _find_idx_files(directories)
    if found is None:
        raise FileNotFoundError(
            _missing_message(
                "Fashion-MNIST",
                directories,
                "install it with `apt-get install -y dataset-fashion-mnist` (the files go to "
                f"{DEBIAN_FASHION_MNIST_DIR}), or put the IDX files in "
                "$GRAPHC_DATA/fashion-mnist, or pass fashion_mnist(path=DIRECTORY); "
                "fashion_mnist(bundled=True) loads the 7,000-image subset shipped with graphc",
            )
        )
    return _load_idx_set(found)


def mnist(path: str | Path | None = None) -> Arrays4:
    """LeCun's MNIST digits: 60,000 training and 10,000 test images.

    MNIST has no Debian package and graphc ships none of it: put the four IDX files (from
    http://yann.lecun.com/exdb/mnist/ or a mirror) in ``$GRAPHC_DATA/mnist`` or
    ``~/.cache/graphc/data/mnist``, or pass their directory.

    Parameters
    ----------
    path : str or Path, optional
        A directory holding the four IDX files (each raw or ``.gz``). When given, it is the
        only place searched. Otherwise the search goes, in order, through
        ``$GRAPHC_DATA/mnist``, ``$GRAPHC_DATA``, ``<cache>/data/mnist`` and ``<cache>/data``
        (``<cache>`` is ``$GRAPHC_CACHE_DIR``, default ``~/.cache/graphc``).

    Returns
    -------
    train_x, train_y, test_x, test_y : numpy.ndarray
        Images as float32 in [0, 1] of shape (N, 1, 28, 28); labels as float32 class
        indices 0..9 of shape (N,).

    Raises
    ------
    FileNotFoundError
        No directory searched holds all four files; the message lists the directories,
        the file names and where to put them.
    DataFormatError
        A file is corrupt or truncated, or the labels do not match the images.

    Examples
    --------
    >>> mnist(path="/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    FileNotFoundError: MNIST: no directory searched holds all four IDX files ...
    """
    if path is not None:
        directories = [Path(path)]
    else:
        directories = _default_directories("mnist")
    found = _find_idx_files(directories)
    if found is None:
        raise FileNotFoundError(
            _missing_message(
                "MNIST",
                directories,
                "download the four files (http://yann.lecun.com/exdb/mnist/ or a mirror) into "
                f"$GRAPHC_DATA/mnist or {cache_dir() / 'data' / 'mnist'}, "
                "or pass mnist(path=DIRECTORY)",
            )
        )
    return _load_idx_set(found)


def _default_directories(subdirectory: str) -> list[Path]:
    """The directories searched when no path is given. The named subdirectory comes before
    its parent: MNIST and Fashion-MNIST use the same file names, so files loose in the
    parent could be either, and a subdirectory says which."""
    roots = []
    if os.environ.get("GRAPHC_DATA"):
        roots.append(Path(os.environ["GRAPHC_DATA"]))
    roots.append(cache_dir() / "data")
    return [directory for root in roots for directory in (root / subdirectory, root)]


def _find_idx_file(directory: Path, name: str) -> Path | None:
    """``directory/name``, else ``directory/name.gz``, else None. The raw file wins: it is
    what a user who unpacked the download meant to be read."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_idx_files(directories: list[Path]) -> list[Path] | None:
    """The four files from the first directory that has them all, in IDX_FILE_NAMES order."""
    for directory in directories:
        files = [_find_idx_file(directory, name) for name in IDX_FILE_NAMES]
        if all(file is not None for file in files):
            return files
    return None


def _missing_message(data_set: str, directories: list[Path], how_to_get: str) -> str:
    lines = [f"{data_set}: no directory searched holds all four IDX files"]
    lines.append("expected (each raw or with .gz): " + ", ".join(IDX_FILE_NAMES))
    lines.append("searched, in order:")
    for directory in directories:
        missing = [name for name in IDX_FILE_NAMES if _find_idx_file(directory, name) is None]
        state = "does not exist" if not directory.is_dir() else "missing " + ", ".join(missing)
        lines.append(f"  {directory} ({state})")
    lines.append(f"To get {data_set}: {how_to_get}.")
    return "\n".join(lines)


def _load_idx_set(files: list[Path]) -> Arrays4:
    train_images, train_labels, test_images, test_labels = files
    return (
        *_load_split(train_images, train_labels),
        *_load_split(test_images, test_labels),
    )


def _load_split(images_file: Path, labels_file: Path) -> tuple[np.ndarray, np.ndarray]:
    images = _read_checked(images_file, ndim=3, what="images")
    labels = _read_checked(labels_file, ndim=1, what="labels")
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataFormatError(
            f"{images_file}: images of {images.shape[1]}x{images.shape[2]} pixels, "
            f"expected {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    if len(labels) != len(images):
        raise DataFormatError(
            f"{labels_file}: {len(labels)} labels for the {len(images)} images of {images_file}"
        )
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise DataFormatError(
            f"{labels_file}: label {int(labels.max())} is not a class index 0..{NUM_CLASSES - 1}"
        )
    # Scaled in float32 throughout: a float64 intermediate would double the peak memory
    # (60,000 images are 188 MB as float32).
    scaled = images.astype(np.float32)
    scaled /= np.float32(255.0)
    return scaled.reshape(len(images), 1, IMAGE_SIZE, IMAGE_SIZE), labels.astype(np.float32)


def _read_checked(path: Path, ndim: int, what: str) -> np.ndarray:
    array = read_idx(path)
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise DataFormatError(
            f"{path}: expected {what}: unsigned bytes in {ndim} dimension(s), "
            f"found {array.dtype.name} in {array.ndim} dimension(s) of shape {array.shape}"
        )
    return array
