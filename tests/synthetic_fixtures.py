"""Fixtures shared by the view and metric tests: synthetic runs eager and chunked, a counting scheduler."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from sharingan_store.testing import synthetic_attention


def make(n: int, *, causal: bool = True, chunked: bool = False, layers: int = 2, heads: int = 2,
         dtype: str = "float32", seed: int = 0) -> xr.DataArray:
    da = synthetic_attention(layers, heads, n, causal=causal, seed=seed, dtype=dtype)
    return da.chunk({"query": 16, "key": 16}) if chunked else da


class CountingScheduler:
    """A dask scheduler that counts how often it is asked to compute."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        return dask.get(dsk, keys, **kwargs)


@pytest.fixture
def counting():
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        yield counter


@pytest.fixture(params=[False, True], ids=["eager", "chunked"])
def chunked(request) -> bool:
    return request.param


@pytest.fixture(params=[True, False], ids=["causal", "bidirectional"])
def causal(request) -> bool:
    return request.param


def dense(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.values, dtype=np.float64)


@pytest.fixture
def build():
    """``build(n, causal=..., chunked=..., ...)``: a synthetic run (see ``make``)."""
    return make
