"""verify() and checked reads: a flipped byte is found by verify and raises IntegrityError on read."""

from __future__ import annotations

import os

import numpy as np
import pytest

import sharingan_store as ss
from sharingan_store.errors import IntegrityError, SharinganError
from sharingan_store.store.integrity import VerifyReport
from tests.store.helpers import clone, flip_byte


def test_verify_clean_store(base_store):
    report = ss.open_store(base_store, mode="r").verify()
    assert isinstance(report, VerifyReport)
    assert report.ok and bool(report) and report.bad_chunks == []
    assert report.checked["runs"] == 2 and report.checked["chunks"] > 40 and report.checked["bytes"] > 0
    assert str(report).startswith("ok: 2 run(s)")
    single = ss.open_store(base_store, mode="r").verify("a")
    assert single.ok and single.checked["runs"] == 1


def test_flipped_byte_is_reported_and_never_read(base_store, tmp_path):
    path = clone(base_store, tmp_path / "s")
    key = "c/0/1/2/1"  # layer 0, head 1, query rows 32..47, keys 16..31 (below the diagonal)
    flip_byte(os.path.join(path, "runs", "a", "attention", *key.split("/")))
    store = ss.open_store(path, mode="r")

    report = store.verify()
    assert not report.ok
    assert [tuple(b)[:3] for b in report.bad_chunks] == [("a", "attention", key)]
    assert "checksum" in report.bad_chunks[0].reason
    assert "CORRUPTED" in str(report) and key in str(report)
    assert store.verify("b").ok

    run = store.open("a")
    with pytest.raises(IntegrityError) as info:
        run.sel(layer=0, head=1).attention.values
    assert isinstance(info.value, SharinganError)
    assert "'a'" in str(info.value) and key in str(info.value)
    with pytest.raises(IntegrityError):
        run.sel(layer=0, head=1).local(center=40, window=12).values
    # views not touching the chunk still work
    assert np.isfinite(run.sel(layer=0, head=0).attention.values).all()
    assert run.sel(layer=0, head=1).local(center=5, window=3).values.shape == (1, 1, 7, 7)
    assert run.sel(layer=1).attention.sum().values > 0


def test_missing_chunk_is_reported(base_store, tmp_path):
    path = clone(base_store, tmp_path / "s")
    os.remove(os.path.join(path, "runs", "b", "attention", "c", "1", "3", "3", "0"))
    report = ss.open_store(path, mode="r").verify("b")
    assert [(b.run, b.array, b.chunk) for b in report.bad_chunks] == [("b", "attention", "c/1/3/3/0")]
    assert "missing" in report.bad_chunks[0].reason


def test_verify_runs_on_a_dask_scheduler(base_store):
    report = ss.open_store(base_store, mode="r").verify("a", scheduler="sync")
    assert report.ok
