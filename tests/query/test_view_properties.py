"""Hypothesis properties of the views."""

from __future__ import annotations

import numpy as np
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from sharingan_store import schema
from sharingan_store.query.views import global_view, local, segments
from sharingan_store.testing import synthetic_attention

SETTINGS = settings(max_examples=25, deadline=None)


def uniform(n: int, value: float = 0.25) -> xr.DataArray:
    return xr.DataArray(
        np.full((1, 2, n, n), value, dtype=np.float32),
        dims=schema.DIMS,
        coords={"layer": [0], "head": [0, 1], "query": np.arange(n), "key": np.arange(n)},
    )


@SETTINGS
@given(n=st.integers(2, 40), data=st.data(), causal=st.booleans(), chunk=st.sampled_from([None, 7, 16]))
def test_local_all_keys_keeps_rows_normalised(n, data, causal, chunk):
    da = synthetic_attention(1, 1, n, causal=causal, seed=n)
    if chunk:
        da = da.chunk({"query": chunk, "key": chunk})
    center = data.draw(st.integers(0, n - 1))
    window = data.draw(st.integers(0, n))
    view = local(da, center, window, keys="all")
    assert view.sizes["query"] == min(n - 1, center + window) - max(0, center - window) + 1
    np.testing.assert_allclose(view.sum("key").values, 1, atol=1e-5)


@SETTINGS
@given(n=st.integers(2, 60), size=st.integers(1, 20), method=st.sampled_from(["mean", "max", "sample"]),
       value=st.floats(0.0, 1.0, width=32), chunk=st.sampled_from([None, 5, 16]))
def test_views_of_uniform_matrix_are_uniform(n, size, method, value, chunk):
    da = uniform(n, value)
    if chunk:
        da = da.chunk({"query": chunk, "key": chunk})
    view = global_view(da, size, method).values
    np.testing.assert_allclose(view, value, rtol=1e-6)
    seg = segments(da, size=size).values  # mean row mass put on each key segment
    widths = np.diff(np.r_[np.arange(0, n, size), n])
    np.testing.assert_allclose(seg, np.broadcast_to(value * widths, seg.shape), rtol=1e-5)


@SETTINGS
@given(n=st.integers(1, 50), causal=st.booleans(), data=st.data(), scale=st.floats(0.1, 2.0))
def test_segment_rows_sum_to_row_mass(n, causal, data, scale):
    da = synthetic_attention(1, 2, n, causal=causal, seed=n) * np.float32(scale)
    da.attrs = {}
    bounds = data.draw(st.lists(st.integers(0, n - 1), max_size=6))
    seg = segments(da, boundaries=bounds) if bounds else segments(da, size=data.draw(st.integers(1, n)))
    np.testing.assert_allclose(seg.sum("key_segment").values, scale, rtol=1e-4)
