"""Stores on object storage: a real S3-compatible server (moto, loopback) behind ``s3://`` URLs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

import sharingan_store as ss
from sharingan_store import schema

from ._scale_helpers import S3_INPUTS


@pytest.fixture(scope="module")
def local_twin(tmp_path_factory, llama):
    """The same inputs extracted into a local-disk store."""
    store = ss.open_store(tmp_path_factory.mktemp("twin") / "store")
    for run, ids in S3_INPUTS.items():
        store.extract(llama, input_ids=torch.tensor(ids), run=run, pyramid=True, progress=False)
    return store


def test_zarr_store_is_async_fsspec(s3_store):
    zstore = s3_store._zstore
    assert isinstance(zstore, zarr.storage.FsspecStore)
    assert zstore.fs.asynchronous  # zarr's from_url made the s3fs filesystem asynchronous
    assert type(zstore.fs).__name__ == "S3FileSystem"


def test_list_open_and_views_equal_local_disk(s3, s3_store, local_twin):
    reopened = ss.open_store(s3.url("store"), mode="r", storage_options=s3.storage_options)
    assert reopened.run_ids() == sorted(S3_INPUTS)
    frame = reopened.runs()
    assert list(frame["run"]) == sorted(S3_INPUTS)
    assert set(frame["status"]) == {schema.STATUS_COMPLETE}
    for run in S3_INPUTS:
        remote, local = reopened.open(run), local_twin.open(run)
        assert remote.attention.dtype == local.attention.dtype
        np.testing.assert_array_equal(remote.attention.values, local.attention.values)
        xr.testing.assert_equal(remote.local(center=20, window=8).compute(), local.local(center=20, window=8).compute())
        assert remote.pyramid  # the pyramid is read from S3 too
        xr.testing.assert_allclose(remote.global_view(size=8).compute(), local.global_view(size=8).compute())
        xr.testing.assert_allclose(remote.global_view(size=8, method="max").compute(),
                                   local.global_view(size=8, method="max").compute())
        xr.testing.assert_allclose(remote.entropy().compute(), local.entropy().compute())


def test_plain_xarray_opens_a_run_on_s3(s3, s3_store, local_twin):
    ds = xr.open_zarr(s3.url("store"), group="runs/s3-a", storage_options=s3.storage_options)
    assert ds["attention"].dims == ("layer", "head", "query", "key")
    np.testing.assert_array_equal(ds["attention"].values, local_twin.open("s3-a").attention.values)


def test_open_run_by_url(s3, s3_store):
    run = ss.open_run(s3.url("store/runs/s3-b"), storage_options=s3.storage_options)
    assert run.seq_len == len(S3_INPUTS["s3-b"])


def test_copy_to_and_from_local_disk(s3, s3_store, tmp_path):
    if not hasattr(s3_store, "copy"):
        pytest.skip("Store.copy is not implemented yet")
    s3_store.copy("s3-a", tmp_path / "local")
    local = ss.open_store(tmp_path / "local", mode="r")
    np.testing.assert_array_equal(local.open("s3-a").attention.values, s3_store.open("s3-a").attention.values)
    assert local.verify("s3-a") if hasattr(local, "verify") else True
    # and back up to another prefix of the bucket
    local.copy("s3-a", s3.url("copied"), dest_run="back", storage_options=s3.storage_options)
    back = ss.open_store(s3.url("copied"), mode="r", storage_options=s3.storage_options)
    assert back.run_ids() == ["back"]
    np.testing.assert_array_equal(back.open("back").attention.values, local.open("s3-a").attention.values)
    xr.testing.assert_allclose(back.open("back").global_view(size=8).compute(),
                               local.open("s3-a").global_view(size=8).compute())


def test_read_only_store_and_missing_store_on_s3(s3, s3_store):
    with pytest.raises(FileNotFoundError):
        ss.open_store(s3.url("no-such-store"), mode="r", storage_options=s3.storage_options)
    ro = ss.open_store(s3.url("store"), mode="r", storage_options=s3.storage_options)
    with pytest.raises(ss.ReadOnlyError):
        ro.delete("s3-a")
    with pytest.raises(ss.RunNotFoundError, match="s3-a"):
        ro.open("nope")
