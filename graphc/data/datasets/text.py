"""A character-level text corpus as a stream of vocabulary indices, for character language
models. The default corpus is Longfellow's *The Song of Hiawatha* (1855, public domain), the
corpus of Knet's CharLM benchmark, shipped as ``data/hiawatha.txt``.

>>> corpus = text()
>>> corpus.decode(corpus.data[:6])
'Should'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphc.data.datasets.errors import DataFormatError

HIAWATHA_TXT = Path(__file__).resolve().parent / "bundled" / "hiawatha.txt"

_BYTE_ORDER_MARK = "\ufeff"


@dataclass(frozen=True)
class TextData:
    """A text as indices into its sorted character vocabulary.

    Attributes
    ----------
    vocab : list of str
        The distinct characters of the text, sorted; ``vocab[i]`` is the character of index i.
    char_to_index : dict of str to int
        The inverse of ``vocab``.
    data : numpy.ndarray
        int32 of shape (number of characters,): the text, one index per character.
    """

    vocab: list[str]
    char_to_index: dict[str, int]
    data: np.ndarray

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters: the ``input_dim`` of an Embedding over them."""
        return len(self.vocab)

    def decode(self, indices: Iterable[int | float]) -> str:
        """The characters of ``indices`` (integers, or whole floats as a model's labels are).

        Examples
        --------
        >>> corpus = TextData.from_string("abba")
        >>> corpus.decode([1, 0, 0])
        'baa'
        """
        characters = []
        for index in np.asarray(indices).ravel().tolist():
            if index != int(index) or not 0 <= int(index) < len(self.vocab):
                raise ValueError(
                    f"decode: {index!r} is not a character index 0..{len(self.vocab) - 1}"
                )
            characters.append(self.vocab[int(index)])
        return "".join(characters)

    @classmethod
    def from_string(cls, content: str) -> TextData:
        """Index ``content`` as it is (no BOM stripping or line-end normalization).

        Examples
        --------
        >>> TextData.from_string("abba").data
        array([0, 1, 1, 0], dtype=int32)
        """
        vocab = sorted(set(content))
        char_to_index = {character: index for index, character in enumerate(vocab)}
        data = np.fromiter((char_to_index[c] for c in content), dtype=np.int32, count=len(content))
        return cls(vocab=vocab, char_to_index=char_to_index, data=data)


def text(path: str | Path | None = None) -> TextData:
    """Read a UTF-8 text file as a character stream.

    A leading byte-order mark is dropped and CRLF line ends become LF: both are artefacts of
    how the file was saved (the shipped Hiawatha has both), not part of the text, and kept
    they would add two characters to the vocabulary and make a model spend capacity
    predicting a '\\r' before every '\\n'.

    Parameters
    ----------
    path : str or Path, optional
        A UTF-8 text file; default the shipped *Song of Hiawatha*.

    Returns
    -------
    TextData
        The sorted vocabulary, its index and the text as int32 indices.

    Raises
    ------
    DataFormatError
        The file is not valid UTF-8, or holds no characters.

    Examples
    --------
    >>> corpus = text()
    >>> corpus.vocab_size, len(corpus.data)
    (63, 184138)
    """
    path = HIAWATHA_TXT if path is None else Path(path)
    try:
        content = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not UTF-8 text: {error}") from error
    content = content.removeprefix(_BYTE_ORDER_MARK).replace("\r\n", "\n")
    if not content:
        raise DataFormatError(f"{path}: no characters to index (the file is empty)")
    return TextData.from_string(content)
