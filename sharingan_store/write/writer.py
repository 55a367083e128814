"""The streaming writer of one run.

:class:`RunWriter` creates the run's xarray-compatible group, then takes blocks of exact
probabilities ``[h, q1-q0, N]`` from the extractor, casts them to the storage dtype on
their device, moves them to host (pinned + ``non_blocking`` on CUDA) and hands them to
writer threads through a bounded queue, so compute, the device→host copy and compression
overlap. Causal runs never write chunks wholly above the diagonal.

Status protocol (run attrs ``schema.STATUS``): ``writing`` before any chunk is written;
``complete`` as the last step of :meth:`RunWriter.close` (after every chunk, the pyramid and
metadata consolidation); ``failed`` from :meth:`RunWriter.fail`.

Progress (for ``resume``): ``runs/<id>/_progress/written`` is a ``uint8`` array
``(layer, head, q_block)`` set to 1 by the writer thread once a block's chunks are on disk
(guarded by a lock; one chunk per layer). :meth:`RunWriter.is_written` /
:meth:`RunWriter.pending_blocks` tell a resumed extraction which blocks to skip; it lives
in a sub-group, so ``xr.open_zarr`` on the run does not show it.

Examples
--------
>>> import numpy as np, torch, zarr
>>> from sharingan_store import schema
>>> root = zarr.open_group(zarr.storage.MemoryStore(), mode="w",
...                        attributes={schema.ROOT_ATTR: {"format_version": schema.FORMAT_VERSION}})
>>> n = 4
>>> meta = dict(token_ids=np.arange(n), query_tokens=list("abcd"), char_start=np.arange(n),
...             char_end=np.arange(n) + 1, sentence_id=np.zeros(n), paragraph_id=np.zeros(n))
>>> with RunWriter.create(root, "demo", layers=[0], heads=[0, 1], layout=choose_layout(n, n),
...                       causal=True, attrs={"model": "toy"}, **meta) as w:
...     p = torch.tril(torch.ones(n, n)); p = p / p.sum(-1, keepdim=True)
...     w.submit(0, slice(0, 2), 0, n, p.expand(2, n, n))
>>> root["runs/demo"].attrs[schema.STATUS]
'complete'
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zarr

from sharingan_store import schema
from sharingan_store.errors import RunExistsError
from sharingan_store.write._util import (
    MULTISCALES_ATTR,
    PROGRESS_ARRAY,
    PROGRESS_GROUP,
    WRITE_ATTR,
    checked_compressors,
    consolidate,
    contiguous_runs,
    create_coord,
    open_plain,
    refresh_root_index,
)
from sharingan_store.write.codecs import (
    CodecSpec,
    cast_storage,
    numpy_storage_dtype,
    storage_to_numpy,
    validate_storage_dtype,
)
from sharingan_store.write.layout import RunLayout, choose_layout
from sharingan_store.write.pyramid import (
    DEFAULT_MAX_LEVEL_SIZE,
    DEFAULT_MIN_LEVEL_SIZE,
    PyramidAccumulator,
    build_pyramid,
    create_pyramid_group,
    pyramid_factors,
    write_pyramid_levels,
)

__all__ = ["RunWriter", "choose_layout"]

_STOP = object()

#: Host bytes of blocks waiting for the writer threads, at most (one block always fits).
DEFAULT_QUEUE_BYTES = 128 * 2**20


def _task_bytes(task: Any) -> int:
    host = getattr(task, "host", None)
    return int(host.numel() * host.element_size()) if host is not None else 0
_QUERY_COORDS = (schema.QUERY_TOKEN, schema.CHAR_START, schema.CHAR_END, schema.SENTENCE_ID,
                 schema.PARAGRAPH_ID)


@dataclass
class _Task:
    kind: str  # "attn" | "pyramid"
    layer_pos: int
    head_positions: list[int]
    q0: int = 0
    q1: int = 0
    kend: int = 0
    host: torch.Tensor | None = None
    event: Any = None
    device_ref: torch.Tensor | None = None  # keeps the device source alive until the copy is done
    levels: dict[int, tuple[np.ndarray, np.ndarray]] | None = None


class RunWriter:
    """Streaming writer of one run; build it with :meth:`create` (or :meth:`resume`).

    Use it as a context manager: a clean exit calls :meth:`close`, an exception :meth:`fail`.
    """

    def __init__(self, run_group: zarr.Group, *, layout: RunLayout, storage_dtype: str,
                 codec: CodecSpec, causal: bool, num_threads: int = 2, queue_size: int = 4,
                 pyramid_factors_: Sequence[int] | None = None, resumed: bool = False,
                 queue_bytes: int = DEFAULT_QUEUE_BYTES) -> None:
        if num_threads < 1 or queue_size < 1:
            raise ValueError(f"num_threads and queue_size must be >= 1, got {num_threads}, {queue_size}")
        self.group = run_group
        self.layout = layout
        self.storage_dtype = storage_dtype
        self.codec = codec
        self.causal = causal
        # the array config is runtime-only (not persisted): reapply it on every open, so
        # zarr skips its slow all-equal-to-fill check (we skip empty chunks ourselves)
        self._att = run_group[schema.ATTENTION].with_config({"write_empty_chunks": True})
        self._progress = run_group[f"{PROGRESS_GROUP}/{PROGRESS_ARRAY}"]
        self.num_layers, self.num_heads = self._att.shape[0], self._att.shape[1]
        self._progress_lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._queue_bytes = int(queue_bytes)
        self._queued_bytes = 0
        self._bytes_cond = threading.Condition()
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._closed = False
        self._resumed = resumed
        self._factors = list(pyramid_factors_) if pyramid_factors_ is not None else None
        self._pyramid_group = (run_group[schema.PYRAMID_GROUP]
                               if self._factors is not None and not resumed else None)
        self._acc: dict[tuple[int, tuple[int, ...]], PyramidAccumulator] = {}
        self._threads = [threading.Thread(target=self._work, name=f"sharingan-writer-{i}", daemon=True)
                         for i in range(num_threads)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        root: zarr.Group,
        run_id: str,
        *,
        layers: Sequence[int],
        heads: Sequence[int],
        token_ids: np.ndarray,
        query_tokens: Sequence[str],
        char_start: np.ndarray,
        char_end: np.ndarray,
        sentence_id: np.ndarray,
        paragraph_id: np.ndarray,
        layout: RunLayout,
        causal: bool,
        attrs: Mapping[str, Any],
        storage_dtype: str = "float16",
        codec: CodecSpec = CodecSpec(),
        num_threads: int = 2,
        queue_size: int = 4,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        pyramid: bool = False,
        max_level_size: int = DEFAULT_MAX_LEVEL_SIZE,
        min_level_size: int = DEFAULT_MIN_LEVEL_SIZE,
        overwrite: bool = False,
    ) -> RunWriter:
        """Create ``runs/<run_id>`` (status ``writing``) and start the writer threads.

        Parameters
        ----------
        root
            The store's root group.
        run_id
            Id of the new run (``schema.run_path(run_id)``).
        layers, heads
            The model's own layer/head indices (coordinates); ``submit`` takes positions.
        token_ids, query_tokens, char_start, char_end, sentence_id, paragraph_id
            Per-token arrays of length ``layout.seq_len``.
        layout
            From :func:`choose_layout`.
        causal
            Skip chunks wholly above the diagonal.
        attrs
            JSON-able run attrs (provenance); ``status`` is added.
        storage_dtype
            ``"float16"``, ``"float32"`` or ``"bfloat16"`` (stored as uint16 bits).
        codec
            Compression.
        num_threads, queue_size, queue_bytes
            Writer threads and the bounds of the block queue, in blocks and in host bytes
            (``submit`` blocks when either is reached; one block always fits).
        pyramid, max_level_size, min_level_size
            Also write the multiscale pyramid (see :mod:`sharingan_store.write.pyramid`).
        overwrite
            Replace an existing run of that id; otherwise :class:`RunExistsError`.
        """
        validate_storage_dtype(storage_dtype)
        codec.check_storage_dtype(storage_dtype)
        n = layout.seq_len
        per_token = {schema.TOKEN_ID: token_ids, schema.QUERY_TOKEN: query_tokens,
                     schema.CHAR_START: char_start, schema.CHAR_END: char_end,
                     schema.SENTENCE_ID: sentence_id, schema.PARAGRAPH_ID: paragraph_id}
        for name, v in per_token.items():
            if len(v) != n:
                raise ValueError(f"{name} has length {len(v)}, expected seq_len={n}")
        if len(layers) == 0 or len(heads) == 0:
            raise ValueError("layers and heads must be non-empty")
        root = open_plain(root.store, root.path)
        path = schema.run_path(run_id)
        if path in root and not overwrite:
            raise RunExistsError(f"run {run_id!r} already exists; pass overwrite=True to replace it")
        run_attrs = dict(attrs)
        run_attrs[schema.STATUS] = schema.STATUS_WRITING
        g = root.require_group(schema.RUNS_GROUP).create_group(run_id, overwrite=True,
                                                               attributes=run_attrs)
        coords_attr = " ".join(_QUERY_COORDS + (schema.KEY_TOKEN,))
        write_info = {"layout": layout.to_dict(), "codec": codec.to_dict(), "causal": bool(causal)}
        g.create_array(
            schema.ATTENTION, shape=(len(layers), len(heads), n, n),
            dtype=numpy_storage_dtype(storage_dtype), chunks=layout.chunks, shards=layout.shards,
            fill_value=0, dimension_names=list(schema.DIMS),
            config={"write_empty_chunks": True},
            attributes={schema.STORAGE_DTYPE_ATTR: storage_dtype, "coordinates": coords_attr,
                        WRITE_ATTR: write_info},
            **codec.pipeline(storage_dtype),
        )
        g.create_array(schema.TOKEN_ID, data=np.asarray(token_ids, dtype=np.int32),
                       dimension_names=[schema.QUERY], attributes={"coordinates": coords_attr},
                       compressors=checked_compressors())
        create_coord(g, schema.LAYER, schema.LAYER, np.asarray(layers, dtype=np.int64))
        create_coord(g, schema.HEAD, schema.HEAD, np.asarray(heads, dtype=np.int64))
        create_coord(g, schema.QUERY, schema.QUERY, np.arange(n, dtype=np.int64))
        create_coord(g, schema.KEY, schema.KEY, np.arange(n, dtype=np.int64))
        create_coord(g, schema.QUERY_TOKEN, schema.QUERY, np.asarray(query_tokens, dtype=str))
        create_coord(g, schema.KEY_TOKEN, schema.KEY, np.asarray(query_tokens, dtype=str))
        for name in (schema.CHAR_START, schema.CHAR_END, schema.SENTENCE_ID, schema.PARAGRAPH_ID):
            create_coord(g, name, schema.QUERY, np.asarray(per_token[name], dtype=np.int32))
        pg = g.create_group(PROGRESS_GROUP)
        pg.create_array(PROGRESS_ARRAY, shape=(len(layers), len(heads), layout.num_q_blocks),
                        dtype="uint8", chunks=(1, len(heads), layout.num_q_blocks), fill_value=0,
                        dimension_names=[schema.LAYER, schema.HEAD, "q_block"],
                        compressors=checked_compressors())
        factors = None
        if pyramid:
            factors = pyramid_factors(n, max_level_size, min_level_size)
            create_pyramid_group(g, factors, name=run_id)
        return cls(g, layout=layout, storage_dtype=storage_dtype, codec=codec, causal=causal,
                   num_threads=num_threads, queue_size=queue_size, pyramid_factors_=factors,
                   queue_bytes=queue_bytes)

    @classmethod
    def resume(cls, root: zarr.Group, run_id: str, *, num_threads: int = 2, queue_size: int = 4,
               pyramid: bool | None = None) -> RunWriter:
        """Reopen an interrupted run (status ``writing``/``failed``) to finish it.

        Skip blocks for which :meth:`is_written` is true and submit the others. The pyramid
        (when the run has one, or ``pyramid=True``) is rebuilt from disk in :meth:`close`.
        """
        g = open_plain(root.store, f"{root.path}/{schema.run_path(run_id)}".strip("/"))
        att = g[schema.ATTENTION]
        info = att.attrs[WRITE_ATTR]
        factors: list[int] | None = None
        if schema.PYRAMID_GROUP in g and pyramid is not False:
            factors = [int(d["factor"]) for d in g[schema.PYRAMID_GROUP].attrs[MULTISCALES_ATTR][0]["datasets"]]
        elif pyramid:
            factors = pyramid_factors(int(att.shape[2]))
        g.attrs[schema.STATUS] = schema.STATUS_WRITING
        return cls(g, layout=RunLayout.from_dict(info["layout"]),
                   storage_dtype=att.attrs[schema.STORAGE_DTYPE_ATTR],
                   codec=CodecSpec.from_dict(info["codec"]), causal=bool(info["causal"]),
                   num_threads=num_threads, queue_size=queue_size,
                   pyramid_factors_=factors, resumed=True)

    # ------------------------------------------------------------------ progress
    def q_block_index(self, q0: int) -> int:
        """Index of the query block starting at row ``q0``."""
        return q0 // self.layout.block_rows

    def is_written(self, layer_pos: int, head_pos: int | slice | Sequence[int], q0: int) -> bool:
        """Whether the block (every head in ``head_pos``) starting at ``q0`` is on disk."""
        heads = self._head_positions(head_pos)
        with self._progress_lock:
            row = np.asarray(self._progress[layer_pos, :, self.q_block_index(q0)])
        return bool(all(row[h] for h in heads))

    def pending_blocks(self) -> list[tuple[int, int, int, int]]:
        """``(layer_pos, head_pos, q0, q1)`` of every block not yet on disk."""
        with self._progress_lock:
            done = np.asarray(self._progress[:])
        blocks = self.layout.q_blocks()
        return [(lp, hp, *blocks[b]) for lp, hp, b in zip(*np.nonzero(done == 0))]

    # ------------------------------------------------------------------ writing
    def _head_positions(self, head_pos: int | slice | Sequence[int]) -> list[int]:
        if isinstance(head_pos, slice):
            return list(range(self.num_heads))[head_pos]
        if isinstance(head_pos, (int, np.integer)):
            return [int(head_pos)]
        out = [int(h) for h in head_pos]
        if any(not 0 <= h < self.num_heads for h in out) or len(set(out)) != len(out):
            raise ValueError(f"head positions {out} must be distinct and in [0, {self.num_heads})")
        return out

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, layer_pos: int, head_pos: int | slice | Sequence[int], q0: int, q1: int,
               block: torch.Tensor) -> None:
        """Queue rows ``[q0, q1)`` of heads ``head_pos`` of layer position ``layer_pos``.

        Parameters
        ----------
        layer_pos, head_pos
            Positions along the ``layer``/``head`` dims (not model indices).
        q0, q1
            One whole block of ``layout.q_blocks()`` (rows ``[i*block_rows, min((i+1)*block_rows, N))``).
        block
            ``[len(heads), q1 - q0, seq_len]`` probabilities, on any device. For causal runs
            it may be narrower (width ``>= q1``): the keys after it are zeros. It may be
            reused by the caller as soon as ``submit`` returns.

        Blocks when the queue is full; raises the first writer-thread error.
        """
        self._raise_if_failed()
        if self._closed:
            raise RuntimeError("RunWriter is closed")
        if not 0 <= layer_pos < self.num_layers:
            raise ValueError(f"layer_pos {layer_pos} out of range [0, {self.num_layers})")
        heads = self._head_positions(head_pos)
        self.layout.check_block(q0, q1)
        n = self.layout.seq_len
        width = block.shape[-1] if block.ndim == 3 else -1
        narrow_ok = self.causal and q1 <= width <= n
        if tuple(block.shape[:2]) != (len(heads), q1 - q0) or block.ndim != 3 or not (width == n or narrow_ok):
            raise ValueError(
                f"block has shape {tuple(block.shape)}, expected {(len(heads), q1 - q0, n)}"
                + (f" (or a width in [{q1}, {n}] for this causal run)" if self.causal else "")
            )
        kend = self.layout.key_end(q1, self.causal)
        with torch.inference_mode():
            stored = cast_storage(block[..., :kend], self.storage_dtype, self.codec.keepbits)
            if stored.shape[-1] < kend:  # a narrow causal block: the keys after it are exact zeros
                stored = torch.nn.functional.pad(stored, (0, kend - stored.shape[-1]))
            if self._factors is not None and not self._resumed:
                self._pool(layer_pos, heads, q0, q1, stored, kend)
            task = _Task("attn", layer_pos, heads, q0, q1, kend)
            if stored.device.type == "cuda":
                host = torch.empty(stored.shape, dtype=stored.dtype, pin_memory=True)
                host.copy_(stored, non_blocking=True)
                task.event = torch.cuda.Event()
                task.event.record()
                task.device_ref = stored
            else:
                host = stored if stored.data_ptr() != block.data_ptr() else stored.clone()
                host = host.contiguous()
            task.host = host
        self._put(task)

    def _pool(self, layer_pos: int, heads: list[int], q0: int, q1: int, stored: torch.Tensor,
              kend: int) -> None:
        key = (layer_pos, tuple(heads))
        acc = self._acc.get(key)
        if acc is None:
            acc = self._acc[key] = PyramidAccumulator(self.layout.seq_len, self._factors or [],
                                                      len(heads), device=stored.device)
        if acc.add(q0, q1, stored, kend):
            del self._acc[key]
            if self._factors:
                self._put(_Task("pyramid", layer_pos, heads, levels=acc.result()))

    def _put(self, task: _Task) -> None:
        nbytes = _task_bytes(task)
        with self._bytes_cond:  # bound the queued bytes too, not only the number of blocks
            while self._queued_bytes and self._queued_bytes + nbytes > self._queue_bytes:
                self._raise_if_failed()
                self._bytes_cond.wait(timeout=0.1)
            self._queued_bytes += nbytes
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(task, timeout=0.1)
                return
            except queue.Full:
                continue

    def _release(self, task: Any) -> None:
        if task is _STOP:
            return
        with self._bytes_cond:
            self._queued_bytes -= _task_bytes(task)
            self._bytes_cond.notify_all()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            try:
                if task is _STOP:
                    return
                if self._abort.is_set() or self._error is not None:
                    continue
                self._run(task)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                if self._error is None:
                    self._error = exc
            finally:
                self._release(task)
                self._queue.task_done()

    def _run(self, task: _Task) -> None:
        if task.kind == "pyramid":
            assert self._pyramid_group is not None and task.levels is not None
            write_pyramid_levels(self._pyramid_group, task.layer_pos, task.head_positions, task.levels)
            return
        if task.event is not None:
            task.event.synchronize()
        data = storage_to_numpy(task.host, self.storage_dtype)
        for start, stop, off in contiguous_runs(task.head_positions):
            heads = data[off:off + stop - start]
            for r0, r1, kend in self._row_bands(task.q0, task.q1, task.kend):
                self._att[task.layer_pos, start:stop, r0:r1, :kend] = heads[:, r0 - task.q0:r1 - task.q0, :kend]
        b = self.q_block_index(task.q0)
        with self._progress_lock:
            row = np.asarray(self._progress[task.layer_pos, :, b])
            row[task.head_positions] = 1
            self._progress[task.layer_pos, :, b] = row

    def _row_bands(self, q0: int, q1: int, kend: int) -> list[tuple[int, int, int]]:
        """``(r0, r1, keys)`` writes covering rows ``[q0, q1)``.

        Unsharded causal runs write each chunk row only up to its own diagonal chunk, so no
        chunk wholly above the diagonal is ever handed to zarr (``write_empty_chunks=True``
        would store it). Sharded runs write the block in one call: a shard is one query
        block, and splitting it would read-modify-write the shard.
        """
        if not self.causal or self.layout.shard:
            return [(q0, q1, kend)]
        c = self.layout.chunk
        return [(r0, min(r0 + c, q1), self.layout.row_key_end(r0 // c, True)) for r0 in range(q0, q1, c)]

    def flush(self) -> None:
        """Block until every submitted block is on disk; raise the first writer-thread error."""
        self._queue.join()
        self._raise_if_failed()

    # ------------------------------------------------------------------ finishing
    def _stop_threads(self) -> None:
        for _ in self._threads:
            while True:
                try:
                    self._queue.put(_STOP, timeout=0.1)
                    break
                except queue.Full:
                    if not any(t.is_alive() for t in self._threads):
                        break
        for t in self._threads:
            t.join()

    def close(self) -> None:
        """Drain the queue, write the pyramid, consolidate, then set status ``complete``.

        Raises the first writer-thread error (after marking the run ``failed``).
        """
        if self._closed:
            return
        self._closed = True
        self._stop_threads()
        if self._error is not None:
            self._set_status(schema.STATUS_FAILED)
            raise self._error
        try:
            if self._acc and self._factors:
                missing = sorted(self._acc)
                raise RuntimeError(f"pyramid incomplete for (layer_pos, heads) {missing}: not all rows were submitted")
            if self._resumed and self._factors is not None:
                build_pyramid(self.group, factors=self._factors)
            consolidate(self.group)
        except BaseException:
            self._set_status(schema.STATUS_FAILED)
            raise
        self._set_status(schema.STATUS_COMPLETE)

    def fail(self, exc: BaseException | None = None) -> None:
        """Stop the writer threads (dropping queued blocks) and set status ``failed``."""
        self._abort.set()
        if not self._closed:
            self._closed = True
            self._stop_threads()
        self._set_status(schema.STATUS_FAILED)

    def _set_status(self, status: str) -> None:
        self.group.attrs[schema.STATUS] = status
        try:
            refresh_root_index(self.group)
        except Exception:  # noqa: BLE001 - the run's own zarr.json is the authority
            pass

    @property
    def status(self) -> str:
        """The run's current status attr."""
        return str(open_plain(self.group.store, self.group.path, mode="r").attrs[schema.STATUS])

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self.fail(exc)
