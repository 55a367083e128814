"""Tokenisation with provenance: ids, token strings, character offsets, sentence/paragraph ids.

Examples
--------
>>> ids = sentence_and_paragraph_ids("One. Two!\\n\\nThree", [0, 5, 11], [4, 9, 16])
>>> ids[0].tolist(), ids[1].tolist()
([0, 1, 2], [0, 0, 1])
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["TokenizedInput", "prepare_input", "sentence_and_paragraph_ids"]

_SENTENCE_END = re.compile(r"[.!?。！？]+[\"')\]]*(?=\s|$)")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class TokenizedInput:
    """One input sequence and everything stored beside its attention."""

    input_ids: torch.Tensor  # (N,) int64
    tokens: list[str]
    char_start: np.ndarray  # (N,) int32, -1 where unknown (special tokens)
    char_end: np.ndarray
    sentence_id: np.ndarray
    paragraph_id: np.ndarray
    text: str | None
    text_sha256: str

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[0])


def sentence_and_paragraph_ids(
    text: str, char_start: Sequence[int], char_end: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Sentence and paragraph id of each token: the number of boundaries before its start.

    A sentence ends after ``.``, ``!`` or ``?`` followed by white space; a paragraph ends at
    a blank line. Tokens without offsets (``-1``, special tokens) take the id of the
    previous token (0 at the start).
    """
    sent_ends = np.array([m.end() for m in _SENTENCE_END.finditer(text)], dtype=np.int64)
    para_ends = np.array([m.start() for m in _PARAGRAPH_BREAK.finditer(text)], dtype=np.int64)
    starts = np.asarray(char_start, dtype=np.int64)
    ends = np.asarray(char_end, dtype=np.int64)
    # a token belongs to the sentence in which it ends (so the full stop stays with its sentence)
    sent = np.searchsorted(sent_ends, ends, side="left")
    para = np.searchsorted(para_ends, starts, side="right")
    unknown = starts < 0
    for arr in (sent, para):
        if unknown.any():
            arr[unknown] = -1
            arr[:] = np.maximum.accumulate(arr)
            arr[arr < 0] = 0
    return sent.astype(np.int32), para.astype(np.int32)


def _token_strings(tokenizer: Any, ids: list[int]) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in ids]
    return [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]


def prepare_input(
    text: str | None = None,
    *,
    tokenizer: Any = None,
    input_ids: Any = None,
    add_special_tokens: bool = True,
) -> TokenizedInput:
    """Tokenise ``text`` (or take ``input_ids``) and derive the per-token provenance.

    Exactly one of ``text`` and ``input_ids`` is given. ``text`` needs a tokenizer (a fast
    one gives character offsets; a slow one leaves them at -1).

    Raises
    ------
    ValueError
        Neither or both inputs, empty text or ids, a batch where one sequence is expected.
    """
    if (text is None) == (input_ids is None):
        raise ValueError("give exactly one of `text` and `input_ids`")
    if text is not None:
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("`text` is empty: nothing to extract")
        if tokenizer is None:
            raise ValueError("extracting from `text` needs `tokenizer=`; or pass `input_ids=`")
        try:
            enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
            offsets = enc["offset_mapping"]
        except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
            enc = tokenizer(text, add_special_tokens=add_special_tokens)
            offsets = None
        ids = list(enc["input_ids"])
        if offsets is None:
            starts = np.full(len(ids), -1, np.int32)
            ends = np.full(len(ids), -1, np.int32)
        else:
            starts = np.array([s for s, _ in offsets], np.int32)
            ends = np.array([e for _, e in offsets], np.int32)
            special = (starts == 0) & (ends == 0)
            starts[special] = -1
            ends[special] = -1
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    else:
        tensor = torch.as_tensor(input_ids)
        if tensor.ndim == 2 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 1:
            raise ValueError(f"`input_ids` must be one sequence of shape (N,) or (1, N), got {tuple(tensor.shape)}")
        if tensor.numel() == 0:
            raise ValueError("`input_ids` is empty: nothing to extract")
        if tensor.dtype.is_floating_point:
            raise TypeError(f"`input_ids` must hold integers, got {tensor.dtype}")
        ids = tensor.tolist()
        text = tokenizer.decode(ids) if tokenizer is not None else None
        starts = np.full(len(ids), -1, np.int32)
        ends = np.full(len(ids), -1, np.int32)
        sha = hashlib.sha256(np.asarray(ids, np.int64).tobytes()).hexdigest()
    if len(ids) == 0:
        raise ValueError("the tokenizer produced no tokens: nothing to extract")
    if text is not None and (starts >= 0).any():
        sent, para = sentence_and_paragraph_ids(text, starts, ends)
    else:
        sent = np.zeros(len(ids), np.int32)
        para = np.zeros(len(ids), np.int32)
    return TokenizedInput(
        input_ids=torch.tensor(ids, dtype=torch.long),
        tokens=_token_strings(tokenizer, ids),
        char_start=starts,
        char_end=ends,
        sentence_id=sent,
        paragraph_id=para,
        text=text,
        text_sha256=sha,
    )
