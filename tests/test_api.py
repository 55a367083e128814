"""The public API: open_store / open_run / Store.open / Store.compare / Store.verify / copy / delete."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr
import zarr

import sharingan_store as ss
from tests.store.conftest import base_store  # noqa: F401 - fixture
from tests.store.helpers import clone


def test_open_run_and_store_open(base_store):
    run = ss.open_run(os.path.join(base_store, "runs", "a"))
    assert isinstance(run, ss.AttentionRun) and run.run_id == "a"
    same = ss.open_store(base_store, mode="r").open("a")
    np.testing.assert_array_equal(run.attention.values, same.attention.values)
    with pytest.raises(ValueError, match="a run URL looks like"):
        ss.open_run(base_store)
    plain = xr.open_zarr(base_store, group="runs/a")
    np.testing.assert_array_equal(plain["attention"].values, same.attention.values)


def test_open_incomplete_with_allow(base_store, tmp_path):
    path = clone(base_store, tmp_path / "s")
    zarr.open_group(path, path="runs/b", mode="r+", use_consolidated=False).attrs["status"] = "failed"
    with pytest.raises(ss.RunIncompleteError):
        ss.open_run(os.path.join(path, "runs", "b"))
    run = ss.open_run(os.path.join(path, "runs", "b"), allow_incomplete=True)
    assert run.attrs["status"] == "failed" and run.pyramid == {}


def test_store_surface(base_store, tmp_path):
    store = ss.open_store(clone(base_store, tmp_path / "s"))
    assert "a" in store and "zz" not in store
    assert store.compare("a", "b").dims == ("layer", "head")
    assert store.verify("a").ok
    store.copy("a", tmp_path / "copy.zip")
    store.delete("a")
    assert store.run_ids() == ["b"]
    with ss.open_store(tmp_path / "copy.zip", mode="r") as arc:
        assert arc.open("a").seq_len == 64
        assert repr(arc).startswith("<sharingan_store.Store")
