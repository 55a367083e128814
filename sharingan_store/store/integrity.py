"""Integrity: checked chunk reads (corruption raises :class:`IntegrityError`) and ``verify``.

Every attention chunk carries a crc32c checksum (DESIGN.md §3); zarr raises a plain
``ValueError`` when it does not match. Here reads go through :class:`CheckedArray`, which
turns any decoding failure into an :class:`~sharingan_store.errors.IntegrityError` naming
the run, the array and the chunk key, so corrupted bytes are never returned as data.

:func:`verify_runs` reads every chunk (every shard when sharded) of every array of the
runs, one dask task per storage chunk on the threaded scheduler, and collects the bad
ones in a :class:`VerifyReport`.

Examples
--------
>>> import numpy as np, zarr
>>> arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 4), chunks=(2, 2), dtype="f4")
>>> storage_chunk_shape(arr), list(iter_storage_chunks(arr))[:2]
((2, 2), [((0, 0), (slice(0, 2, None), slice(0, 2, None))), ((0, 1), (slice(0, 2, None), slice(2, 4, None)))])
>>> str(VerifyReport(checked={"runs": 1, "arrays": 1, "chunks": 4, "bytes": 64}))
'ok: 1 run(s), 1 array(s), 4 chunk(s), 64 B checked, no bad chunks'
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

import numpy as np
import zarr

from sharingan_store import schema
from sharingan_store.errors import IntegrityError
from sharingan_store.store.backend import read_mode
from sharingan_store.write.layout import RunLayout

__all__ = [
    "BadChunk",
    "CheckedArray",
    "VerifyReport",
    "chunk_key",
    "checked_dask_array",
    "iter_storage_chunks",
    "storage_chunk_shape",
    "verify_arrays",
]

_WRITE_ATTR = "sharingan_write"  # spelled in sharingan_store.write._util.WRITE_ATTR too


class BadChunk(NamedTuple):
    """One chunk that failed verification."""

    run: str
    array: str
    chunk: str
    reason: str


@dataclass
class VerifyReport:
    """What :meth:`Catalog.verify` found.

    Attributes
    ----------
    bad_chunks
        ``(run, array, chunk key, reason)`` of every chunk that failed (empty when ok).
    checked
        Counts: ``runs``, ``arrays``, ``chunks`` (storage chunks/shards read), ``bytes``
        (decoded bytes read).
    seconds
        Wall time of the check.
    """

    bad_chunks: list[BadChunk] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: {"runs": 0, "arrays": 0, "chunks": 0, "bytes": 0})
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no chunk failed."""
        return not self.bad_chunks

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        c = self.checked
        head = (f"{c.get('runs', 0)} run(s), {c.get('arrays', 0)} array(s), {c.get('chunks', 0)} chunk(s), "
                f"{_human(c.get('bytes', 0))} checked")
        if self.ok:
            return f"ok: {head}, no bad chunks"
        lines = [f"CORRUPTED: {head}, {len(self.bad_chunks)} bad chunk(s):"]
        lines += [f"  {b.run}: {b.array} chunk {b.chunk}: {b.reason}" for b in self.bad_chunks]
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


# ---------------------------------------------------------------------- chunk grid
def storage_chunk_shape(arr: zarr.Array) -> tuple[int, ...]:
    """Shape of one stored object: the shard when sharded, else the chunk."""
    return tuple(arr.shards or arr.chunks)


def chunk_key(arr: zarr.Array, coords: tuple[int, ...]) -> str:
    """The store key (relative to the array) of the storage chunk at ``coords``, e.g. ``c/0/1/2/3``."""
    return str(arr.metadata.encode_chunk_key(tuple(int(c) for c in coords)))


def _grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.ceil(s / c) if s else 0 for s, c in zip(shape, chunks))


def _region(coords: tuple[int, ...], chunks: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(coords, chunks, shape))


def iter_storage_chunks(arr: zarr.Array) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """``(coords, region)`` of every storage chunk (shard) of ``arr``, in C order."""
    chunks = storage_chunk_shape(arr)
    if arr.ndim == 0:
        yield (), ()
        return
    for coords in itertools.product(*(range(g) for g in _grid(arr.shape, chunks))):
        yield coords, _region(coords, chunks, arr.shape)


def _inner_chunks(arr: zarr.Array, region: tuple[slice, ...]) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Inner (read) chunks of ``arr`` intersecting ``region``."""
    chunks = tuple(arr.chunks)
    ranges = [range(r.start // c, math.ceil(r.stop / c)) for r, c in zip(region, chunks)]
    for coords in itertools.product(*ranges):
        yield coords, _region(coords, chunks, arr.shape)


def _describe_chunk(arr: zarr.Array, inner: tuple[int, ...]) -> str:
    """Key of the stored object holding inner chunk ``inner`` (plus the inner index when sharded)."""
    if arr.shards is None:
        return chunk_key(arr, inner)
    ratio = [s // c for s, c in zip(arr.shards, arr.chunks)]
    shard = tuple(i // r for i, r in zip(inner, ratio))
    within = tuple(i % r for i, r in zip(inner, ratio))
    return f"{chunk_key(arr, shard)} (inner chunk {'/'.join(map(str, within))})"


def _is_decode_error(exc: BaseException) -> bool:
    """Errors that mean "these bytes do not decode": not I/O, not memory, not interrupts."""
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, (MemoryError, KeyboardInterrupt, SystemExit, FileNotFoundError, PermissionError)):
        return False
    if isinstance(exc, OSError) and not isinstance(exc, EOFError):
        return False  # network/disk errors are reported as what they are
    return isinstance(exc, Exception)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300].rstrip(".")


def _read(arr: zarr.Array, region: tuple[slice, ...]) -> np.ndarray:
    out = np.asarray(arr[region])
    expected = tuple(r.stop - r.start for r in region)
    if out.shape != expected:
        raise ValueError(f"decoded shape {out.shape} != expected {expected}")
    return out


def find_bad_chunks(arr: zarr.Array, region: tuple[slice, ...]) -> list[tuple[str, str]]:
    """``(chunk description, reason)`` of the inner chunks of ``region`` that fail to decode."""
    bad = []
    for inner, sub in _inner_chunks(arr, region):
        try:
            _read(arr, sub)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _is_decode_error(exc):
                raise
            bad.append((_describe_chunk(arr, inner), _reason(exc)))
    return bad


# ---------------------------------------------------------------------- checked reads
class CheckedArray:
    """Array-like over a zarr array whose reads raise :class:`IntegrityError` on corrupted chunks.

    Used as the source of ``dask.array.from_array``: only basic (slice) indexing.
    """

    def __init__(self, arr: zarr.Array, *, run: str, name: str):
        self._arr = arr
        self.run = run
        self.name = name
        self.shape = tuple(arr.shape)
        self.dtype = np.dtype(arr.dtype.to_native_dtype() if hasattr(arr.dtype, "to_native_dtype") else arr.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return np.asarray(self._arr[key])
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _is_decode_error(exc):
                raise
            region = _normalise(key, self.shape)
            try:
                bad = find_bad_chunks(self._arr, region) if region is not None else []
            except Exception:  # noqa: BLE001 - the original error is the one to report
                bad = []
            where = (f"chunk {bad[0][0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                     if bad else f"region {key!r}")
            raise IntegrityError(
                f"run {self.run!r}: corrupted data in {self.name} {where}: {_reason(exc)}. "
                "Nothing was returned; `sharingan-store verify` lists every bad chunk"
            ) from exc

    def __repr__(self) -> str:
        return f"CheckedArray({self.run!r}/{self.name}, shape={self.shape}, dtype={self.dtype})"


def _normalise(key: Any, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    key = key if isinstance(key, tuple) else (key,)
    if len(key) > len(shape) or any(not isinstance(k, slice) for k in key):
        return None
    key = key + (slice(None),) * (len(shape) - len(key))
    out = []
    for k, n in zip(key, shape):
        start, stop, step = k.indices(n)
        if step != 1:
            return None
        out.append(slice(start, stop))
    return tuple(out)


def checked_dask_array(arr: zarr.Array, chunks: Any, *, run: str, name: str, token: str) -> Any:
    """A dask array over ``arr`` with ``chunks`` whose chunk reads raise :class:`IntegrityError`."""
    import dask.array as da

    return da.from_array(CheckedArray(arr, run=run, name=name), chunks=chunks, lock=False, asarray=False,
                         fancy=False, name=f"sharingan-{name.replace('/', '-')}-{token}", meta=np.empty((0,) * arr.ndim, dtype=arr.dtype))


# ---------------------------------------------------------------------- verify
def _expected_attention_keys(arr: zarr.Array) -> set[str] | None:
    """Keys of the attention chunks a complete run must have (causal runs skip those above the diagonal)."""
    info = arr.attrs.get(_WRITE_ATTR)
    if not isinstance(info, dict) or "layout" not in info:
        return None
    layout = RunLayout.from_dict(info["layout"])
    causal = bool(info.get("causal", True))
    keys = set()
    for coords, region in iter_storage_chunks(arr):
        if arr.shards is None and causal:
            if region[3].start >= layout.row_key_end(region[2].start // layout.chunk, causal):
                continue
        keys.add(chunk_key(arr, coords))
    return keys


def _list_keys(zstore: Any, prefix: str) -> set[str]:
    from zarr.core.sync import sync

    async def collect() -> set[str]:
        return {k async for k in zstore.list_prefix(prefix)}

    return sync(collect())


def _check_chunk(arr: zarr.Array, region: tuple[slice, ...], run: str, name: str,
                 finite: bool) -> tuple[int, list[BadChunk]]:
    try:
        data = _read(arr, region)
    except Exception as exc:  # noqa: BLE001 - classified below
        if not _is_decode_error(exc):
            raise
        bad = find_bad_chunks(arr, region) or [(f"region {region}", _reason(exc))]
        return 0, [BadChunk(run, name, key, reason) for key, reason in bad]
    if finite and data.dtype.kind == "f" and not np.isfinite(data).all():
        return data.nbytes, [BadChunk(run, name, f"region {[(r.start, r.stop) for r in region]}",
                                      "non-finite values (NaN/inf) in attention")]
    return data.nbytes, []


def verify_arrays(zstore: Any, group_path: str, run: str, *, scheduler: Any = "threads",
                  check_missing: bool = True) -> VerifyReport:
    """Verify every array under the run group ``group_path`` of ``zstore`` (see :func:`verify_runs`)."""
    import dask

    report = VerifyReport()
    report.checked["runs"] = 1
    t0 = time.perf_counter()
    try:
        group = zarr.open_group(zstore, path=group_path, mode=read_mode(zstore), use_consolidated=False)
        arrays = sorted(((path, a) for path, a in group.members(max_depth=None) if isinstance(a, zarr.Array)),
                        key=lambda pa: pa[0])
    except Exception as exc:  # noqa: BLE001 - unreadable metadata is a finding, not a crash
        if not _is_decode_error(exc):
            raise
        report.bad_chunks.append(BadChunk(run, "(metadata)", "zarr.json", _reason(exc)))
        return report
    tasks = []
    for path, arr in arrays:
        report.checked["arrays"] += 1
        if check_missing and path == schema.ATTENTION:
            expected = _expected_attention_keys(arr)
            if expected is not None:
                prefix = f"{group_path}/{path}/"
                present = {k[len(prefix):] for k in _list_keys(zstore, prefix)}
                for key in sorted(expected - present):
                    report.bad_chunks.append(BadChunk(run, path, key, "missing: a complete run must have it"))
        for _, region in iter_storage_chunks(arr):
            tasks.append(dask.delayed(_check_chunk, pure=False)(arr, region, run, path, path == schema.ATTENTION))
    results = dask.compute(*tasks, scheduler=scheduler) if tasks else ()
    for nbytes, bad in results:
        report.checked["chunks"] += 1
        report.checked["bytes"] += nbytes
        report.bad_chunks.extend(bad)
    report.seconds = time.perf_counter() - t0
    return report


def merge_reports(reports: list[VerifyReport]) -> VerifyReport:
    """One report summing ``reports``."""
    out = VerifyReport()
    for r in reports:
        out.bad_chunks.extend(r.bad_chunks)
        for k, v in r.checked.items():
            out.checked[k] = out.checked.get(k, 0) + v
        out.seconds += r.seconds
    return out
