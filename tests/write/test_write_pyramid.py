from __future__ import annotations

import math

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
import zarr

from sharingan_store import schema
from sharingan_store.query.pyramid import open_pyramid
from sharingan_store.write import PyramidAccumulator, build_pyramid, choose_layout, pyramid_factors

from tests.write._write_helpers import attention, write_run


def coarsen_reference(a: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy mean/max over f×f cells, partial edge cells averaged over in-bounds entries."""
    n = a.shape[-1]
    m = math.ceil(n / f)
    mean = np.zeros(a.shape[:-2] + (m, m), np.float64)
    mx = np.zeros_like(mean)
    for i in range(m):
        for j in range(m):
            cell = a[..., i * f:(i + 1) * f, j * f:(j + 1) * f].astype(np.float64)
            mean[..., i, j] = cell.mean(axis=(-2, -1))
            mx[..., i, j] = cell.max(axis=(-2, -1))
    return mean, mx


def test_factors():
    assert pyramid_factors(37, max_level_size=16, min_level_size=2) == [4, 8, 16, 32]
    assert pyramid_factors(32768, max_level_size=2048, min_level_size=2) == [2**k for k in range(4, 15)]
    # defaults: finest level <= 512 cells per side, coarsest >= 16
    assert pyramid_factors(32768) == [2**k for k in range(6, 12)]
    assert pyramid_factors(1000) == [2, 4, 8, 16, 32, 64]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_pyramid_during_write_matches_build_and_numpy(root, store_path, dtype):
    n = 37  # not divisible by any factor
    probs = attention(2, 3, n, seed=1)
    lay = choose_layout(n, 16, chunk=8)
    write_run(root, "p", probs, lay, pyramid=True, max_level_size=16, min_level_size=2, storage_dtype=dtype, head_block=2)
    levels = open_pyramid(store_path, "p")
    assert sorted(levels) == [4, 8, 16, 32]
    meta = zarr.open_group(store_path, path="runs/p/pyramid", mode="r").attrs["multiscales"][0]
    assert [d["path"] for d in meta["datasets"]] == ["f4", "f8", "f16", "f32"]
    assert meta["metadata"]["methods"] == ["mean", "max"]
    written = {f: (ds["mean"].values, ds["max"].values) for f, ds in levels.items()}
    assert isinstance(levels[4]["mean"].data, dsa.Array)  # lazy

    # the same pyramid rebuilt from the stored full-resolution chunks
    build_pyramid(zarr.open_group(store_path, path="runs/p"))
    rebuilt = open_pyramid(store_path, "p")
    stored = xr.open_zarr(store_path, group="runs/p")[schema.ATTENTION].values
    if dtype == "bfloat16":
        stored = (stored.astype(np.uint32) << 16).view(np.float32)
    for f, (mean, mx) in written.items():
        np.testing.assert_array_equal(rebuilt[f]["mean"].values, mean)
        np.testing.assert_array_equal(rebuilt[f]["max"].values, mx)
        ref_mean, ref_max = coarsen_reference(stored.astype(np.float32), f)
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(mx, ref_max.astype(np.float32))
        ds = levels[f]
        assert ds["mean"].dims == schema.DIMS and ds["mean"].dtype == np.float32
        np.testing.assert_array_equal(ds[schema.QUERY].values, np.arange(0, n, f))
        np.testing.assert_array_equal(ds[schema.KEY].values, np.arange(0, n, f))
        assert list(ds[schema.LAYER].values) == [0, 1]


def test_accumulator_unaligned_blocks_and_factor_larger_than_block():
    n = 37
    a = attention(1, 1, n, causal=False)[0]
    acc = PyramidAccumulator(n, [2, 4, 8, 16], 1)
    for q0, q1 in [(0, 5), (5, 6), (6, 30), (30, 37)]:
        acc.add(q0, q1, a[:, q0:q1])
    out = acc.result()
    for f, (mean, mx) in out.items():
        ref_mean, ref_max = coarsen_reference(a.numpy(), f)
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(mx, ref_max.astype(np.float32))


def test_open_pyramid_absent(root, store_path):
    write_run(root, "np", attention(1, 1, 16), choose_layout(16, 16))
    assert open_pyramid(store_path, "np") == {}
    assert open_pyramid(root, "np") == {}
