"""Blockwise extraction equals eager ``output_attentions=True`` for every supported family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sharingan_store.extract import extract_dense, run_extraction, use_sharingan_attention

from .helpers import SUPPORTED_FAMILIES, eager_attentions, random_ids

ATOL = 1e-5
N = 45  # not a multiple of the chunk
CHUNK = 16
# one chunk of rows of one head: forces head_block == 1 and several query blocks (16, 16, 13)
SMALL_BUDGET = CHUNK * N * 4

BIDIRECTIONAL = {"bert"}
SLIDING = {"mistral", "gemma2", "gpt-oss"}


def _sliding_layers(model) -> list[int]:
    cfg = model.config
    if getattr(cfg, "sliding_window", None) is None:
        return []
    types = getattr(cfg, "layer_types", None)
    if types is None:
        return list(range(cfg.num_hidden_layers))
    return [i for i, t in enumerate(types) if t == "sliding_attention"]


@pytest.fixture(scope="module", params=SUPPORTED_FAMILIES)
def family_case(request, tiny_models):
    family = request.param
    model = tiny_models(family)
    ids = random_ids(N)
    ref = eager_attentions(model, ids)
    got = extract_dense(model, ids, chunk=CHUNK, max_block_bytes=SMALL_BUDGET)
    return family, model, ids, ref, got


def test_matches_eager(family_case):
    family, model, _, ref, got = family_case
    assert got.shape == ref.shape == (model.config.num_hidden_layers, 4, N, N)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=ATOL, err_msg=family)


def test_rows_sum_to_one(family_case):
    family, _, _, ref, got = family_case
    assert np.isfinite(got).all() and (got >= 0).all()
    if family == "gpt-oss":
        # attention sinks take part in the softmax and are dropped afterwards (as in eager):
        # rows sum to at most 1, exactly like the reference
        assert (got.sum(-1) <= 1 + ATOL).all()
        np.testing.assert_allclose(got.sum(-1), ref.sum(-1), rtol=0, atol=ATOL)
    else:
        np.testing.assert_allclose(got.sum(-1), 1.0, rtol=0, atol=ATOL)


def test_causal_structure(family_case):
    family, _, _, _, got = family_case
    upper = np.triu(np.ones((N, N), dtype=bool), k=1)
    if family in BIDIRECTIONAL:
        assert (got[..., upper] > 0).any(), "bidirectional attention must see future keys"
        assert (got[..., upper] > 1e-6).mean() > 0.5
    else:
        assert (got[..., upper] == 0).all(), "causal upper triangle must be exactly 0"


def test_sliding_window_zeros_outside(family_case):
    family, model, _, _, got = family_case
    sliding = _sliding_layers(model)
    if family not in SLIDING:
        assert not sliding  # nothing to check: full (or bidirectional) attention everywhere
        return
    window = model.config.sliding_window
    assert window < N and sliding
    q = np.arange(N)[:, None]
    k = np.arange(N)[None, :]
    outside = (k <= q - window) | (k > q)
    inside_past = (k > q - window) & (k <= q)
    for layer in sliding:
        assert (got[layer][:, outside] == 0).all(), f"{family} layer {layer}: weight outside the window"
        assert (got[layer][:, inside_past] > 0).all()
    full = [i for i in range(got.shape[0]) if i not in sliding]
    for layer in full:  # full-attention layers do see beyond the window
        assert (got[layer][:, (k <= q - window)] > 0).any()


def test_block_budget_irrelevant_to_values(tiny_models):
    """The same attention whatever the block plan (one big block vs. many tiny ones)."""
    model = tiny_models("gemma2")
    ids = random_ids(N, seed=3)
    small = extract_dense(model, ids, chunk=8, max_block_bytes=1)
    big = extract_dense(model, ids, chunk=512)
    np.testing.assert_allclose(small, big, rtol=0, atol=ATOL)


@pytest.mark.parametrize("family", ["gemma2", "gpt-oss", "falcon-alibi", "bert", "llama"])
def test_forward_output_equals_eager(tiny_models, family):
    """Outside an extraction the registered implementation still computes exact attention."""
    model = tiny_models(family)
    ids = random_ids(N, seed=5)[None]
    original = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            ref = model.base_model(input_ids=ids).last_hidden_state
    finally:
        model.set_attn_implementation(original)
    with use_sharingan_attention(model), torch.no_grad():
        got = model.base_model(input_ids=ids).last_hidden_state
    assert model.config._attn_implementation == original
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)


def test_gpt_oss_sinks_matter(tiny_models):
    """Sinks absorb probability mass (rows sum below 1), and the extraction keeps that, as eager does."""
    model = tiny_models("gpt-oss")
    sinks = model.model.layers[0].self_attn.sinks
    assert sinks.abs().max() > 0.1  # the tiny model has random sinks
    ids = random_ids(N)
    got = extract_dense(model, ids, chunk=CHUNK, max_block_bytes=SMALL_BUDGET)
    # the sink absorbs probability mass: rows sum to < 1
    assert (got.sum(-1) < 1 - 1e-4).any()


def test_left_padded_llama_batch(tiny_models):
    model = tiny_models("llama")
    ids = random_ids(24, batch=2, seed=1)
    mask = torch.ones(2, 24, dtype=torch.long)
    mask[0, :7] = 0  # left padding of the first sequence
    ref = eager_attentions(model, ids, mask)
    got = extract_dense(model, ids, attention_mask=mask, chunk=8, max_block_bytes=8 * 24 * 4 * 2)
    assert got.shape == ref.shape == (2, 2, 4, 24, 24)
    np.testing.assert_allclose(got[0, :, :, 7:], ref[0, :, :, 7:], rtol=0, atol=ATOL)
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=ATOL)
    # real query rows never attend to padding keys, and rows sum to 1
    assert (got[0, :, :, 7:, :7] == 0).all()
    np.testing.assert_allclose(got[0, :, :, 7:].sum(-1), 1.0, atol=ATOL)
    # the unpadded sequence alone gives the same attention as its batch row
    alone = extract_dense(model, ids[0, 7:], chunk=8)
    np.testing.assert_allclose(got[0, :, :, 7:, 7:], alone, rtol=0, atol=1e-4)


def test_falcon_alibi_padded_batch(tiny_models):
    """Falcon ALiBi reaches the implementation as a float bias; padding must still be honoured."""
    model = tiny_models("falcon-alibi")
    ids = random_ids(20, batch=2, seed=2)
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, :4] = 0
    ref = eager_attentions(model, ids, mask)
    got = extract_dense(model, ids, attention_mask=mask, chunk=8, max_block_bytes=1)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(got[1, :, :, 4:], ref[1, :, :, 4:], rtol=0, atol=ATOL)
    assert (got[1, :, :, 4:, :4] == 0).all()


def test_minilm_one_sentence(minilm):
    model, tok = minilm
    enc = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt")
    ids = enc["input_ids"][0]
    ref = eager_attentions(model, ids)
    got = extract_dense(model, ids, chunk=4, max_block_bytes=1)
    assert got.shape == (6, 12, ids.shape[0], ids.shape[0])
    np.testing.assert_allclose(got, ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=ATOL)
    upper = np.triu(np.ones(got.shape[-2:], dtype=bool), k=1)
    assert (got[..., upper] > 0).any()  # BERT is bidirectional


def test_minilm_padded_batch(minilm):
    model, tok = minilm
    texts = ["A short one.", "A considerably longer sentence, so that the first one needs padding."]
    enc = tok(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    n_short = int(mask[0].sum())
    assert n_short < ids.shape[1]
    ref = eager_attentions(model, ids, mask)
    got = extract_dense(model, ids, attention_mask=mask, chunk=8, max_block_bytes=1)
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=ATOL)
    np.testing.assert_allclose(got[0, :, :, :n_short], ref[0, :, :, :n_short], rtol=0, atol=ATOL)
    assert (got[0, :, :, :n_short, n_short:] == 0).all()  # no attention to padding keys
    alone = extract_dense(model, ids[0, :n_short])
    np.testing.assert_allclose(got[0, :, :, :n_short, :n_short], alone, rtol=0, atol=1e-4)


def test_consumer_blocks_respect_plan(tiny_models):
    model = tiny_models("llama")
    n, chunk, budget = 45, 8, 2 * 8 * 45 * 4  # two chunks of rows of one head
    ids = random_ids(n, batch=2, seed=4)
    shapes = []

    def consumer(lpos, hpos, q0, q1, probs):
        shapes.append((lpos, hpos, q0, q1, tuple(probs.shape)))
        assert probs.dtype == torch.float32
        assert probs.shape[:3] == (2, hpos.stop - hpos.start, q1 - q0)
        # plain causal attention: only the keys visible to the block are computed and emitted
        assert probs.shape[-1] == q1

    session = run_extraction(model, ids, consumer, chunk=chunk, max_block_bytes=budget, progress=False)
    plan = session._plan
    assert plan is not None and plan.q_block % chunk == 0
    one_chunk_rows = 2 * chunk * n * 4
    for _, _, q0, q1, shape in shapes:
        assert shape[-2] <= plan.q_block
        assert q0 % chunk == 0
        assert np.prod(shape) * 4 <= max(budget, one_chunk_rows)
    # every (layer, head, row) is emitted exactly once
    seen = np.zeros((2, 4, n), dtype=int)
    for lpos, hpos, q0, q1, _ in shapes:
        seen[lpos, hpos, q0:q1] += 1
    assert (seen == 1).all()


def test_consumer_blocks_minimum_one_chunk(tiny_models):
    """A budget below one chunk of rows still gives blocks of one chunk of rows of one head."""
    model = tiny_models("qwen2")
    n, chunk = 40, 16
    sizes = []
    run_extraction(model, random_ids(n), lambda l, h, q0, q1, p: sizes.append((q1, tuple(p.shape))),
                   chunk=chunk, max_block_bytes=1, progress=False)
    # causal: each block holds exactly the keys visible to it (keys 0..q1-1)
    assert sizes and all(s[0] == 1 and s[-2] <= chunk and s[-1] == q1 for q1, s in sizes)


# --------------------------------------------------------------------------- the kernel itself


class _Recorder:
    """A minimal BlockSink that assembles the emitted probabilities of one layer."""

    def __init__(self, chunk: int, budget: int):
        self.chunk, self.budget = chunk, budget
        self.probs = None

    def begin_layer(self, module, num_heads, q_len, k_len):
        from sharingan_store.extract import plan_blocks

        self.probs = torch.full((self.batch, num_heads, q_len, k_len), float("nan"))
        return 0, plan_blocks(num_heads, k_len, chunk=min(self.chunk, k_len), max_block_bytes=self.budget,
                              batch=self.batch)

    def wants(self, layer):
        return True

    def emit(self, layer, h0, h1, q0, q1, probs):
        assert torch.isnan(self.probs[:, h0:h1, q0:q1]).all(), "block emitted twice"
        width = probs.shape[-1]
        self.probs[:, h0:h1, q0:q1] = 0.0  # a narrow (causal) block: later keys are exact zeros
        self.probs[:, h0:h1, q0:q1, :width] = probs

    def end_layer(self, layer):
        pass


def _naive(query, key, value, *, scaling, mask=None, bias=None, softcap=None, sinks=None, causal=False, window=None):
    q, k, v = query.double(), key.double(), value.double()
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, 1)
    v = v.repeat_interleave(groups, 1)
    s = q @ k.transpose(-1, -2) * scaling
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    if bias is not None:
        s = s + bias.double()
    q_len, k_len = s.shape[-2:]
    qp = torch.arange(q_len)[:, None] + (k_len - q_len)
    kp = torch.arange(k_len)[None, :]
    hidden = torch.zeros(q_len, k_len, dtype=torch.bool)
    if causal:
        hidden |= kp > qp
    if window is not None:
        hidden |= kp <= qp - window
    if mask is not None:
        hidden = hidden | (~mask if mask.dtype == torch.bool else mask < -1e30)
    s = s.masked_fill(hidden, float("-inf"))
    if sinks is not None:
        sk = sinks.double().reshape(1, -1, 1, 1).expand(s.shape[0], -1, q_len, 1)
        p = torch.softmax(torch.cat([s, sk], -1), -1)[..., :-1]
    else:
        p = torch.softmax(s, -1)
    return p, (p @ v).transpose(1, 2)


KERNEL_CASES = {
    "causal-none-mask": dict(causal=True),
    "causal-sliding-none-mask": dict(causal=True, window=5),
    "bidirectional": dict(causal=False),
    "softcap-sinks": dict(causal=True, softcap=2.0, sinks=True),
    "bool-mask": dict(causal=False, mask="bool"),
    "float-mask-bias": dict(causal=False, mask="float", bias=True),
    "shorter-query": dict(causal=True, q_len=7),
}


@pytest.mark.parametrize("case", sorted(KERNEL_CASES))
def test_kernel_against_naive(case):
    from sharingan_store.extract.attention import active_sink, sharingan_attention

    cfg = KERNEL_CASES[case]
    gen = torch.Generator().manual_seed(0)
    b, h, hkv, k_len, d = 2, 6, 3, 23, 8
    q_len = cfg.get("q_len", k_len)
    query = torch.randn(b, h, q_len, d, generator=gen)
    key = torch.randn(b, hkv, k_len, d, generator=gen)
    value = torch.randn(b, hkv, k_len, d, generator=gen)
    mask = bias = sinks = None
    if cfg.get("mask") == "bool":
        mask = torch.rand(b, 1, q_len, k_len, generator=gen) > 0.3
        mask[..., 0] = True  # no fully masked row
    elif cfg.get("mask") == "float":
        keep = torch.rand(b, 1, q_len, k_len, generator=gen) > 0.3
        keep[..., 0] = True
        mask = torch.where(keep, 0.0, torch.finfo(torch.float32).min)
    if cfg.get("bias"):
        bias = torch.randn(b, h, q_len, k_len, generator=gen)
    if cfg.get("sinks"):
        sinks = torch.randn(h, generator=gen)
    module = torch.nn.Module()
    module.is_causal = cfg["causal"]
    kwargs = {}
    if cfg.get("softcap") is not None:
        kwargs["softcap"] = cfg["softcap"]
    if cfg.get("window") is not None:
        kwargs["sliding_window"] = cfg["window"]
    if sinks is not None:
        kwargs["s_aux"] = sinks
    if bias is not None:
        kwargs["position_bias"] = bias
    rec = _Recorder(chunk=4, budget=1)
    rec.batch = b
    with active_sink(rec):
        out, weights = sharingan_attention(module, query, key, value, mask, scaling=0.3, **kwargs)
    assert weights is None
    ref_p, ref_out = _naive(query, key, value, scaling=0.3, mask=mask, bias=bias, softcap=cfg.get("softcap"),
                            sinks=sinks, causal=cfg["causal"], window=cfg.get("window"))
    assert not torch.isnan(rec.probs).any()
    torch.testing.assert_close(rec.probs.double(), ref_p, rtol=0, atol=1e-6)
    assert out.shape == (b, q_len, h, d)
    torch.testing.assert_close(out.double(), ref_out, rtol=0, atol=1e-5)
    # outside an extraction the same output, nothing emitted
    out2, _ = sharingan_attention(module, query, key, value, mask, scaling=0.3, **kwargs)
    torch.testing.assert_close(out2, out, rtol=0, atol=1e-6)


def test_kernel_fully_masked_rows_are_finite():
    """Padding rows that see no key must not become NaN (finfo.min fill, not -inf)."""
    from sharingan_store.extract.attention import sharingan_attention

    query = torch.randn(1, 2, 5, 4)
    key = torch.randn(1, 2, 5, 4)
    value = torch.randn(1, 2, 5, 4)
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    mask[..., 2, :] = False
    module = torch.nn.Module()
    module.is_causal = False
    out, _ = sharingan_attention(module, query, key, value, mask)
    assert torch.isfinite(out).all()
    fmask = torch.where(mask, 0.0, torch.finfo(torch.float32).min)
    out, _ = sharingan_attention(module, query, key, value, fmask)
    assert torch.isfinite(out).all()
