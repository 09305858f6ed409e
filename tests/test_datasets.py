"""graphc.data.datasets: the shipped data, the IDX reader and the search for MNIST-shaped files.

Only the bundled subset and tiny IDX files written here are read: the tests never need the
Debian package or the network (the Debian directory is pointed at tmp_path where tested).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from graphc.data import datasets
from graphc.data.datasets import IDX_FILE_NAMES, DataFormatError, read_idx, write_idx
from graphc.data.datasets import images as images_module

pytestmark = pytest.mark.unit

DATA_DIR = Path(datasets.__file__).parent / "bundled"


def write_idx_set(
    directory: Path,
    num_train: int = 12,
    num_test: int = 5,
    first_label: int = 0,
    compressed: tuple[bool, bool, bool, bool] = (True, True, True, True),
) -> tuple[np.ndarray, ...]:
    """Write the four MNIST files with known content; return the uint8 arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    pixels = np.arange((num_train + num_test) * 28 * 28) % 256
    pixels = pixels.astype(np.uint8).reshape(-1, 28, 28)
    labels = ((np.arange(num_train + num_test) + first_label) % 10).astype(np.uint8)
    arrays = (pixels[:num_train], labels[:num_train], pixels[num_train:], labels[num_train:])
    for name, array, gz in zip(IDX_FILE_NAMES, arrays, compressed):
        write_idx(directory / (f"{name}.gz" if gz else name), array)
    return arrays


@pytest.fixture
def isolated_search(tmp_path, monkeypatch):
    """No GRAPHC_DATA, an empty cache and an empty Debian directory: only what a test
    writes can be found."""
    monkeypatch.delenv("GRAPHC_DATA", raising=False)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(images_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    return tmp_path


# The bundled Fashion-MNIST subset


def test_bundled_subset_shapes_dtypes_and_pixel_range():
    train_x, train_y, test_x, test_y = datasets.fashion_mnist(bundled=True)
    assert train_x.shape == (6000, 1, 28, 28) and test_x.shape == (1000, 1, 28, 28)
    assert train_y.shape == (6000,) and test_y.shape == (1000,)
    assert {a.dtype for a in (train_x, train_y, test_x, test_y)} == {np.dtype(np.float32)}
    assert train_x.min() == 0.0 and train_x.max() == 1.0
    assert 0.0 <= test_x.min() and test_x.max() <= 1.0
    assert np.array_equal(train_y, np.round(train_y))


def test_bundled_subset_is_class_balanced():
    _, train_y, _, test_y = datasets.fashion_mnist(bundled=True)
    assert np.bincount(train_y.astype(int)).tolist() == [600] * 10
    assert np.bincount(test_y.astype(int)).tolist() == [100] * 10


def test_bundled_images_are_the_stored_bytes_divided_by_255():
    train_x, _, _, _ = datasets.fashion_mnist(bundled=True)
    stored = read_idx(DATA_DIR / "fashion-mnist-subset" / "train-images-idx3-ubyte.gz")
    assert stored.dtype == np.uint8 and stored.shape == (6000, 28, 28)
    np.testing.assert_array_equal(train_x[:, 0], stored.astype(np.float32) / np.float32(255))


def test_bundled_and_path_together_are_refused():
    with pytest.raises(ValueError, match="either path or bundled=True"):
        datasets.fashion_mnist(path="/somewhere", bundled=True)


# IDX files


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("name", ["x-idx3", "x-idx3.gz"])
def test_idx_round_trip(tmp_path, dtype, name):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_is_big_endian_on_disk(tmp_path):
    write_idx(tmp_path / "x", np.array([1, 258], dtype=np.int32))
    assert (tmp_path / "x").read_bytes() == bytes.fromhex("00000c01 00000002 00000001 00000102")


def test_compressed_idx_files_are_reproducible(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_bad_magic_number_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((2, 28, 28), dtype=np.uint8))
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(DataFormatError, match="bad magic number 0x12340803") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_gzip_file_without_gz_name_gets_a_hint(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros(4, dtype=np.uint8))
    (tmp_path / "x").write_bytes((tmp_path / "x.gz").read_bytes())
    with pytest.raises(DataFormatError, match="gzip-compressed without a .gz name"):
        read_idx(tmp_path / "x")


def test_truncated_body_reports_expected_and_found_bytes(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, np.zeros((3, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataFormatError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message
    assert "3x28x28" in message and "2352 bytes" in message and "found 2252 bytes" in message
    assert "truncated" in message


def test_extra_bytes_after_the_body_are_an_error(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.zeros(5, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataFormatError, match="5 bytes after the 8-byte header.*found 6 bytes"):
        read_idx(path)


def test_truncated_header_is_reported(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2]))
    with pytest.raises(DataFormatError, match="declares 3 dimensions.*only 8 bytes"):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.arange(4 * 28 * 28).astype(np.uint8).reshape(4, 28, 28))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFormatError, match="gzip stream ends early") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_gzip_crc_error_names_the_file(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, np.arange(50, dtype=np.uint8))
    content = bytearray(path.read_bytes())
    content[-8] ^= 0xFF  # the CRC-32 of the gzip trailer
    path.write_bytes(bytes(content))
    with pytest.raises(DataFormatError, match="corrupt gzip data: CRC check failed") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


# Finding and loading MNIST-shaped sets


def test_explicit_path_loads_raw_and_gz_files(isolated_search):
    directory = isolated_search / "mine"
    arrays = write_idx_set(directory, compressed=(True, False, False, True))
    train_x, train_y, test_x, test_y = datasets.mnist(path=directory)
    assert train_x.shape == (12, 1, 28, 28) and test_x.shape == (5, 1, 28, 28)
    assert train_x.dtype == np.float32 and train_y.dtype == np.float32
    np.testing.assert_array_equal(train_x[:, 0] * 255, arrays[0].astype(np.float32))
    np.testing.assert_array_equal(test_x[:, 0] * 255, arrays[2].astype(np.float32))
    assert train_y.tolist() == arrays[1].tolist() and test_y.tolist() == arrays[3].tolist()


def test_graphc_data_subdirectory_comes_before_its_parent(isolated_search, monkeypatch):
    root = isolated_search / "data"
    write_idx_set(root, first_label=1)
    write_idx_set(root / "fashion-mnist", first_label=7)
    monkeypatch.setenv("GRAPHC_DATA", str(root))
    assert datasets.fashion_mnist()[1][0] == 7
    # mnist has no subdirectory here, so it falls back to the files loose in GRAPHC_DATA.
    assert datasets.mnist()[1][0] == 1


def test_cache_directory_is_searched(isolated_search):
    write_idx_set(isolated_search / "cache" / "data" / "mnist", first_label=3)
    assert datasets.mnist()[1][0] == 3


def test_debian_directory_is_searched_last(isolated_search):
    write_idx_set(isolated_search / "debian", first_label=5)
    assert datasets.fashion_mnist()[1][0] == 5
    write_idx_set(isolated_search / "cache" / "data" / "fashion-mnist", first_label=2)
    assert datasets.fashion_mnist()[1][0] == 2


def test_explicit_path_is_the_only_place_searched(isolated_search, monkeypatch):
    write_idx_set(isolated_search / "data" / "mnist")
    monkeypatch.setenv("GRAPHC_DATA", str(isolated_search / "data"))
    with pytest.raises(FileNotFoundError) as caught:
        datasets.mnist(path=isolated_search / "empty")
    message = str(caught.value)
    assert str(isolated_search / "empty") in message
    assert str(isolated_search / "data") not in message


def test_missing_fashion_mnist_message_lists_directories_files_and_install(
    isolated_search, monkeypatch
):
    monkeypatch.setenv("GRAPHC_DATA", str(isolated_search / "data"))
    # Three of the four files: an incomplete set is passed over, and the message says why.
    write_idx_set(isolated_search / "data" / "fashion-mnist")
    (isolated_search / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as caught:
        datasets.fashion_mnist()
    message = str(caught.value)
    searched = [
        isolated_search / "data" / "fashion-mnist",
        isolated_search / "data",
        isolated_search / "cache" / "data" / "fashion-mnist",
        isolated_search / "cache" / "data",
        isolated_search / "debian",
    ]
    positions = [message.index(f"  {directory} (") for directory in searched]
    assert positions == sorted(positions)
    assert f"{searched[0]} (missing t10k-labels-idx1-ubyte)" in message
    assert f"{searched[-1]} (does not exist)" in message
    assert all(name in message for name in IDX_FILE_NAMES)
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "$GRAPHC_DATA/fashion-mnist" in message


def test_missing_mnist_message_says_where_to_put_the_files(isolated_search):
    with pytest.raises(FileNotFoundError) as caught:
        datasets.mnist()
    message = str(caught.value)
    assert str(isolated_search / "cache" / "data" / "mnist") in message
    assert "$GRAPHC_DATA/mnist" in message and "apt-get" not in message
    assert all(name in message for name in IDX_FILE_NAMES)


def test_label_count_must_equal_image_count(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="11 labels for the 12 images") as caught:
        datasets.mnist(path=tmp_path)
    assert "train-labels-idx1-ubyte.gz" in str(caught.value)


def test_labels_file_in_place_of_images_is_reported(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="expected images.*3 dimension"):
        datasets.mnist(path=tmp_path)


def test_images_of_another_size_are_reported(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((12, 10, 10), dtype=np.uint8))
    with pytest.raises(DataFormatError, match="10x10 pixels, expected 28x28"):
        datasets.mnist(path=tmp_path)


def test_labels_outside_the_ten_classes_are_reported(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(5, 10, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="label 10 is not a class index"):
        datasets.mnist(path=tmp_path)


def test_corrupt_file_in_a_set_is_reported_not_skipped(isolated_search, monkeypatch):
    write_idx_set(isolated_search / "debian")
    broken = isolated_search / "data" / "fashion-mnist"
    write_idx_set(broken)
    target = broken / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-20])
    monkeypatch.setenv("GRAPHC_DATA", str(isolated_search / "data"))
    with pytest.raises(DataFormatError, match="train-images-idx3-ubyte.gz"):
        datasets.fashion_mnist()


# Housing


def test_housing_shapes_and_first_row():
    features, targets = datasets.housing()
    assert features.shape == (506, 13) and targets.shape == (506,)
    assert features.dtype == np.float32 and targets.dtype == np.float32
    first = [0.00632, 18.0, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1.0, 296.0, 15.3, 396.9, 4.98]
    np.testing.assert_array_equal(features[0], np.array(first, dtype=np.float32))
    assert targets[0] == np.float32(24.0) and targets[1] == np.float32(21.6)
    assert set(np.unique(features[:, 3]).tolist()) == {0.0, 1.0}  # chas


def test_housing_from_a_path(tmp_path):
    path = tmp_path / "h.csv"
    rows = [",".join(datasets.HOUSING_COLUMNS), ",".join(["1"] * 13 + ["7.5"]), ""]
    path.write_text("\n".join(rows))
    features, targets = datasets.housing(path=path)
    assert features.tolist() == [[1.0] * 13] and targets.tolist() == [7.5]


def test_housing_bad_header_and_bad_field_name_the_line(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match=r"h\.csv:1: expected the header crim,"):
        datasets.housing(path=path)
    header = ",".join(datasets.HOUSING_COLUMNS)
    path.write_text(header + "\n" + ",".join(["1"] * 14) + "\n" + ",".join(["x"] * 14) + "\n")
    with pytest.raises(DataFormatError, match=r"h\.csv:3: a field is not a number"):
        datasets.housing(path=path)
    path.write_text(header + "\n1,2\n")
    with pytest.raises(DataFormatError, match=r"h\.csv:2: 2 fields, expected 14"):
        datasets.housing(path=path)


# Text


def normalized(content: bytes) -> str:
    return content.decode("utf-8").removeprefix("\ufeff").replace("\r\n", "\n")


def test_shipped_text_keeps_its_original_bytes():
    content = (DATA_DIR / "hiawatha.txt").read_bytes()
    assert len(content) == 192_316
    assert content.startswith(b"\xef\xbb\xbfShould you ask me") and b"\r\n" in content


def test_text_decode_round_trip_and_vocabulary():
    corpus = datasets.text()
    expected = normalized((DATA_DIR / "hiawatha.txt").read_bytes())
    assert corpus.decode(corpus.data[:50]) == expected[:50]
    assert corpus.decode(corpus.data) == expected
    assert corpus.data.dtype == np.int32 and len(corpus.data) == len(expected)
    assert corpus.vocab == sorted(set(expected)) and corpus.vocab_size == len(corpus.vocab)
    assert "\r" not in corpus.vocab and "\ufeff" not in corpus.vocab
    assert all(corpus.vocab[index] == char for char, index in corpus.char_to_index.items())


def test_text_from_a_path_strips_bom_and_crlf(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbfba\r\nab\n")
    corpus = datasets.text(path)
    assert corpus.vocab == ["\n", "a", "b"]
    assert corpus.data.tolist() == [2, 1, 0, 1, 2, 0]
    assert corpus.decode(np.array([2.0, 1.0], dtype=np.float32)) == "ba"


def test_text_errors(tmp_path):
    corpus = datasets.text()
    with pytest.raises(ValueError, match="is not a character index 0..62"):
        corpus.decode([63])
    with pytest.raises(ValueError, match="-1 is not a character index"):
        corpus.decode([-1])
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataFormatError, match="latin1.txt: not UTF-8"):
        datasets.text(tmp_path / "latin1.txt")
    (tmp_path / "empty.txt").write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(DataFormatError, match="empty.txt: no characters"):
        datasets.text(tmp_path / "empty.txt")


def test_gzip_module_agrees_with_write_idx(tmp_path):
    """The subset's files are plain gzip: any IDX reader (Zalando's, torchvision's) reads them."""
    path = DATA_DIR / "fashion-mnist-subset" / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    assert raw[:8] == bytes.fromhex("00000801 000003e8")  # ubyte, 1 dim, 1000 labels
    assert len(raw) == 8 + 1000
