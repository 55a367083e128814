"""Opening a stored run as a lazy ``xr.Dataset`` (format v1), with bfloat16 decoded.

Examples
--------
>>> dask_chunks(16384, 512)
{'layer': 1, 'head': 1, 'query': 1024, 'key': 1024}
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from sharingan_store import schema
from sharingan_store.errors import FormatError

__all__ = ["REQUIRED_VARIABLES", "dask_chunks", "open_run_dataset"]

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


def open_run_dataset(zstore: Any, path: str, *, chunks: Any = "auto", name: str | None = None) -> xr.Dataset:
    """Open the run group at ``path`` of ``zstore`` lazily; validate it; decode bfloat16.

    ``chunks="auto"`` uses :func:`dask_chunks`; any other value is passed to
    ``xr.open_zarr``.
    """
    try:
        raw = xr.open_zarr(zstore, group=path, chunks=None, consolidated=None, mask_and_scale=False)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise FormatError(f"run {name or path!r} cannot be opened as format v1: {exc}") from exc
    missing = [v for v in REQUIRED_VARIABLES if v not in raw.variables]
    if missing:
        raise FormatError(f"run {name or path!r} is malformed: missing array(s) {', '.join(missing)}")
    att = raw[schema.ATTENTION]
    if att.dims != schema.DIMS:
        raise FormatError(f"run {name or path!r}: attention has dims {att.dims}, expected {schema.DIMS}")
    if chunks == "auto":
        zchunk = att.encoding.get("preferred_chunks", {}).get(schema.QUERY) or att.encoding.get("chunks", (1, 1, 512))[2]
        chunks = dask_chunks(att.sizes[schema.QUERY], int(zchunk))
    # per-token arrays are small: load them; only the attention stays lazy (dask, chunk-aligned)
    ds = raw.drop_vars([schema.ATTENTION]).load()
    ds[schema.ATTENTION] = raw[schema.ATTENTION].chunk(chunks)
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
