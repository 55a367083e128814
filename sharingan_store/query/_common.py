"""Shared helpers for views and metrics: schema validation, float32 promotion, lazy coords.

Private: nothing here is part of the public API.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sharingan_store import schema

#: Attribute on the ``attention`` array naming the attention kind.
ATTENTION_KIND_ATTR = schema.ATTENTION_KIND_ATTR


def check_attention(da: object, *, square: bool = False) -> xr.DataArray:
    """Raise ``ValueError`` unless ``da`` is a DataArray with dims exactly ``schema.DIMS``."""
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray with dims {schema.DIMS}, got {type(da).__name__}")
    if tuple(da.dims) != schema.DIMS:
        raise ValueError(
            f"expected an attention DataArray with dims {schema.DIMS} (select with lists or "
            f"slices so no dim is dropped), got dims {tuple(da.dims)}"
        )
    if square and da.sizes[schema.QUERY] != da.sizes[schema.KEY]:
        raise ValueError(
            f"this operation needs a square matrix (same {schema.QUERY!r} and {schema.KEY!r} sizes), "
            f"got {da.sizes[schema.QUERY]} x {da.sizes[schema.KEY]}"
        )
    return da


def as_float32(da: xr.DataArray) -> xr.DataArray:
    """Promote to at least float32 (lazily): dask reductions over float16 overflow to NaN."""
    target = np.promote_types(da.dtype, np.float32)
    return da if da.dtype == target else da.astype(target)


def is_dask(da: xr.DataArray) -> bool:
    return da.chunks is not None


def positions(da: xr.DataArray, dim: str) -> np.ndarray:
    """Token positions of ``dim`` (its index coordinate, or ``arange`` when it has none)."""
    if dim in da.indexes:
        return np.asarray(da.indexes[dim])
    return np.arange(da.sizes[dim])


def coord_like(da: xr.DataArray, dim: str, values: np.ndarray) -> xr.DataArray:
    """A 1-D DataArray along ``dim``; dask-backed and chunked like ``da`` when ``da`` is.

    Lets ``|q - k|``-style broadcasts stay chunk-sized instead of materialising N².
    """
    if is_dask(da):
        import dask.array as dsa

        data = dsa.from_array(np.asarray(values), chunks=(da.chunksizes[dim],))
    else:
        data = np.asarray(values)
    return xr.DataArray(data, dims=(dim,), coords={dim: da[dim]} if dim in da.coords else None)


def attention_kind(da: xr.DataArray) -> str:
    """The ``attention_kind`` attribute, ``"causal"`` when absent."""
    kind = da.attrs.get(ATTENTION_KIND_ATTR, "causal")
    if kind not in schema.ATTENTION_KINDS:
        raise ValueError(f"unknown {ATTENTION_KIND_ATTR} {kind!r}; expected one of {schema.ATTENTION_KINDS}")
    return kind


def visible_keys(da: xr.DataArray) -> np.ndarray:
    """Number of keys each query can see: ``#{k : k <= q}`` causal/sliding, all keys bidirectional."""
    q = positions(da, schema.QUERY)
    k = positions(da, schema.KEY)
    if attention_kind(da) == "bidirectional":
        return np.full(q.shape, k.size, dtype=np.int64)
    return np.searchsorted(np.sort(k), q, side="right").astype(np.int64)


def seeing_queries(da: xr.DataArray) -> np.ndarray:
    """Number of queries that can see each key: ``#{q : q >= k}`` causal/sliding, all bidirectional."""
    q = positions(da, schema.QUERY)
    k = positions(da, schema.KEY)
    if attention_kind(da) == "bidirectional":
        return np.full(k.shape, q.size, dtype=np.int64)
    qs = np.sort(q)
    return (q.size - np.searchsorted(qs, k, side="left")).astype(np.int64)
