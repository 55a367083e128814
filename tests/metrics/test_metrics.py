"""Metrics against dense numpy references, eager and chunked, causal and bidirectional."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import sharingan_store  # noqa: F401  (registers da.attn)
from sharingan_store import metrics
from sharingan_store.testing import synthetic_attention

N = 37  # not a multiple of the 16-token chunks


def arr(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.values, dtype=np.float64)


def ref_entropy(a):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(a > 0, a * np.log(np.where(a > 0, a, 1)), 0).sum(-1)


def n_visible(n, causal):
    return np.arange(1, n + 1) if causal else np.full(n, n)


# ----------------------------------------------------------------- entropy
def test_entropy(build, chunked, causal):
    da = build(N, causal=causal, chunked=chunked)
    h = metrics.entropy(da)
    assert h.dims == ("layer", "head", "query")
    np.testing.assert_allclose(h.values, ref_entropy(arr(da)), rtol=1e-5, atol=1e-6)
    assert (h.values <= np.log(n_visible(N, causal)) + 1e-5).all()


def test_entropy_float16_is_finite(build):
    da = build(300, layers=1, heads=1).astype("float16").chunk({"query": 128, "key": 128})
    h = metrics.entropy(da).values
    assert h.dtype == np.float32 and np.isfinite(h).all()


# ----------------------------------------------------------------- sinks
def test_sink_scores_and_table(build, chunked, causal):
    da = build(N, causal=causal, chunked=chunked)
    a = arr(da)
    seeing = (N - np.arange(N)) if causal else np.full(N, N)
    expected = a.sum(2) / seeing
    np.testing.assert_allclose(metrics.sink_scores(da).values, expected, rtol=1e-5)
    df = metrics.sinks(da, threshold=0.2)
    assert list(df.columns) == ["layer", "head", "position", "token", "score"]
    li, hi, ki = np.nonzero(expected > 0.2)
    assert len(df) == len(li)
    got = set(zip(df.layer, df["head"], df.position))
    assert got == set(zip(li.tolist(), hi.tolist(), ki.tolist()))
    assert all(df.token == [f"t{p}" for p in df.position])


def test_sinks_find_planted_sink():
    da = synthetic_attention(1, 2, 30, seed=3)
    a = np.asarray(da.values).copy()
    a[0, 1] *= 0.2
    a[0, 1, :, 0] += 0.8  # every query of head 1 puts 80% on token 0
    df = metrics.sinks(da.copy(data=a), threshold=0.75)
    row = df[(df["head"] == 1) & (df.position == 0)]
    assert len(row) == 1 and row.score.iloc[0] >= 0.8 - 1e-6 and row.token.iloc[0] == "t0"
    assert isinstance(df, pd.DataFrame)


def test_sinks_default_kind_is_causal(build):
    da = build(N)
    da.attrs = {}
    np.testing.assert_allclose(metrics.sink_scores(da).values, arr(da).sum(2) / (N - np.arange(N)), rtol=1e-5)


# ----------------------------------------------------------------- importance
def ref_given(a, causal):
    nv = n_visible(a.shape[-1], causal).astype(float)
    h = ref_entropy(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nv > 1, 1 - h / np.log(nv), 1.0)


def minmax(x):
    lo, hi = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
    return np.where(hi > lo, (x - lo) / np.where(hi > lo, hi - lo, 1), 0)


def ref_pagerank(a, d=0.85):
    n = a.shape[-1]
    out = np.empty(a.shape[:3])
    for l in range(a.shape[0]):
        for h in range(a.shape[1]):
            g = d * a[l, h] + (1 - d) / n  # rows sum to 1
            w, v = np.linalg.eig(g.T)
            pi = np.real(v[:, np.argmax(np.real(w))])
            out[l, h] = pi / pi.sum()
    return out


def test_importance_received(build, chunked, causal):
    da = build(N, causal=causal, chunked=chunked)
    r = metrics.token_importance(da, "received")
    assert r.dims == ("layer", "head", "key")
    np.testing.assert_allclose(r.values, arr(da).sum(2), rtol=1e-5)


def test_importance_given(build, chunked, causal):
    da = build(N, causal=causal, chunked=chunked)
    g = metrics.token_importance(da, "given")
    assert g.dims == ("layer", "head", "query")
    np.testing.assert_allclose(g.values, ref_given(arr(da), causal), rtol=1e-4, atol=1e-5)
    assert (g.values >= -1e-5).all() and (g.values <= 1 + 1e-5).all()
    if causal:
        assert (g.values[..., 0] == 1).all()


def test_importance_both(build, chunked, causal):
    da = build(N, causal=causal, chunked=chunked)
    a = arr(da)
    b = metrics.token_importance(da, "both")
    assert b.dims == ("layer", "head", "key")
    expected = (minmax(a.sum(2)) + minmax(ref_given(a, causal))) / 2
    np.testing.assert_allclose(b.values, expected, rtol=1e-4, atol=1e-5)


def test_importance_pagerank(build, chunked, causal):
    da = build(N, causal=causal, chunked=chunked)
    pr = metrics.token_importance(da, "pagerank", tol=1e-7, max_iter=300)
    assert pr.dims == ("layer", "head", "key") and pr.attrs["converged"]
    np.testing.assert_allclose(pr.values, ref_pagerank(arr(da)), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(pr.sum("key").values, 1, atol=1e-9)
    assert list(pr.key_token.values[:2]) == ["t0", "t1"]


def test_pagerank_warns_when_not_converged(build):
    with pytest.warns(RuntimeWarning, match="converge"):
        pr = metrics.pagerank(build(N), tol=0, max_iter=2)
    assert pr.attrs["iterations"] == 2 and not pr.attrs["converged"]


def test_importance_bad_method(build):
    with pytest.raises(ValueError, match="pagerank"):
        metrics.token_importance(build(8), "eigen")


# ----------------------------------------------------------------- distance
def test_attention_distance(build, chunked, causal):
    da = build(N, causal=causal, chunked=chunked)
    pos = np.arange(N)
    dist = np.abs(pos[:, None] - pos[None, :])
    expected = (arr(da) * dist).sum(-1).mean(-1)
    d = metrics.attention_distance(da)
    assert d.dims == ("layer", "head")
    np.testing.assert_allclose(d.values, expected, rtol=1e-5)


def test_attention_distance_uses_positions(build):
    da = build(N).isel(query=slice(20, 30))
    pos_q, pos_k = np.arange(20, 30), np.arange(N)
    expected = (arr(da) * np.abs(pos_q[:, None] - pos_k[None, :])).sum(-1).mean(-1)
    np.testing.assert_allclose(metrics.attention_distance(da).values, expected, rtol=1e-5)


# ----------------------------------------------------------------- similarity
def cosine(x, y):
    return (x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum())


def test_head_similarity_within_layers(build, chunked, causal):
    da = build(N, causal=causal, chunked=chunked, layers=2, heads=3)
    a = arr(da)
    s = metrics.head_similarity(da)
    assert s.dims == ("layer", "head_a", "head_b")
    expected = np.array([[[cosine(a[l, i], a[l, j]) for j in range(3)] for i in range(3)] for l in range(2)])
    np.testing.assert_allclose(s.values, expected, rtol=1e-5)
    np.testing.assert_allclose(np.diagonal(s.values, axis1=1, axis2=2), 1, rtol=1e-5)


def test_head_similarity_across_layers(build, chunked):
    da = build(N, chunked=chunked, layers=2, heads=3).assign_coords(layer=[3, 7], head=[0, 2, 5])
    a = arr(da).reshape(6, N, N)
    s = metrics.head_similarity(da, across_layers=True)
    assert s.dims == ("pair_a", "pair_b")
    expected = np.array([[cosine(a[i], a[j]) for j in range(6)] for i in range(6)])
    np.testing.assert_allclose(s.values, expected, rtol=1e-5)
    assert list(s.layer_a.values) == [3, 3, 3, 7, 7, 7]
    assert list(s.head_b.values) == [0, 2, 5, 0, 2, 5]


# ----------------------------------------------------------------- rollout
def ref_rollout(a, targets):
    n = a.shape[-1]
    r = np.eye(n)
    for l in range(a.shape[0]):
        m = 0.5 * a[l].mean(0) + 0.5 * np.eye(n)
        m /= m.sum(-1, keepdims=True)
        r = m @ r
    return r[targets]


@pytest.mark.parametrize("targets", [[-1], [0, 5, -2]])
def test_rollout(build, chunked, causal, targets):
    da = build(N, causal=causal, chunked=chunked, layers=3, heads=2)
    r = metrics.rollout(da, targets)
    assert r.dims == ("target", "key")
    np.testing.assert_allclose(r.values, ref_rollout(arr(da), targets), rtol=1e-4, atol=1e-7)
    assert list(r.target.values) == [t % N for t in targets]
    np.testing.assert_allclose(r.sum("key").values, 1, rtol=1e-5)


def test_rollout_errors(build):
    with pytest.raises(IndexError, match="-37..36"):
        metrics.rollout(build(N), [37])
    with pytest.raises(ValueError, match="square"):
        metrics.rollout(build(N).isel(query=slice(0, 5)))


# ----------------------------------------------------------------- validation / accessor
@pytest.mark.parametrize("fn", [metrics.entropy, metrics.sink_scores, metrics.attention_distance,
                                metrics.head_similarity, metrics.rollout, metrics.token_importance])
def test_rejects_wrong_dims(build, fn):
    with pytest.raises(ValueError, match=r"\('layer', 'head', 'query', 'key'\)"):
        fn(build(8).isel(head=0))


def test_accessor_delegates(build):
    da = build(20)
    xr.testing.assert_identical(da.attn.entropy(), metrics.entropy(da))
    xr.testing.assert_identical(da.attn.rollout([0]), metrics.rollout(da, [0]))
    xr.testing.assert_identical(da.attn.attention_distance(), metrics.attention_distance(da))
    xr.testing.assert_identical(da.attn.head_similarity(True), metrics.head_similarity(da, True))
    xr.testing.assert_identical(da.attn.token_importance("both"), metrics.token_importance(da, "both"))
    xr.testing.assert_identical(da.attn.sink_scores(), metrics.sink_scores(da))
    pd.testing.assert_frame_equal(da.attn.sinks(0.1), metrics.sinks(da, 0.1))
    assert da.attn.multiscale(global_size=8, hotspots=[3], window=2).hotspots == (3,)
    assert da.attn.local(5, 1).sizes["query"] == 3
    assert not hasattr(da.attn, "__dict__")  # holds only _obj


# ----------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), causal=st.booleans(), peaked=st.floats(0.0, 8.0), seed=st.integers(0, 10))
def test_entropy_bounded_by_log_visible(n, causal, peaked, seed):
    da = synthetic_attention(1, 2, n, causal=causal, peaked=peaked, seed=seed)
    h = metrics.entropy(da).values
    assert (h >= -1e-6).all()
    assert (h <= np.log(n_visible(n, causal)) + 1e-5).all()
