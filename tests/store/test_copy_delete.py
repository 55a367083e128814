"""copy (directories and zip archives), atomic delete, and mode="r" never writing."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import xarray as xr

import sharingan_store as ss
from sharingan_store.errors import FormatError, ReadOnlyError, RunExistsError, RunNotFoundError
from tests.store.helpers import clone, file_hashes, ids


def test_zip_archive_round_trip(base_store, tmp_path):
    src = ss.open_store(base_store, mode="r")
    archive = str(tmp_path / "arch.zip")
    assert src.copy("a", archive) == archive
    src.copy("b", archive, dest_run="b-copy")
    with ss.open_store(archive, mode="r") as arc:
        assert arc.run_ids() == ["a", "b-copy"]
        assert list(arc.runs(status="complete")["run"]) == ["a", "b-copy"]
        for mine, theirs in (("a", "a"), ("b-copy", "b")):
            got, want = arc.open(mine), src.open(theirs)
            np.testing.assert_array_equal(got.attention.values, want.attention.values)
            xr.testing.assert_equal(got.global_view(size=16).compute(), want.global_view(size=16).compute())
            xr.testing.assert_equal(got.local(center=30, window=5).compute(), want.local(center=30, window=5).compute())
            assert got.attrs["weights_fingerprint"] == want.attrs["weights_fingerprint"]
        assert arc.verify().ok
        with pytest.raises(ReadOnlyError):
            arc.delete("a")
    with zipfile.ZipFile(archive) as zf:  # raw chunk bytes identical: codecs kept
        assert zf.read("runs/a/attention/c/1/2/3/1") == open(os.path.join(base_store, "runs/a/attention/c/1/2/3/1"), "rb").read()
    # plain xarray reads the archive too
    plain = xr.open_zarr(zarr_zip(archive), group="runs/a")
    assert plain["attention"].shape == (2, 4, 64, 64)


def zarr_zip(path):
    import zarr

    return zarr.storage.ZipStore(path, mode="r", read_only=True)


def test_copy_to_directory_and_errors(base_store, tmp_path):
    src = ss.open_store(base_store, mode="r")
    dest = str(tmp_path / "dest")
    src.copy("a", dest)
    before = file_hashes(os.path.join(base_store, "runs", "a"))
    assert file_hashes(os.path.join(dest, "runs", "a")) == before
    other = ss.open_store(dest, mode="r")
    assert other.run_ids() == ["a"] and other.verify().ok
    assert xr.open_zarr(dest, group="runs/a")["attention"].shape == (2, 4, 64, 64)  # root index refreshed
    with pytest.raises(RunExistsError, match="already exists"):
        src.copy("a", dest)
    src.copy("b", dest, dest_run="a", overwrite=True)
    assert ss.open_store(dest, mode="r").open("a").attrs["weights_fingerprint"] == src.open("b").attrs["weights_fingerprint"]
    with pytest.raises(RunNotFoundError, match="available runs: a, b"):
        src.copy("zz", dest)
    with pytest.raises(ValueError, match="invalid run id"):
        src.copy("a", dest, dest_run="../x")
    archive = str(tmp_path / "x.zip")
    src.copy("a", archive)
    with pytest.raises(FormatError, match="append-only"):
        src.copy("a", archive, overwrite=True)


def test_copy_of_incomplete_run_is_refused(base_store, tmp_path):
    import zarr

    path = clone(base_store, tmp_path / "s")
    zarr.open_group(path, path="runs/a", mode="r+", use_consolidated=False).attrs["status"] = "failed"
    with pytest.raises(ss.RunIncompleteError, match="status 'failed'"):
        ss.open_store(path).copy("a", str(tmp_path / "d"))


def test_delete_is_atomic_for_the_catalog(base_store, tmp_path):
    path = clone(base_store, tmp_path / "s")
    store = ss.open_store(path)
    store.delete("b")
    assert store.run_ids() == ["a"] and not os.path.exists(os.path.join(path, "runs", "b"))
    assert list(ss.open_store(path, mode="r").runs()["run"]) == ["a"]
    with pytest.raises(RunNotFoundError, match="no run 'b'.*available runs: a"):
        store.open("b")
    # a delete interrupted after its first step: the group marker is gone, chunks remain -> not a run
    os.remove(os.path.join(path, "runs", "a", "zarr.json"))
    assert store.run_ids() == [] and store.runs().empty
    with pytest.raises(RunNotFoundError):
        store.open("a")
    # a new run of the same id reclaims the leftovers
    from sharingan_store.testing import tiny_model

    store.extract(tiny_model("llama"), input_ids=ids(32), run="a", progress=False, chunk=16)
    run = store.open("a")
    assert run.seq_len == 32 and store.verify("a").ok


def test_mode_r_never_writes(base_store):
    before = file_hashes(base_store, mtimes=True)
    store = ss.open_store(base_store, mode="r")
    store.runs()
    run = store.open("a")
    run.attention.values
    run.global_view(size=8).values
    store.verify()
    store.compare("a", "b").values
    for call in (lambda: store.delete("a"),
                 lambda: store.extract(None, input_ids=ids(8), run="x", progress=False),
                 lambda: store.copy("a", base_store, dest_run="a2")):
        with pytest.raises(ReadOnlyError, match="mode='r'"):
            call()
    assert file_hashes(base_store, mtimes=True) == before
