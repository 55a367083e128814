"""Opening a stored run as a lazy ``xr.Dataset`` (format v1), with bfloat16 decoded.

Examples
--------
>>> dask_chunks(16384, 512)
{'layer': 1, 'head': 1, 'query': 1024, 'key': 1024}
"""

from __future__ import annotations

import warnings
from typing import Any

import xarray as xr
import zarr
from dask.base import tokenize

from sharingan_store import schema
from sharingan_store.errors import FormatError, IntegrityError
from sharingan_store.store.backend import read_mode
from sharingan_store.store.integrity import checked_dask_array

__all__ = ["REQUIRED_VARIABLES", "checked_dataset", "dask_chunks", "open_run_dataset"]

#: Arrays every format v1 run must have.
REQUIRED_VARIABLES = (
    schema.ATTENTION, schema.TOKEN_ID, schema.LAYER, schema.HEAD, schema.QUERY, schema.KEY,
    schema.QUERY_TOKEN, schema.KEY_TOKEN, schema.CHAR_START, schema.CHAR_END,
)

#: Dask chunks per (layer, head) slice stay under about this many along each axis.
_MAX_CHUNKS_PER_AXIS = 16


def dask_chunks(seq_len: int, zarr_chunk: int) -> dict[str, int]:
    """Dask chunks for a run: whole zarr chunks, at most ~16 per axis per head so graphs stay small."""
    per = zarr_chunk
    while -(-seq_len // per) > _MAX_CHUNKS_PER_AXIS:
        per *= 2
    return {schema.LAYER: 1, schema.HEAD: 1, schema.QUERY: per, schema.KEY: per}


def _open_raw(zstore: Any, path: str, consolidated: bool | None) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated metadata")
        if consolidated is not False:
            try:
                return xr.open_zarr(zstore, group=path, chunks=None, consolidated=consolidated,
                                    mask_and_scale=False)
            except KeyError:  # the store's root index predates this run (e.g. a writer was killed)
                pass
        return xr.open_zarr(zstore, group=path, chunks=None, consolidated=False, mask_and_scale=False)


def open_run_dataset(zstore: Any, path: str, *, chunks: Any = "auto", name: str | None = None,
                     token: str | None = None, consolidated: bool | None = None) -> xr.Dataset:
    """Open the run group at ``path`` of ``zstore`` lazily; validate it; decode bfloat16.

    ``chunks="auto"`` uses :func:`dask_chunks`; any other value is a dask ``chunks``
    argument for the ``attention`` array. Chunk reads go through
    :class:`~sharingan_store.store.integrity.CheckedArray`, so a corrupted chunk raises
    :class:`~sharingan_store.errors.IntegrityError` instead of returning garbage.
    ``consolidated=False`` reads each array's own metadata (for runs still being written,
    whose consolidated index is stale or absent).
    """
    label = name or path
    try:
        raw = _open_raw(zstore, path, consolidated)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"run {label!r} cannot be opened as format v1: {exc}") from exc
    missing = [v for v in REQUIRED_VARIABLES if v not in raw.variables]
    if missing:
        raise FormatError(f"run {label!r} is malformed: missing array(s) {', '.join(missing)}")
    att = raw[schema.ATTENTION]
    if att.dims != schema.DIMS:
        raise FormatError(f"run {label!r}: attention has dims {att.dims}, expected {schema.DIMS}")
    try:
        zarr_att = zarr.open_array(zstore, path=f"{path}/{schema.ATTENTION}", mode=read_mode(zstore))
    except Exception as exc:  # noqa: BLE001 - any failure to read the array metadata is a format problem
        raise FormatError(f"run {label!r}: cannot open its attention array: {exc}") from exc
    if chunks == "auto":
        chunks = dask_chunks(att.sizes[schema.QUERY], int(zarr_att.chunks[2]))
    if isinstance(chunks, dict):
        chunks = tuple(chunks.get(d, -1) for d in schema.DIMS)
    # per-token arrays are small: load them; only the attention stays lazy (dask, chunk-aligned)
    try:
        ds = raw.drop_vars([schema.ATTENTION]).load()
    except Exception as exc:  # noqa: BLE001
        raise IntegrityError(f"run {label!r}: cannot read its coordinate arrays: {exc}") from exc
    data = checked_dask_array(zarr_att, chunks, run=label, name=schema.ATTENTION,
                              token=tokenize(str(zstore), path, token))
    ds[schema.ATTENTION] = xr.Variable(att.dims, data, attrs=dict(att.attrs))
    storage = ds[schema.ATTENTION].attrs.get(schema.STORAGE_DTYPE_ATTR, str(ds[schema.ATTENTION].dtype))
    if storage == "bfloat16":
        from sharingan_store.write.codecs import decode_storage

        decoded = decode_storage(ds[schema.ATTENTION].data, "bfloat16")
        ds[schema.ATTENTION] = ds[schema.ATTENTION].copy(data=decoded)
    coords = [c for c in (schema.TOKEN_ID, schema.CHAR_START, schema.CHAR_END, schema.SENTENCE_ID,
                          schema.PARAGRAPH_ID, schema.QUERY_TOKEN, schema.KEY_TOKEN) if c in ds.variables]
    ds = ds.set_coords(coords)
    if name is not None:
        ds.attrs.setdefault("run", name)
    return ds


def checked_dataset(ds: xr.Dataset, zstore: Any, group_path: str, *, run: str, token: str | None = None) -> xr.Dataset:
    """``ds`` (opened lazily from ``group_path``) with each dask data variable read through checked chunks.

    Used for pyramid levels, so corrupted pyramid chunks raise :class:`IntegrityError` too.
    """
    out = ds.copy()
    for var_name, var in ds.data_vars.items():
        chunks = var.chunks
        if chunks is None:
            continue
        try:
            arr = zarr.open_array(zstore, path=f"{group_path}/{var_name}", mode=read_mode(zstore))
        except Exception:  # noqa: BLE001 - leave it as xarray opened it
            continue
        rel = group_path.split("/", 2)[-1] if group_path.startswith(schema.RUNS_GROUP + "/") else group_path
        data = checked_dask_array(arr, chunks, run=run, name=f"{rel}/{var_name}",
                                  token=tokenize(str(zstore), group_path, var_name, token))
        out[var_name] = xr.Variable(var.dims, data, attrs=dict(var.attrs))
    return out
