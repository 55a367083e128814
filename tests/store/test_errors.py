"""Every user-facing error: type and message."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import zarr

import sharingan_store as ss
from sharingan_store.errors import (FormatError, ReadOnlyError, RunExistsError, RunIncompleteError,
                                    RunNotFoundError, SelectionError, SharinganError)
from sharingan_store.testing import tiny_model
from tests.store.helpers import clone, ids


def test_unknown_run(base_store):
    store = ss.open_store(base_store, mode="r")
    with pytest.raises(RunNotFoundError) as info:
        store.open("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, SharinganError)
    assert str(info.value) == f"no run 'nope' in {store.url}; available runs: a, b"
    for call in (lambda: store.run_group("nope"), lambda: store.verify("nope"), lambda: store.run_size("nope"),
                 lambda: ss.open_run(os.path.join(base_store, "runs", "nope"))):
        with pytest.raises(RunNotFoundError, match="available runs: a, b"):
            call()
    with pytest.raises(TypeError, match="run ids are strings"):
        store.open(3)


def test_out_of_range_selection(base_store):
    run = ss.open_store(base_store, mode="r").open("a")
    with pytest.raises(SelectionError, match=r"layer \[5\] not in this run; valid layer values: \[0, 1\]"):
        run.sel(layer=5)
    with pytest.raises(SelectionError, match=r"head positions \[4\] out of range: valid 0..3"):
        run.isel(head=4)
    with pytest.raises(SelectionError, match=r"query \[64\] not in this run; valid query values: 0..63"):
        run.sel(query=64)
    with pytest.raises(SelectionError, match="cannot select on \\['colour'\\]"):
        run.sel(colour=1)
    with pytest.raises((IndexError, ValueError), match="0.*63|63|range"):
        run.local(center=100, window=4)


def test_not_a_store(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hi")
    with pytest.raises(FormatError, match="exists and is not a sharingan store"):
        ss.open_store(tmp_path / "junk")
    (tmp_path / "file.txt").write_text("hi")
    with pytest.raises(FormatError, match="is a file, not a sharingan store"):
        ss.open_store(tmp_path / "file.txt")
    zarr.open_group(str(tmp_path / "plain"), mode="w")
    with pytest.raises(FormatError, match="zarr group but not a sharingan store"):
        ss.open_store(tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="no sharingan store"):
        ss.open_store(tmp_path / "missing", mode="r")
    with pytest.raises(ValueError, match="mode must be one of"):
        ss.open_store(tmp_path / "x", mode="rw")


def test_newer_format_version(base_store, tmp_path):
    path = clone(base_store, tmp_path / "s")
    meta_path = os.path.join(path, "zarr.json")
    meta = json.load(open(meta_path))
    meta["attributes"]["sharingan_store"]["format_version"] = 99
    meta.pop("consolidated_metadata", None)
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(FormatError, match="format version 99; this sharingan_store reads versions <= 1: upgrade"):
        ss.open_store(path, mode="r")


def test_malformed_run(base_store, tmp_path):
    path = clone(base_store, tmp_path / "s")
    shutil.rmtree(os.path.join(path, "runs", "a", "token_id"))
    zarr.consolidate_metadata(zarr.storage.LocalStore(os.path.join(path, "runs", "a")))
    zarr.consolidate_metadata(zarr.storage.LocalStore(path))
    with pytest.raises(FormatError, match="run 'a' is malformed: missing array\\(s\\) token_id"):
        ss.open_store(path, mode="r").open("a")
    shutil.rmtree(os.path.join(path, "runs", "b", "attention"))
    with pytest.raises(FormatError, match="run 'b'"):
        ss.open_store(path, mode="r").open("b")


def test_read_only_and_exists(base_store, tmp_path):
    ro = ss.open_store(base_store, mode="r")
    with pytest.raises(ReadOnlyError, match="cannot delete run 'a': the store .* was opened with mode='r'"):
        ro.delete("a")
    assert isinstance(ReadOnlyError("x"), PermissionError)
    rw = ss.open_store(clone(base_store, tmp_path / "s"))
    with pytest.raises(RunExistsError, match="run 'a' already exists.*overwrite=True"):
        rw.extract(tiny_model("llama"), input_ids=ids(16), run="a", progress=False)
    with pytest.raises(ValueError, match="cannot resume run 'zz': it does not exist"):
        rw.extract(tiny_model("llama"), input_ids=ids(16), run="zz", progress=False, resume=True)


def test_incomplete_run(base_store, tmp_path):
    path = clone(base_store, tmp_path / "s")
    zarr.open_group(path, path="runs/a", mode="r+", use_consolidated=False).attrs["status"] = "writing"
    store = ss.open_store(path, mode="r")
    with pytest.raises(RunIncompleteError, match="run 'a' has status 'writing', not 'complete'.*allow_incomplete=True"):
        store.open("a")
    assert store.open("a", allow_incomplete=True).attrs["status"] == "writing"
    assert list(store.runs(status="complete")["run"]) == ["b"]


def test_resume_mismatch_is_refused(base_store, tmp_path):
    path = clone(base_store, tmp_path / "s")
    zarr.open_group(path, path="runs/a", mode="r+", use_consolidated=False).attrs["status"] = "failed"
    store = ss.open_store(path)
    before = os.listdir(os.path.join(path, "runs", "a"))
    with pytest.raises(ValueError, match="cannot resume run 'a': weights_fingerprint differ"):
        store.extract(tiny_model("llama", seed=5), input_ids=ids(), run="a", progress=False, chunk=16, resume=True)
    with pytest.raises(ValueError, match="cannot resume run 'a': text_sha256 differ"):
        store.extract(tiny_model("llama"), input_ids=ids(offset=1), run="a", progress=False, chunk=16, resume=True)
    with pytest.raises(ValueError, match="seq_len"):
        store.extract(tiny_model("llama"), input_ids=ids(32), run="a", progress=False, chunk=16, resume=True)
    assert os.listdir(os.path.join(path, "runs", "a")) == before
    assert store.run_group("a").attrs["status"] == "failed"
