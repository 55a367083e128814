"""Store.compare and metrics.compare: identical vs different runs, alignment, laziness."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest

import sharingan_store as ss
from sharingan_store.metrics.compare import compare, cosine_similarity, js_divergence
from sharingan_store.testing import synthetic_attention
from tests.store.helpers import make_store


def test_identical_runs(base_store):
    store = ss.open_store(base_store, mode="r")
    js = store.compare("a", "a")
    assert js.dims == ("layer", "head") and isinstance(js.data, dsa.Array)  # lazy
    assert float(abs(js).max()) == 0.0
    cos = store.compare("a", "a", metric="cosine")
    np.testing.assert_allclose(cos.values, 1.0, atol=1e-6)


def test_different_runs(base_store):
    store = ss.open_store(base_store, mode="r")
    js = store.compare("a", "b").compute()
    assert (js > 0).all() and (js < np.log(2)).all()
    assert js.attrs["metric"] == "js" and js.attrs["tokens_compared"] == 64
    cos = store.compare("a", "b", metric="cosine").compute()
    assert ((cos > 0) & (cos < 1)).all()
    np.testing.assert_allclose(js.values, store.compare("b", "a").values, rtol=1e-5, atol=1e-7)  # symmetric


def test_js_matches_a_direct_computation():
    a = synthetic_attention(num_layers=1, num_heads=2, seq_len=12, seed=0)
    b = synthetic_attention(num_layers=1, num_heads=2, seq_len=12, seed=1)
    p, q = a.values.astype(np.float64), b.values.astype(np.float64)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda x, y: np.where(x > 0, x * np.log(x / y), 0).sum(-1)  # noqa: E731
    want = (0.5 * kl(p, m) + 0.5 * kl(q, m)).mean(-1)
    np.testing.assert_allclose(js_divergence(a, b).values, want, rtol=1e-4, atol=1e-6)
    want_cos = ((p * q).sum(-1) / np.sqrt((p * p).sum(-1) * (q * q).sum(-1))).mean(-1)
    np.testing.assert_allclose(cosine_similarity(a, b).values, want_cos, rtol=1e-5)
    chunked = compare(a.chunk({"query": 4, "key": 4}), b.chunk({"query": 4, "key": 4}))
    assert isinstance(chunked.data, dsa.Array)
    np.testing.assert_allclose(chunked.values, want, rtol=1e-4, atol=1e-6)


def test_alignment_and_errors(tmp_path):
    store = make_store(tmp_path / "s", runs={"a": {}, "short": {"n": 40}, "shifted": {"offset": 3},
                                             "l1": {"layers": [1]}})
    with pytest.raises(ValueError, match="64 and 40 tokens: pass align='truncate'"):
        store.compare("a", "short")
    out = store.compare("a", "short", align="truncate").compute()
    assert out.attrs["tokens_compared"] == 40
    assert float(out.max()) < 1e-3  # same model, causal: the common prefix attends identically
    with pytest.raises(ValueError, match="token ids differ \\(first at position 0: 0 vs 3\\)"):
        store.compare("a", "shifted")
    partial = store.compare("a", "l1")
    assert partial["layer"].values.tolist() == [1]
    assert float(abs(partial).max()) == 0.0
    with pytest.raises(ValueError, match="metric must be one of"):
        store.compare("a", "a", metric="kl")
    with pytest.raises(ValueError, match="align must be one of"):
        store.compare("a", "a", align="pad")
    with pytest.raises(ss.RunNotFoundError, match="available runs: a, l1, shifted, short"):
        store.compare("a", "nope")
    other = store.open("l1").sel(layer=1)
    a0 = store.open("a").sel(layer=0)
    with pytest.raises(ValueError, match="share no \\(layer, head\\)"):
        store.compare(a0, other)
