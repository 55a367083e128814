"""Tokenisation with provenance: offsets, special tokens, sentence and paragraph ids, validation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sharingan_store.extract import prepare_input
from sharingan_store.extract.tokens import sentence_and_paragraph_ids

TEXT = "The cat sat. Then it purred!\n\nA dog barked loudly?"


@pytest.fixture(scope="module")
def tokenized(minilm):
    _, tok = minilm
    return prepare_input(TEXT, tokenizer=tok)


def test_offsets_match_text(tokenized):
    ti = tokenized
    n = ti.seq_len
    assert len(ti.tokens) == n == len(ti.char_start) == len(ti.char_end) == len(ti.sentence_id) == len(ti.paragraph_id)
    assert ti.input_ids.dtype == torch.long and ti.input_ids.ndim == 1
    assert ti.text == TEXT
    real = ti.char_start >= 0
    assert real.sum() == n - 2
    for tok, s, e in zip(ti.tokens, ti.char_start, ti.char_end):
        if s < 0:
            continue
        assert 0 <= s < e <= len(TEXT)
        assert TEXT[s:e].lower() == tok.removeprefix("##")
    # offsets are increasing and do not overlap
    starts, ends = ti.char_start[real], ti.char_end[real]
    assert (np.diff(starts) > 0).all() and (starts[1:] >= ends[:-1]).all()


def test_special_tokens_have_no_offsets(tokenized):
    ti = tokenized
    assert ti.tokens[0] == "[CLS]" and ti.tokens[-1] == "[SEP]"
    for i in (0, -1):
        assert ti.char_start[i] == -1 and ti.char_end[i] == -1
    assert ti.char_start.dtype == np.int32


def test_sentence_and_paragraph_ids(tokenized):
    ti = tokenized
    by_token = {tok: (int(s), int(p)) for tok, s, p in zip(ti.tokens, ti.sentence_id, ti.paragraph_id)}
    assert by_token["the"] == (0, 0)
    assert by_token["."] == (0, 0)  # the full stop stays with its sentence
    assert by_token["then"] == (1, 0)
    assert by_token["!"] == (1, 0)
    assert by_token["a"] == (2, 1)
    assert by_token["?"] == (2, 1)
    for arr in (ti.sentence_id, ti.paragraph_id):
        assert arr[0] == 0 and (np.diff(arr) >= 0).all()
    assert ti.sentence_id.max() == 2 and ti.paragraph_id.max() == 1
    # special tokens take the id of the previous token (0 at the start)
    assert (ti.sentence_id[0], ti.paragraph_id[0]) == (0, 0)
    assert (ti.sentence_id[-1], ti.paragraph_id[-1]) == (2, 1)


def test_no_special_tokens(minilm):
    ti = prepare_input(TEXT, tokenizer=minilm[1], add_special_tokens=False)
    assert (ti.char_start >= 0).all()
    assert ti.tokens[0] == "the"


def test_text_sha_stable(minilm):
    a = prepare_input(TEXT, tokenizer=minilm[1])
    b = prepare_input(TEXT, tokenizer=minilm[1])
    c = prepare_input(TEXT + " ", tokenizer=minilm[1])
    assert a.text_sha256 == b.text_sha256 != c.text_sha256
    assert len(a.text_sha256) == 64


def test_from_input_ids(minilm):
    ids = prepare_input(TEXT, tokenizer=minilm[1]).input_ids
    ti = prepare_input(input_ids=ids, tokenizer=minilm[1])
    assert torch.equal(ti.input_ids, ids)
    assert (ti.char_start == -1).all() and (ti.sentence_id == 0).all()
    assert ti.tokens[0] == "[CLS]"
    plain = prepare_input(input_ids=[[5, 6, 7]])  # (1, N) is one sequence
    assert plain.tokens == ["5", "6", "7"] and plain.text is None
    assert plain.input_ids.tolist() == [5, 6, 7]


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_empty_text(minilm, text):
    with pytest.raises(ValueError, match="empty"):
        prepare_input(text, tokenizer=minilm[1])


@pytest.mark.parametrize("ids", [[], torch.zeros(0, dtype=torch.long), [[]]])
def test_empty_ids(ids):
    with pytest.raises(ValueError):
        prepare_input(input_ids=ids)


def test_batch_of_two_rejected():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        prepare_input(input_ids=[[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError):
        prepare_input(input_ids=torch.ones(1, 2, 3, dtype=torch.long))


def test_argument_errors(minilm):
    with pytest.raises(ValueError, match="exactly one"):
        prepare_input()
    with pytest.raises(ValueError, match="exactly one"):
        prepare_input("x", input_ids=[1], tokenizer=minilm[1])
    with pytest.raises(ValueError, match="tokenizer"):
        prepare_input("some text")
    with pytest.raises(TypeError):
        prepare_input(input_ids=[1.5, 2.5])
    with pytest.raises(TypeError):
        prepare_input(b"bytes", tokenizer=minilm[1])


# --------------------------------------------------------------------------- sentence/paragraph ids


def test_doc_example():
    sent, para = sentence_and_paragraph_ids("One. Two!\n\nThree", [0, 5, 11], [4, 9, 16])
    assert sent.tolist() == [0, 1, 2] and para.tolist() == [0, 0, 1]


def test_no_boundary_inside_abbreviation_like_text():
    # "3.5" has no white space after the dot: not a sentence end
    text = "Pi is 3.14 roughly"
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    sent, para = sentence_and_paragraph_ids(text, *zip(*spans))
    assert sent.tolist() == [0, 0, 0, 0] and para.tolist() == [0, 0, 0, 0]


pieces = st.lists(
    st.one_of(
        st.sampled_from(["word", "x", "Ab", "42"]),
        st.sampled_from([". ", "! ", "? ", "\n\n", " ", ".\n\n", "\n"]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(pieces, st.lists(st.booleans(), max_size=40))
def test_ids_monotone_and_counted(parts, unknown_flags):
    text = " ".join(parts)
    spans = [(m.start(), m.end()) for m in re.finditer(r"[A-Za-z0-9]+|[.!?]", text)]
    if not spans:
        return
    starts = np.array([s for s, _ in spans])
    ends = np.array([e for _, e in spans])
    # sprinkle unknown (special) tokens
    for i, flag in enumerate(unknown_flags[: len(spans)]):
        if flag:
            starts[i] = ends[i] = -1
    sent, para = sentence_and_paragraph_ids(text, starts, ends)
    assert sent.dtype == np.int32 and para.dtype == np.int32
    for arr in (sent, para):
        assert (arr >= 0).all() and (np.diff(arr) >= 0).all()
    n_sent_ends = len(re.findall(r"[.!?]+(?=\s|$)", text))
    n_breaks = len(re.findall(r"\n\s*\n", text))
    assert sent.max() <= n_sent_ends and para.max() <= n_breaks
    known = starts >= 0
    if known.any():
        last = np.flatnonzero(known)[-1]
        # the last known token's paragraph id counts the blank lines before it
        assert para[last] == len([m for m in re.finditer(r"\n\s*\n", text) if m.start() < starts[last]])
        # and its sentence id the sentence ends strictly before its end
        assert sent[last] == len([m for m in re.finditer(r"[.!?]+(?=\s|$)", text) if m.end() < ends[last]])
