from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

from sharingan_store import schema
from sharingan_store.errors import RunExistsError
from sharingan_store.write import RunWriter, choose_layout, pyramid_factors
from sharingan_store.write.layout import RunLayout

from tests.write._write_helpers import attention, token_meta, write_run


def _chunk_files(store_path, run_id):
    base = store_path / "runs" / run_id / "attention" / "c"
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())


def test_plain_xarray_opens_run(root, store_path):
    probs = attention(2, 2, 40)
    write_run(root, "demo", probs, choose_layout(40, 16, chunk=16), layers=[3, 7], heads=[0, 2],
              attrs={"model": "toy", "num_layers": 8})
    ds = xr.open_zarr(store_path, group="runs/demo")
    assert ds[schema.ATTENTION].dims == schema.DIMS
    assert ds[schema.TOKEN_ID].dims == (schema.QUERY,) and ds[schema.TOKEN_ID].dtype == np.int32
    for name in (schema.QUERY_TOKEN, schema.CHAR_START, schema.CHAR_END, schema.SENTENCE_ID,
                 schema.PARAGRAPH_ID):
        assert name in ds.coords and ds[name].dims == (schema.QUERY,)
    assert ds[schema.KEY_TOKEN].dims == (schema.KEY,) and schema.KEY_TOKEN in ds.coords
    assert ds[schema.CHAR_START].dtype == np.int32
    assert list(ds[schema.LAYER].values) == [3, 7] and list(ds[schema.HEAD].values) == [0, 2]
    np.testing.assert_array_equal(ds[schema.QUERY].values, np.arange(40))
    assert ds[schema.QUERY_TOKEN].values[5] == "t5"
    assert ds.attrs["model"] == "toy" and ds.attrs[schema.STATUS] == schema.STATUS_COMPLETE
    got = ds[schema.ATTENTION].sel(layer=7, head=2).values.astype(np.float32)
    np.testing.assert_allclose(got, probs[1, 1].numpy(), atol=2**-11)
    assert list(ds.data_vars) == [schema.ATTENTION, schema.TOKEN_ID]


def test_causal_skips_chunks_above_diagonal_and_reads_zero(root, store_path):
    n, c = 64, 16
    probs = attention(1, 1, n)
    write_run(root, "c", probs, choose_layout(n, 32, chunk=c))
    files = _chunk_files(store_path, "c")
    # blocks of two chunk rows; each chunk row is written up to its own diagonal chunk only
    expected = {f"0/0/{i}/{j}" for i in range(n // c) for j in range(i + 1)}
    assert set(files) == expected
    assert "0/0/0/1" not in files and "0/0/0/3" not in files  # wholly above the diagonal: never written
    ds = xr.open_zarr(store_path, group="runs/c")
    a = ds[schema.ATTENTION].values
    assert not np.isnan(a).any()
    assert (a[0, 0][np.triu_indices(n, 1)] == 0.0).all()
    np.testing.assert_allclose(a[0, 0].astype(np.float32), probs[0, 0].numpy(), atol=2**-11)


def test_sharded_layout_file_count(root, store_path):
    n = 256
    lay = choose_layout(n, 64, chunk=32, shard=True)
    assert lay.shards == (1, 1, 64, 256)
    probs = attention(2, 2, n)
    write_run(root, "s", probs, lay)
    files = _chunk_files(store_path, "s")
    assert len(files) == 2 * 2 * (n // 64)  # one shard per (layer, head, query block)
    ds = xr.open_zarr(store_path, group="runs/s")
    np.testing.assert_allclose(ds[schema.ATTENTION].values.astype(np.float32), probs.numpy(), atol=2**-11)


def test_layout_32k_file_budget():
    lay = choose_layout(32768, 1024)
    assert lay.shard
    shards_per_head = lay.num_q_blocks
    assert 2 * 2 * shards_per_head + 50 < 5000
    with pytest.raises(ValueError, match="multiple of chunk"):
        choose_layout(4096, 700)
    with pytest.raises(ValueError, match="not a block of this layout"):
        lay.check_block(0, 512)


def test_status_writing_then_complete(root, store_path):
    n = 32
    lay = choose_layout(n, 16, chunk=16)
    w = RunWriter.create(root, "st", layers=[0], heads=[0], layout=lay, causal=True,
                         attrs={}, **token_meta(n))
    probs = attention(1, 1, n)
    assert zarr.open_group(store_path, path="runs/st", mode="r").attrs[schema.STATUS] == schema.STATUS_WRITING
    w.submit(0, [0], 0, 16, probs[0, :, :16])
    assert w.status == schema.STATUS_WRITING
    assert w.pending_blocks() != []
    w.submit(0, [0], 16, 32, probs[0, :, 16:])
    w.close()
    assert w.status == schema.STATUS_COMPLETE
    assert w.pending_blocks() == [] and w.is_written(0, 0, 16)
    with pytest.raises(RunExistsError):
        RunWriter.create(root, "st", layers=[0], heads=[0], layout=lay, causal=True, attrs={}, **token_meta(n))


def test_writer_thread_error_propagates(root, monkeypatch):
    n = 32
    lay = choose_layout(n, 16, chunk=16)
    w = RunWriter.create(root, "e", layers=[0], heads=[0], layout=lay, causal=False, attrs={},
                         **token_meta(n))

    def boom(task):
        raise OSError("disk full")

    w._run = boom  # a real failure inside the writer thread
    w.submit(0, 0, 0, 16, attention(1, 1, n, causal=False)[0, :, :16])
    with pytest.raises(OSError, match="disk full"):
        for _ in range(50):
            time.sleep(0.02)
            w.submit(0, 0, 16, 32, attention(1, 1, n, causal=False)[0, :, 16:])
    with pytest.raises(OSError, match="disk full"):
        w.close()
    assert w.status == schema.STATUS_FAILED


def test_fail_and_context_manager(root, store_path):
    n = 16
    lay = choose_layout(n, 16)
    other = write_run(root, "ok", attention(1, 1, n), lay)
    with pytest.raises(RuntimeError, match="extractor broke"):
        with RunWriter.create(root, "bad", layers=[0], heads=[0], layout=lay, causal=True,
                              attrs={}, **token_meta(n)):
            raise RuntimeError("extractor broke")
    g = zarr.open_group(store_path, mode="r", use_consolidated=False)
    assert g["runs/bad"].attrs[schema.STATUS] == schema.STATUS_FAILED
    assert g["runs/ok"].attrs[schema.STATUS] == schema.STATUS_COMPLETE
    assert other.status == schema.STATUS_COMPLETE
    # the root index xarray reads is refreshed: both runs open, with their current status
    assert xr.open_zarr(store_path, group="runs/bad").attrs[schema.STATUS] == schema.STATUS_FAILED


def _stalled_producer(w, lay, n):
    """Stall ``w``'s writer thread on a gate; submit every block from a thread; return (gate, done, thread)."""
    gate = threading.Event()
    real = w._run

    def slow(task):
        gate.wait(5)
        real(task)

    w._run = slow
    probs = attention(1, 1, n, causal=False)
    done = []

    def produce():
        for q0, q1 in lay.q_blocks():
            w.submit(0, 0, q0, q1, probs[0, :, q0:q1])
            done.append(q0)

    t = threading.Thread(target=produce)
    t.start()
    return gate, done, t


def _settled(done: list, expected: int, timeout: float = 10.0) -> int:
    """Wait (on a loaded machine too) until ``expected`` blocks went through, then a little more."""
    deadline = time.monotonic() + timeout
    while len(done) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # a producer that is not blocked would get further in this time
    return len(done)


def test_bounded_queue_blocks_submit(root):
    n = 64
    lay = choose_layout(n, 16, chunk=16)
    w = RunWriter.create(root, "q", layers=[0], heads=[0], layout=lay, causal=False, attrs={},
                         num_threads=1, queue_size=1, **token_meta(n))
    assert w._queue.maxsize == 1
    gate, done, t = _stalled_producer(w, lay, n)
    # one block in the (stuck) writer thread, one in the queue, the producer blocked on the third
    assert _settled(done, 2) == 2 and t.is_alive()
    gate.set()
    t.join(5)
    w.close()
    assert done == [0, 16, 32, 48] and w.status == schema.STATUS_COMPLETE


def test_resume_skips_written_blocks(root, store_path):
    n = 48
    lay = choose_layout(n, 16, chunk=16)
    probs = attention(2, 2, n)
    w = RunWriter.create(root, "res", layers=[0, 1], heads=[0, 1], layout=lay, causal=True,
                         attrs={}, pyramid=True, **token_meta(n))
    w.submit(0, slice(0, 2), 0, 16, probs[0, :, :16])
    w.submit(1, [1], 16, 32, probs[1, 1:, 16:32])
    w.flush()
    w.fail(KeyboardInterrupt())
    w2 = RunWriter.resume(root, "res")
    assert w2.status == schema.STATUS_WRITING
    assert w2.is_written(0, slice(0, 2), 0) and w2.is_written(1, 1, 16) and not w2.is_written(1, 0, 16)
    pending = w2.pending_blocks()
    assert len(pending) == 2 * 2 * 3 - 3
    for lp, hp, q0, q1 in pending:
        w2.submit(lp, [hp], q0, q1, probs[lp, hp:hp + 1, q0:q1])
    w2.close()
    ds = xr.open_zarr(store_path, group="runs/res")
    assert ds.attrs[schema.STATUS] == schema.STATUS_COMPLETE
    np.testing.assert_allclose(ds[schema.ATTENTION].values.astype(np.float32), probs.numpy(), atol=2**-11)
    from sharingan_store.query.pyramid import open_pyramid

    assert sorted(open_pyramid(store_path, "res")) == pyramid_factors(n)


def test_bad_submissions(root):
    n = 32
    lay = RunLayout(n, 16, 16, False)
    with RunWriter.create(root, "b", layers=[0], heads=[0, 1], layout=lay, causal=True, attrs={},
                          **token_meta(n)) as w:
        with pytest.raises(ValueError, match="expected"):
            w.submit(0, slice(0, 2), 0, 16, torch.zeros(1, 16, n))
        with pytest.raises(ValueError, match="not a block"):
            w.submit(0, 0, 8, 24, torch.zeros(1, 16, n))
        with pytest.raises(ValueError, match="layer_pos"):
            w.submit(3, 0, 0, 16, torch.zeros(1, 16, n))
        for q0, q1 in lay.q_blocks():
            w.submit(0, slice(0, 2), q0, q1, torch.zeros(2, q1 - q0, n))


@pytest.mark.parametrize("causal", [True, False])
def test_narrow_causal_blocks(root, store_path, causal):
    """A causal block may stop at its last visible key; the writer zero-fills up to the chunk edge."""
    n, chunk = 40, 8
    probs = attention(1, 2, n, causal=True, seed=3)
    lay = choose_layout(n, 16, chunk=chunk)
    w = RunWriter.create(root, "narrow", layers=[0], heads=[0, 1], layout=lay, causal=causal,
                         attrs={}, **token_meta(n))
    with w:
        for q0, q1 in lay.q_blocks():
            block = probs[0, :, q0:q1, :q1]
            if causal or q1 == n:
                w.submit(0, slice(0, 2), q0, q1, block)
            else:
                with pytest.raises(ValueError, match="expected"):
                    w.submit(0, slice(0, 2), q0, q1, block)
                w.submit(0, slice(0, 2), q0, q1, probs[0, :, q0:q1])
    ds = xr.open_zarr(store_path, group=schema.run_path("narrow"))
    np.testing.assert_allclose(ds[schema.ATTENTION].values[0].astype(np.float32), probs[0].numpy(), atol=2**-11)


def test_queue_is_bounded_in_bytes(root):
    """With room for one block's bytes, a second block waits until the first is written."""
    n = 64
    lay = choose_layout(n, 16, chunk=16)
    block_bytes = 16 * n * 2  # one float16 block of one head
    w = RunWriter.create(root, "qb", layers=[0], heads=[0], layout=lay, causal=False, attrs={},
                         num_threads=1, queue_size=8, queue_bytes=block_bytes, **token_meta(n))
    gate, done, t = _stalled_producer(w, lay, n)
    assert _settled(done, 1) == 1 and t.is_alive()  # the count bound (8) would have let all four through
    gate.set()
    t.join(5)
    w.close()
    assert done == [0, 16, 32, 48] and w.status == schema.STATUS_COMPLETE
