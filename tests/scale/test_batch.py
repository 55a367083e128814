"""Many short inputs: padded batches, one run per sequence, padding stripped, exact vs single runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sharingan_store as ss
from sharingan_store import schema
from sharingan_store.errors import RunExistsError
from sharingan_store.store.batch import BatchRouter, extract_batch
from sharingan_store.testing import tiny_model

from ._scale_helpers import eager_attentions

TEXTS = [
    "A short one.",
    "A considerably longer sentence, so that the first one needs a lot of padding. And a second sentence!",
    "Medium length text here, nothing special.",
    "Tiny",
    "Another one of middling size. Two sentences.",
]


def _attention(store, run):
    return store.open(run).attention.values.astype(np.float32)


@pytest.fixture(scope="module")
def word_llama():
    """A tiny causal Llama with the MiniLM vocabulary, so real text can be tokenised."""
    return tiny_model("llama", vocab_size=30522, seed=3)


@pytest.mark.parametrize("side", ["left", "right"])
def test_causal_batch_equals_single_runs_and_eager(tmp_path, word_llama, minilm, side):
    _, tok = minilm
    store = ss.open_store(tmp_path / "s")
    ids = extract_batch(store, word_llama, TEXTS, tokenizer=tok, runs=[f"b{i}" for i in range(len(TEXTS))],
                        batch_size=3, dtype="float32", padding_side=side, progress=False,
                        metadata={"corpus": "unit"})
    assert ids == [f"b{i}" for i in range(len(TEXTS))]
    assert {store.open(r).attrs[schema.STATUS] for r in ids} == {schema.STATUS_COMPLETE}
    for i, text in enumerate(TEXTS):
        single = store.extract(word_llama, text, tokenizer=tok, run=f"s{i}", dtype="float32", progress=False)
        batch = store.open(f"b{i}")
        n = single.seq_len
        assert batch.seq_len == n  # padding stripped
        got = batch.attention.values
        np.testing.assert_allclose(got, single.attention.values, rtol=0, atol=1e-5)
        ref = eager_attentions(word_llama, torch.as_tensor(single.token_ids, dtype=torch.long))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
        assert batch.tokens == single.tokens
        for coord in (schema.CHAR_START, schema.CHAR_END, schema.SENTENCE_ID):
            np.testing.assert_array_equal(batch.attention[coord].values, single.attention[coord].values)
        assert batch.attrs["text_sha256"] == single.attrs["text_sha256"]
        assert batch.attrs["metadata"]["corpus"] == "unit"
        assert batch.attrs["metadata"]["batch"]["padding_side"] == side


def test_bidirectional_batch_right_padding(tmp_path, minilm):
    model, tok = minilm
    store = ss.open_store(tmp_path / "s")
    texts = TEXTS[:3]
    extract_batch(store, model, texts, tokenizer=tok, runs=["x0", "x1", "x2"], batch_size=3, dtype="float32",
                  layers=[0, 5], heads=[1, 7], progress=False)
    for i, text in enumerate(texts):
        single = store.extract(model, text, tokenizer=tok, run=f"y{i}", dtype="float32", layers=[0, 5],
                               heads=[1, 7], progress=False)
        got = store.open(f"x{i}")
        assert got.layers == [0, 5] and got.heads == [1, 7]
        np.testing.assert_allclose(got.attention.values, single.attention.values, rtol=0, atol=1e-5)
        upper = np.triu(np.ones((single.seq_len,) * 2, bool), 1)
        assert (got.attention.values[..., upper] > 0).any()  # bidirectional: keys after the query are seen
    with pytest.raises(ValueError, match="right padding"):
        extract_batch(store, model, texts, tokenizer=tok, padding_side="left", progress=False)


@pytest.mark.parametrize("side", ["left", "right"])
def test_reblocking_long_sequences_small_blocks(tmp_path, llama, side):
    """Lengths beyond the chunk, a tiny block budget and left padding: rows are re-blocked per run."""
    gen = torch.Generator().manual_seed(5)
    seqs = [torch.randint(1, 128, (n,), generator=gen) for n in (45, 23, 50)]
    store = ss.open_store(tmp_path / "s")
    budget = 16 * 64 * 3 * 4  # 16 rows of a 64-wide batch of 3 (3 query blocks of the padded batch)
    extract_batch(store, llama, input_ids=seqs, runs=["r0", "r1", "r2"], batch_size=3, dtype="float32",
                  chunk=16, max_block_bytes=budget, padding_side=side, pyramid=True, progress=False)
    for i, seq in enumerate(seqs):
        single = store.extract(llama, input_ids=seq, run=f"s{i}", dtype="float32", chunk=16,
                               max_block_bytes=budget // 3, pyramid=True, progress=False)
        np.testing.assert_allclose(_attention(store, f"r{i}"), single.attention.values, rtol=0, atol=1e-5)
        # the pyramid was written from the re-blocked rows too
        np.testing.assert_allclose(store.open(f"r{i}").global_view(size=4).values,
                                   single.global_view(size=4).values, rtol=0, atol=1e-6)


def test_unpadded_batch_narrow_causal_blocks_reblocked(tmp_path, llama):
    """Equal lengths: no mask, so plain causal blocks arrive narrow (keys after the block not emitted)."""
    gen = torch.Generator().manual_seed(9)
    seqs = [torch.randint(1, 128, (48,), generator=gen) for _ in range(2)]
    store = ss.open_store(tmp_path / "s")
    extract_batch(store, llama, input_ids=seqs, runs=["u0", "u1"], batch_size=2, dtype="float32", chunk=16,
                  max_block_bytes=16 * 48 * 2 * 4, progress=False)  # batch blocks of 16 rows
    for i, seq in enumerate(seqs):
        single = store.extract(llama, input_ids=seq, run=f"v{i}", dtype="float32", chunk=16,
                               max_block_bytes=32 * 48 * 4, progress=False)  # single blocks of 32 rows
        np.testing.assert_allclose(_attention(store, f"u{i}"), single.attention.values, rtol=0, atol=1e-5)


def test_router_buffers_misaligned_rows():
    """Unit: padded rows [q0, q1) map to a run's own blocks, whichever way they are cut."""

    class Rec:
        class layout:  # noqa: N801 - duck-typed RunLayout
            block_rows = 4

        def __init__(self):
            self.got = []

        def submit(self, lpos, hpos, q0, q1, block):
            self.got.append((q0, q1, block.clone()))

    n, width, off = 10, 13, 3  # left padding of 3
    full = torch.arange(width * width, dtype=torch.float32).reshape(1, 1, width, width)
    rec = Rec()
    router = BatchRouter([rec], [off], [n])
    for q0 in range(0, width, 5):
        router(0, slice(0, 1), q0, min(q0 + 5, width), full[..., q0:q0 + 5, :])
    router.check_done()
    assert [(a, b) for a, b, _ in rec.got] == [(0, 4), (4, 8), (8, 10)]
    for a, b, block in rec.got:
        torch.testing.assert_close(block, full[0, :, off + a:off + b, off:])
    # narrow pieces (plain causal, no padding): the keys not emitted are zeros in the buffer
    rec = Rec()
    router = BatchRouter([rec], [0], [n])
    for q0 in range(0, n, 3):
        q1 = min(q0 + 3, n)
        router(0, slice(0, 1), q0, q1, full[..., q0:q1, :q1])
    router.check_done()
    assert [(a, b) for a, b, _ in rec.got] == [(0, 4), (4, 8), (8, 10)]
    for a, b, block in rec.got:
        want = torch.zeros(1, b - a, n)
        for r in range(a, b):
            width = min((r // 3 + 1) * 3, n)  # the keys emitted with row r's piece
            want[0, r - a, :width] = full[0, 0, r, :width]
        torch.testing.assert_close(block, want)


def test_batch_refuses_existing_runs_before_work(tmp_path, llama):
    store = ss.open_store(tmp_path / "s")
    store.extract(llama, input_ids=torch.arange(1, 9), run="taken", progress=False)
    with pytest.raises(RunExistsError, match="taken"):
        extract_batch(store, llama, input_ids=[torch.arange(1, 5), torch.arange(1, 7)], runs=["new", "taken"],
                      progress=False)
    assert store.run_ids() == ["taken"]  # nothing written
    with pytest.raises(ValueError, match="unique"):
        extract_batch(store, llama, input_ids=[torch.arange(1, 5)] * 2, runs=["a", "a"], progress=False)
    with pytest.raises(ValueError, match="run ids for"):
        extract_batch(store, llama, input_ids=[torch.arange(1, 5)] * 2, runs=["a"], progress=False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        extract_batch(store, llama, input_ids=[torch.arange(1, 5)], device="cuda", progress=False)


def test_automatic_ids_and_input_order(tmp_path, llama):
    store = ss.open_store(tmp_path / "s")
    seqs = [torch.arange(1, 30), torch.arange(1, 5), torch.arange(1, 12)]
    ids = extract_batch(store, llama, input_ids=seqs, batch_size=2, progress=False)
    assert len(set(ids)) == 3
    assert [store.open(r).seq_len for r in ids] == [29, 4, 11]  # input order, though batches were sorted
