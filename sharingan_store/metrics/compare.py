"""Comparing two runs: per (layer, head) divergence or similarity of matching attention rows.

Pure functions on ``(layer, head, query, key)`` DataArrays, lazy (dask) when the inputs are.
:meth:`sharingan_store.Store.compare` opens two runs and calls :func:`compare`.

- ``metric="js"``: mean over query rows of the Jensen–Shannon divergence (natural log, so
  in ``[0, ln 2]``; 0 for identical rows) between row ``q`` of ``a`` and row ``q`` of ``b``.
- ``metric="cosine"``: mean over query rows of the cosine similarity (1 for identical rows).

Layers and heads are matched by the model's own indices (the ``layer``/``head``
coordinates); the result holds their intersection. With ``align="exact"`` both runs must
hold the same token ids; ``align="truncate"`` compares the first ``min(N_a, N_b)`` tokens
(queries and keys), renormalising each truncated row to sum to 1 (a no-op for causal runs,
whose rows never reach past the query, except for storage rounding). Rows are reduced in
float32, chunk by chunk.

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> a = synthetic_attention(num_layers=2, num_heads=2, seq_len=16, seed=0)
>>> float(compare(a, a, "js").max()), round(float(compare(a, a, "cosine").min()), 5)
(0.0, 1.0)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sharingan_store import schema

__all__ = ["COMPARE_METRICS", "ALIGN_MODES", "compare", "cosine_similarity", "js_divergence"]

COMPARE_METRICS = ("js", "cosine")
ALIGN_MODES = ("exact", "truncate")

_TINY = np.finfo(np.float32).tiny


def _plain(da: xr.DataArray) -> xr.DataArray:
    """Only the four dims, float32, with just the layer/head coordinates (no token coords to align)."""
    data = da.data
    out = xr.DataArray(data, dims=da.dims, coords={schema.LAYER: da[schema.LAYER].values,
                                                   schema.HEAD: da[schema.HEAD].values})
    return out.astype(np.float32)


def _token_ids(da: xr.DataArray) -> np.ndarray | None:
    return np.asarray(da[schema.TOKEN_ID].values) if schema.TOKEN_ID in da.coords else None


def _check(da: object, name: str) -> xr.DataArray:
    if not isinstance(da, xr.DataArray) or tuple(da.dims) != schema.DIMS:
        dims = getattr(da, "dims", None)
        raise TypeError(f"{name} must be an attention DataArray with dims {schema.DIMS}, got {dims!r}")
    return da


def _align(a: xr.DataArray, b: xr.DataArray, align: str) -> tuple[xr.DataArray, xr.DataArray]:
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
    layers = [int(v) for v in a[schema.LAYER].values if v in set(b[schema.LAYER].values.tolist())]
    heads = [int(v) for v in a[schema.HEAD].values if v in set(b[schema.HEAD].values.tolist())]
    if not layers or not heads:
        raise ValueError(
            "the runs share no (layer, head): a has layers "
            f"{a[schema.LAYER].values.tolist()} heads {a[schema.HEAD].values.tolist()}, b has layers "
            f"{b[schema.LAYER].values.tolist()} heads {b[schema.HEAD].values.tolist()}"
        )
    na, nb = a.sizes[schema.QUERY], b.sizes[schema.QUERY]
    ta, tb = _token_ids(a), _token_ids(b)
    if align == "exact":
        if na != nb:
            raise ValueError(f"the runs have {na} and {nb} tokens: pass align='truncate' to compare the first {min(na, nb)}")
        if ta is not None and tb is not None and not np.array_equal(ta, tb):
            first = int(np.nonzero(ta != tb)[0][0])
            raise ValueError(
                f"the runs' token ids differ (first at position {first}: {int(ta[first])} vs {int(tb[first])}); "
                "compare runs of the same input, or pass align='truncate' to compare the common prefix anyway"
            )
    n = min(na, nb)
    a = _plain(a.sel({schema.LAYER: layers, schema.HEAD: heads}))
    b = _plain(b.sel({schema.LAYER: layers, schema.HEAD: heads}))
    a = a.isel({schema.QUERY: slice(0, n), schema.KEY: slice(0, n)})
    b = b.isel({schema.QUERY: slice(0, n), schema.KEY: slice(0, n)})
    if align == "truncate" and (na != n or nb != n):
        a = a / np.maximum(a.sum(schema.KEY), _TINY)
        b = b / np.maximum(b.sum(schema.KEY), _TINY)
    return a, b


def _finish(values: xr.DataArray, name: str, metric: str, align: str, n: int) -> xr.DataArray:
    out = values.mean(schema.QUERY)
    out.name = name
    out.attrs = {"metric": metric, "align": align, "tokens_compared": n}
    return out


def js_divergence(a: xr.DataArray, b: xr.DataArray, align: str = "exact") -> xr.DataArray:
    """Mean Jensen–Shannon divergence (nats) of matching rows, ``(layer, head)``; 0 for identical runs."""
    a, b = _align(_check(a, "a"), _check(b, "b"), align)
    m = 0.5 * (a + b)
    mm = np.maximum(m, _TINY)
    # p·log(p/m), with 0·log 0 = 0 (p = 0 gives 0 · finite); m >= p/2 > 0 wherever p > 0
    term = 0.5 * (a * np.log(np.maximum(a, _TINY) / mm) + b * np.log(np.maximum(b, _TINY) / mm))
    rows = term.sum(schema.KEY).clip(min=0.0)
    return _finish(rows, "js_divergence", "js", align, a.sizes[schema.QUERY])


def cosine_similarity(a: xr.DataArray, b: xr.DataArray, align: str = "exact") -> xr.DataArray:
    """Mean cosine similarity of matching rows, ``(layer, head)``; 1 for identical runs."""
    a, b = _align(_check(a, "a"), _check(b, "b"), align)
    dot = (a * b).sum(schema.KEY)
    norm = np.sqrt((a * a).sum(schema.KEY) * (b * b).sum(schema.KEY))
    rows = (dot / np.maximum(norm, _TINY)).clip(-1.0, 1.0)
    return _finish(rows, "cosine_similarity", "cosine", align, a.sizes[schema.QUERY])


def compare(a: xr.DataArray, b: xr.DataArray, metric: str = "js", align: str = "exact") -> xr.DataArray:
    """``js_divergence`` or ``cosine_similarity`` of two attention DataArrays, ``(layer, head)``.

    Raises ``ValueError`` for an unknown metric/align, runs with different token ids under
    ``align="exact"``, or no layer/head in common.
    """
    if metric == "js":
        return js_divergence(a, b, align)
    if metric == "cosine":
        return cosine_similarity(a, b, align)
    raise ValueError(f"metric must be one of {COMPARE_METRICS}, got {metric!r}")
