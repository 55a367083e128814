"""Moving stored objects: copying a run between stores (zip archives too), deleting, sizes.

Runs are copied as raw store objects (chunk files, shards, ``zarr.json``), unchanged: same
codecs, same checksums, no decode/encode, bounded memory (a few objects in flight).

Examples
--------
>>> import zarr
>>> store = zarr.storage.MemoryStore()
>>> _ = zarr.open_group(store, path="runs/a", mode="w")
>>> sorted(list_keys(store, "runs/a/"))
['runs/a/zarr.json']
"""

from __future__ import annotations

import asyncio
import os
import warnings
from typing import Any

import zarr

from sharingan_store import schema
from sharingan_store.errors import FormatError, ReadOnlyError, RunExistsError

__all__ = ["copy_run", "delete_prefix", "list_keys", "refresh_index", "stored_bytes"]

#: Stored objects copied concurrently (bounds memory to this many chunks/shards).
COPY_CONCURRENCY = 8


def _sync(coro: Any) -> Any:
    from zarr.core.sync import sync

    return sync(coro)


def list_keys(zstore: Any, prefix: str) -> list[str]:
    """Every key under ``prefix`` (which should end in ``/``)."""

    async def collect() -> list[str]:
        return [k async for k in zstore.list_prefix(prefix)]

    return _sync(collect())


def stored_bytes(zstore: Any, prefix: str) -> int:
    """Bytes stored under ``prefix`` (0 when the backend cannot tell)."""
    root = getattr(zstore, "root", None)
    if isinstance(zstore, zarr.storage.LocalStore) and root is not None:
        total = 0
        for dirpath, _, files in os.walk(os.path.join(str(root), prefix)):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, f))
                except OSError:
                    pass
        return total
    if isinstance(zstore, zarr.storage.ZipStore):
        zf = getattr(zstore, "_zf", None)
        if zf is not None:
            return sum(i.compress_size for i in zf.infolist() if i.filename.startswith(prefix))
    try:
        return int(_sync(zstore.getsize_prefix(prefix.rstrip("/"))))
    except Exception:  # noqa: BLE001 - size is informative only
        return 0


def delete_prefix(zstore: Any, prefix: str) -> None:
    """Remove every key under ``prefix``."""
    if not getattr(zstore, "supports_deletes", True):
        raise ReadOnlyError(f"{type(zstore).__name__} does not support deleting (zip archives are append-only)")
    _sync(zstore.delete_dir(prefix.rstrip("/")))


def remove_partial_writes(zstore: Any, prefix: str) -> int:
    """Delete leftovers of interrupted atomic writes (``*.partial`` temporary files) under ``prefix``.

    A process killed while zarr writes a chunk can leave its temporary file behind; the
    chunk itself is missing and is written again by a resumed extraction. Returns how many
    were removed.
    """
    stale = [key for key in list_keys(zstore, prefix) if key.endswith(".partial")]
    for key in stale:
        _sync(zstore.delete(key))
    return len(stale)


def refresh_index(zstore: Any) -> None:
    """Re-consolidate the store root's metadata (the index ``xr.open_zarr`` reads), when it has one."""
    from sharingan_store.write._util import consolidate

    root = zarr.open_group(zstore, mode="r+", use_consolidated=False, zarr_format=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zip archives: the newer root zarr.json entry wins
        consolidate(root)


def copy_run(src: Any, run: str, dest: Any, dest_run: str, *, overwrite: bool = False,
             storage_options: dict[str, Any] | None = None) -> str:
    """Copy run ``run`` of catalog ``src`` into ``dest`` as ``dest_run``; returns the destination URL.

    See :meth:`sharingan_store.store.catalog.Catalog.copy`.
    """
    from sharingan_store.store.backend import normalize_url
    from sharingan_store.store.catalog import Catalog

    owned = False
    if isinstance(dest, Catalog):
        target = dest
    else:
        url = normalize_url(dest)
        if url == src.url:
            target = src
        else:
            target = Catalog(url, mode="a", storage_options=storage_options)
            owned = True
    try:
        if target is src and dest_run == run:
            raise ValueError(f"copying run {run!r} onto itself: give another dest_run or another store")
        target._require_writable(f"copy run {run!r} into it")
        is_zip = not getattr(target._zstore, "supports_deletes", True)
        dst_prefix = schema.run_path(dest_run) + "/"
        if dest_run in target.run_ids():
            if not overwrite:
                raise RunExistsError(f"run {dest_run!r} already exists in {target.url}; pass overwrite=True to replace it")
            if is_zip:
                raise FormatError(f"{target.url} is a zip archive (append-only): cannot overwrite run {dest_run!r}")
            target.delete(dest_run)
        elif not is_zip and list_keys(target._zstore, dst_prefix):
            delete_prefix(target._zstore, dst_prefix)  # leftovers of an interrupted copy or delete
        src_prefix = schema.run_path(run) + "/"
        keys = list_keys(src._zstore, src_prefix)
        marker = src_prefix + "zarr.json"
        if marker not in keys:
            raise FormatError(f"run {run!r} in {src.url} has no zarr.json")
        body = sorted(k for k in keys if k != marker)
        _sync(_copy_keys(src._zstore, target._zstore, body, src_prefix, dst_prefix))
        _sync(_copy_keys(src._zstore, target._zstore, [marker], src_prefix, dst_prefix))  # the run appears last
        refresh_index(target._zstore)
        return target.url
    finally:
        if owned:
            target.close()


async def _copy_keys(src: Any, dst: Any, keys: list[str], src_prefix: str, dst_prefix: str) -> None:
    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()
    sem = asyncio.Semaphore(COPY_CONCURRENCY)

    async def one(key: str) -> None:
        async with sem:
            buf = await src.get(key, prototype=proto)
            if buf is None:  # removed meanwhile: copying is from a complete run, so this is a bug upstream
                raise FormatError(f"{key} vanished from the source store during the copy")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # zipfile's duplicate-name warning
                await dst.set(dst_prefix + key[len(src_prefix):], buf)

    await asyncio.gather(*(one(k) for k in keys))
