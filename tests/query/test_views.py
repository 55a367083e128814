"""Views against dense numpy references, eager and chunked, causal and bidirectional."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from sharingan_store import schema
from sharingan_store.query.views import (
    MultiScaleAttention,
    global_view,
    local,
    multiscale,
    segments,
)

# ----------------------------------------------------------------- references
def ref_global(a: np.ndarray, size: int, method: str) -> np.ndarray:
    n = a.shape[-1]
    c = math.ceil(n / size)
    if method == "sample":
        return a[..., ::c, ::c]
    m = math.ceil(n / c)
    pad = np.full(a.shape[:2] + (m * c, m * c), np.nan)
    pad[..., :n, :n] = a
    blocks = pad.reshape(a.shape[:2] + (m, c, m, c))
    return np.nanmean(blocks, axis=(3, 5)) if method == "mean" else np.nanmax(blocks, axis=(3, 5))


def ref_segments(a: np.ndarray, starts: list[int]) -> np.ndarray:
    n = a.shape[-1]
    bounds = list(starts) + [n]
    b = len(starts)
    out = np.zeros(a.shape[:2] + (b, b))
    for i in range(b):
        for j in range(b):
            block = a[..., bounds[i]:bounds[i + 1], bounds[j]:bounds[j + 1]]
            out[..., i, j] = block.sum(-1).mean(-1)
    return out


def pyramid_levels(a: np.ndarray, factors, layers, heads) -> dict[int, xr.Dataset]:
    n = a.shape[-1]
    out = {}
    for f in factors:
        m = math.ceil(n / f)
        pad = np.full(a.shape[:2] + (m * f, m * f), np.nan)
        pad[..., :n, :n] = a
        blocks = pad.reshape(a.shape[:2] + (m, f, m, f))
        coords = {"layer": layers, "head": heads, "query": np.arange(0, n, f), "key": np.arange(0, n, f)}
        out[f] = xr.Dataset(
            {
                "mean": (schema.DIMS, np.nanmean(blocks, axis=(3, 5)).astype(np.float32)),
                "max": (schema.DIMS, np.nanmax(blocks, axis=(3, 5)).astype(np.float32)),
            },
            coords=coords,
        )
    return out


# ----------------------------------------------------------------- local
@pytest.mark.parametrize("center,window", [(20, 5), (0, 4), (36, 10), (18, 0), (10, 100)])
def test_local_window_matches_numpy(build, chunked, causal, center, window):
    da = build(37, causal=causal, chunked=chunked)
    a = np.asarray(da.values)
    lo, hi = max(0, center - window), min(36, center + window)
    view = local(da, center, window)
    np.testing.assert_array_equal(view.values, a[..., lo:hi + 1, lo:hi + 1])
    assert list(view["query"].values) == list(range(lo, hi + 1))
    assert list(view.key_token.values) == [f"t{i}" for i in range(lo, hi + 1)]
    assert view.query_token.dims == ("query",)


def test_local_keys_all_keeps_rows(build, chunked):
    da = build(40, chunked=chunked)
    view = local(da, 30, 3, keys="all")
    assert view.sizes["key"] == 40
    np.testing.assert_allclose(view.sum("key").values, 1, atol=1e-5)


def test_local_uses_positions_not_indices(build):
    da = build(40).isel(query=slice(10, 30), key=slice(10, 30))
    view = local(da, 12, 2)
    assert list(view["query"].values) == [10, 11, 12, 13, 14]


def test_local_errors(build):
    da = build(20)
    with pytest.raises(IndexError, match=r"0\.\.19"):
        local(da, 20)
    with pytest.raises(IndexError, match=r"0\.\.19"):
        local(da, -1)
    with pytest.raises(ValueError, match="keys"):
        local(da, 3, keys="rows")
    with pytest.raises(ValueError, match="window"):
        local(da, 3, window=-1)
    with pytest.raises(ValueError, match="window"):
        local(da, 3, window=2.5)
    with pytest.raises(ValueError, match=r"\('layer', 'head', 'query', 'key'\)"):
        local(da.isel(layer=0), 3)


# ----------------------------------------------------------------- global
@pytest.mark.parametrize("method", ["mean", "max", "sample"])
@pytest.mark.parametrize("n,size", [(37, 8), (64, 16), (50, 7)])
def test_global_view_matches_numpy(build, chunked, causal, method, n, size):
    da = build(n, causal=causal, chunked=chunked)
    view = global_view(da, size, method)
    expected = ref_global(np.asarray(da.values, dtype=np.float64), size, method)
    np.testing.assert_allclose(view.values, expected, rtol=1e-5, atol=1e-7)
    c = math.ceil(n / size)
    assert list(view["query"].values) == list(range(0, n, c))
    assert list(view.key_token.values) == [f"t{i}" for i in range(0, n, c)]
    assert view.attrs["global_view_cell"] == c
    assert view.dims == schema.DIMS


def test_global_view_small_is_unchanged(build):
    da = build(16)
    assert global_view(da, 16) is da


def test_global_view_float16_does_not_overflow(build):
    da = build(300, layers=1, heads=1, dtype="float32").astype("float16").chunk({"query": 128, "key": 128})
    view = global_view(da, 10).values
    assert np.isfinite(view).all()
    assert view.dtype == np.float32


def test_global_view_errors(build):
    da = build(20)
    with pytest.raises(ValueError, match="method"):
        global_view(da, 4, "median")
    with pytest.raises(ValueError, match="size"):
        global_view(da, 0)


@pytest.mark.parametrize("method", ["mean", "max"])
@pytest.mark.parametrize("n,size,factors", [(100, 10, [2, 4]), (103, 10, [2, 11]), (64, 8, [2, 4, 8]), (70, 6, [3, 4])])
def test_global_view_from_pyramid_equals_full_scan(build, method, n, size, factors):
    da = build(n, layers=3, heads=2, chunked=True)
    a = np.asarray(da.values, dtype=np.float64)
    pyramid = pyramid_levels(a, factors, da["layer"].values, da["head"].values)
    # a run whose attention would fail if read: the pyramid path must not touch it
    def boom(block):
        raise AssertionError("full-resolution data was read")
    exploding = da.copy(data=da.data.map_blocks(boom, dtype=da.dtype))
    c = math.ceil(n / size)
    usable = [f for f in factors if c % f == 0]
    source = exploding if usable else da
    view = global_view(source, size, method, pyramid=pyramid)
    full = global_view(da, size, method)
    np.testing.assert_allclose(view.values, full.values, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(view.values, ref_global(a, size, method), rtol=2e-6, atol=1e-7)
    assert list(view["query"].values) == list(full["query"].values)


def test_global_view_pyramid_selects_layers_and_heads_by_coordinate(build):
    da = build(64, layers=3, heads=3)
    da = da.assign_coords(layer=[0, 2, 4], head=[1, 3, 5])
    pyramid = pyramid_levels(np.asarray(da.values, dtype=np.float64), [4], da["layer"].values, da["head"].values)
    sub = da.sel(layer=[4, 0], head=[3])
    view = global_view(sub, 8, "mean", pyramid=pyramid)
    np.testing.assert_allclose(view.values, global_view(sub, 8, "mean").values, rtol=2e-6, atol=1e-7)
    assert list(view["layer"].values) == [4, 0]


# ----------------------------------------------------------------- segments
@pytest.mark.parametrize("n,size", [(37, 8), (32, 8), (20, 50)])
def test_segments_fixed_size(build, chunked, causal, n, size):
    da = build(n, causal=causal, chunked=chunked)
    view = segments(da, size=size)
    starts = list(range(0, n, size))
    np.testing.assert_allclose(view.values, ref_segments(np.asarray(da.values, np.float64), starts), rtol=1e-5, atol=1e-7)
    assert view.dims == ("layer", "head", "query_segment", "key_segment")
    assert list(view.query_segment.values) == starts
    assert list(view.key_segment_end.values) == starts[1:] + [n]
    np.testing.assert_allclose(view.sum("key_segment").values, 1, atol=1e-5)


def test_segments_explicit_offsets(build, chunked):
    da = build(30, chunked=chunked)
    view = segments(da, boundaries=[5, 12, 13, 29])
    starts = [0, 5, 12, 13, 29]
    np.testing.assert_allclose(view.values, ref_segments(np.asarray(da.values, np.float64), starts), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind,name", [("sentence", "sentence_id"), ("paragraph", "paragraph_id")])
def test_segments_by_sentence_and_paragraph(build, chunked, kind, name):
    da = build(24, chunked=chunked)
    ids = np.repeat([0, 1, 2, 3], [3, 9, 7, 5])
    da = da.assign_coords({name: ("query", ids)})
    view = segments(da, boundaries=kind)
    starts = [0, 3, 12, 19]
    np.testing.assert_allclose(view.values, ref_segments(np.asarray(da.values, np.float64), starts), rtol=1e-5, atol=1e-7)
    assert list(view.query_segment.values) == starts


def test_segments_errors(build):
    da = build(20)
    with pytest.raises(ValueError, match="exactly one"):
        segments(da)
    with pytest.raises(ValueError, match="exactly one"):
        segments(da, size=4, boundaries="sentence")
    with pytest.raises(ValueError, match="sentence_id"):
        segments(da, boundaries="sentence")
    with pytest.raises(ValueError, match="boundaries"):
        segments(da, boundaries="chapter")
    with pytest.raises(ValueError, match="0..19"):
        segments(da, boundaries=[3, 40])


# ----------------------------------------------------------------- multiscale
def test_multiscale_small_returns_matrix(build):
    da = build(40)
    ms = multiscale(da, global_size=64)
    assert isinstance(ms, MultiScaleAttention)
    assert ms.global_view is da and ms.segment_view is None and not ms.local_views and not ms.downsampled


def test_multiscale_medium_has_only_global(build):
    ms = multiscale(build(80), global_size=64)
    assert ms.global_view.sizes["query"] == 40 and ms.segment_view is None and ms.hotspots == ()


def test_multiscale_large_has_everything(build, chunked):
    da = build(140, chunked=chunked)
    ms = multiscale(da, global_size=32, segment_size=20, hotspots=3, window=4)
    assert ms.global_view.sizes["query"] == 28  # c = ceil(140 / 32) = 5
    assert ms.segment_view.sizes["query_segment"] == 7
    assert len(ms.hotspots) == 3 and set(ms.local_views) == set(ms.hotspots)
    received = np.asarray(da.values, np.float64).sum(2).mean((0, 1))
    assert ms.hotspots[0] == int(np.argmax(received))
    assert "MultiScaleAttention(seq_len=140" in repr(ms)


def test_multiscale_explicit_hotspots_computes_nothing(build, counting):
    da = build(140, chunked=True)
    ms = multiscale(da, global_size=32, hotspots=[10, 100], window=4)
    assert ms.hotspots == (10, 100) and counting.calls == 0


def test_segments_fixed_size_on_a_query_selection(build, chunked):
    da = build(30, chunked=chunked).isel(query=slice(7, 30))  # non-contiguous with keys: grouped path
    view = segments(da, size=10)
    a = np.asarray(build(30).values, np.float64)
    full = ref_segments(a, [0, 10, 20])
    # query segment 0 holds only queries 7..9
    expected = full.copy()
    expected[..., 0, :] = np.stack([a[..., 7:10, s:e].sum(-1).mean(-1) for s, e in [(0, 10), (10, 20), (20, 30)]], -1)
    np.testing.assert_allclose(view.values, expected, rtol=1e-5, atol=1e-7)
