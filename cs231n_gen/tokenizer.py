"""A word-level tokenizer for the course's captions: text in, integer ids and a padding mask out.

Real text encoders (T5, CLIP) split text into tens of thousands of sub-word pieces; the
course's captions use a few dozen words, so each word is one token. Lower case;
commas, full stops and colons are separators, not tokens. Id 0 is the padding token:
a batch of captions becomes a (B, L) id tensor, L the longest caption, and a (B, L)
bool mask that is True on real tokens. A word outside the vocabulary raises a
``ValueError`` that names it and lists the words the tokenizer knows.
"""
from __future__ import annotations

import re

import torch

from ._validate import check_int, check_text
from .data.captioned_shapes import COLORS, POSITIONS, SHAPES, SIZES
from .data.clips import DIRECTIONS

PAD = "<pad>"
_SEPARATORS = re.compile(r"[,.:;]")
# Every word the course's captions use (captioned shapes in all phrasings, and the clips).
SHAPES_VOCABULARY = tuple(dict.fromkeys(
    ["a", "at", "the", "in", "moving", *SIZES, *COLORS, *SHAPES, *(w for p in POSITIONS for w in p.split()),
     *DIRECTIONS]))


def words(text: str) -> list:
    """The words of ``text``: lower case, split at white space and at , . : ;"""
    text = check_text("text", text)
    return _SEPARATORS.sub(" ", text.lower()).split()


class Tokenizer:
    """Word-level tokenizer over a fixed vocabulary (id 0 = padding, ids 1.. the words in order).

    >>> tok = Tokenizer()                       # the course's caption vocabulary
    >>> ids, mask = tok.encode(["a red circle", "blue square, small"])
    >>> tok.decode(ids, mask)
    ['a red circle', 'blue square small']
    """

    def __init__(self, vocabulary=SHAPES_VOCABULARY):
        if isinstance(vocabulary, str) or not hasattr(vocabulary, "__iter__"):
            raise ValueError(f"vocabulary must be a sequence of words, got {vocabulary!r:.80}")
        vocabulary = list(vocabulary)
        if not vocabulary:
            raise ValueError("vocabulary must hold at least one word, got an empty sequence")
        for w in vocabulary:
            if not isinstance(w, str) or words(w) != [w]:
                raise ValueError(f"vocabulary must hold single lower-case words without separators, got {w!r}")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("vocabulary must not repeat a word")
        self.vocabulary = (PAD, *vocabulary)
        self._ids = {w: i for i, w in enumerate(self.vocabulary)}

    def __len__(self) -> int:
        """Vocabulary size, the padding token included (the embedding table's rows)."""
        return len(self.vocabulary)

    def unknown(self, text: str) -> list:
        """The words of ``text`` the vocabulary lacks (empty when every word is known)."""
        return [w for w in words(text) if w not in self._ids]

    def tokenize(self, text: str, name: str = "text") -> list:
        """The ids of one text's words; raises ``ValueError`` naming any unknown word."""
        found = words(check_text(name, text))
        if not found:
            raise ValueError(f"{name} must hold at least one word, got {text!r}")
        missing = [w for w in found if w not in self._ids]
        if missing:
            names = ", ".join(repr(w) for w in dict.fromkeys(missing))
            raise ValueError(f"{name} has word(s) the tokenizer does not know: {names} (in {text!r}); "
                             f"known words: {', '.join(self.vocabulary[1:])}")
        return [self._ids[w] for w in found]

    def encode(self, texts, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (ids (B, L) int64, mask (B, L) bool), padded with id 0 to L.

        ``texts``: a string or a list of strings. ``length``: L (default: the longest
        text's number of words); a text with more words raises ``ValueError``.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts:
            raise ValueError(f"texts must be a string or a non-empty list of strings, got {texts!r:.80}")
        rows = [self.tokenize(t, "texts") for t in texts]
        longest = max(len(r) for r in rows)
        length = longest if length is None else check_int("length", length, minimum=1)
        if longest > length:
            raise ValueError(f"length must be at least the longest text's {longest} words, got {length}")
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
        return ids, ids != 0

    def decode(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> list:
        """(B, L) ids (and optionally their mask) -> the texts, words joined by single spaces."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
            raise ValueError(f"ids must be a (B, L) integer tensor, got {ids!r:.80}")
        if bool(((ids < 0) | (ids >= len(self))).any()):
            raise ValueError(f"ids must lie in 0..{len(self) - 1}, got values in {int(ids.min())}..{int(ids.max())}")
        if mask is None:
            mask = ids != 0
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != ids.shape:
            raise ValueError(f"mask must be a bool tensor shaped like ids {tuple(ids.shape)}, got {mask!r:.80}")
        return [" ".join(self.vocabulary[int(i)] for i, keep in zip(row, keep_row) if keep)
                for row, keep_row in zip(ids.cpu(), mask.cpu())]
