"""Token importance: received attention, query focus, their blend, and PageRank.

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> from sharingan_store.metrics import token_importance
>>> da = synthetic_attention(num_layers=1, num_heads=2, seq_len=16)
>>> token_importance(da, "received").dims
('layer', 'head', 'key')
>>> pr = token_importance(da, "pagerank")
>>> bool(abs(pr.sum("key") - 1).max() < 1e-4)
True
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from sharingan_store import schema
from sharingan_store.query._common import as_float32, check_attention, positions, visible_keys
from sharingan_store.metrics.entropy import entropy

__all__ = ["IMPORTANCE_METHODS", "pagerank", "token_importance"]

IMPORTANCE_METHODS = ("received", "given", "both", "pagerank")


def _same_positions(da: xr.DataArray, what: str) -> None:
    if not np.array_equal(positions(da, schema.QUERY), positions(da, schema.KEY)):
        raise ValueError(f"{what} needs the same token positions on {schema.QUERY!r} and {schema.KEY!r}")


def _minmax(x: xr.DataArray, dim: str) -> xr.DataArray:
    lo, hi = x.min(dim), x.max(dim)
    span = hi - lo
    return xr.where(span > 0, (x - lo) / span.where(span > 0, 1), 0)


def _received(da: xr.DataArray) -> xr.DataArray:
    return as_float32(da).sum(schema.QUERY)


def _given(da: xr.DataArray) -> xr.DataArray:
    nvis = xr.DataArray(visible_keys(da).astype(np.float32), dims=(schema.QUERY,))
    ln = np.log(nvis.where(nvis > 1, np.e))
    h = entropy(da)
    return xr.where(nvis > 1, 1 - h / ln, 1).transpose(schema.LAYER, schema.HEAD, schema.QUERY)


def token_importance(
    da: xr.DataArray,
    method: str = "received",
    *,
    damping: float = 0.85,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> xr.DataArray:
    """Importance of each token, per (layer, head).

    Methods
    -------
    ``"received"``
        ``sum_q a[q, k]``: total attention a key receives. Lazy; dims ``(layer, head, key)``.
    ``"given"``
        Query focus ``1 - H(row q) / ln(n_visible(q))`` in ``[0, 1]`` (1 = all attention on
        one key, 0 = uniform over what it can see), where ``n_visible`` is ``q + 1`` keys
        for causal/sliding runs and ``N`` for bidirectional ones (from ``attention_kind``,
        default causal); rows that see one key score 1. Lazy; dims ``(layer, head, query)``.
    ``"both"``
        Mean of received and given after min-max scaling each to ``[0, 1]`` over the
        positions (a constant vector scales to 0). Needs the same positions on query and
        key. Lazy; dims ``(layer, head, key)``.
    ``"pagerank"``
        See :func:`pagerank`. **Computes** (power iteration); dims ``(layer, head, key)``.
    """
    check_attention(da)
    if method == "received":
        out = _received(da)
    elif method == "given":
        out = _given(da)
    elif method == "both":
        _same_positions(da, "method='both'")
        rec = _minmax(_received(da), schema.KEY)
        giv = _minmax(_given(da), schema.QUERY).rename({schema.QUERY: schema.KEY})
        giv = giv.drop_vars([c for c in giv.coords if c not in (schema.LAYER, schema.HEAD)])
        out = ((rec + giv) / 2).transpose(schema.LAYER, schema.HEAD, schema.KEY)
    elif method == "pagerank":
        return pagerank(da, damping=damping, tol=tol, max_iter=max_iter)
    else:
        raise ValueError(f"method must be one of {IMPORTANCE_METHODS}, got {method!r}")
    out.name = f"importance_{method}"
    return out


def pagerank(
    da: xr.DataArray, *, damping: float = 0.85, tol: float = 1e-6, max_iter: int = 100
) -> xr.DataArray:
    """Stationary distribution of the attention random walk, per (layer, head).

    The chain goes from token ``q`` to token ``k`` with probability ``a[q, k]``; with
    probability ``1 - damping`` (and with any mass a row lacks, e.g. float16 rounding) it
    teleports uniformly. Power iteration ``pi <- damping * pi A + (1 - damping * |pi A|) / N``
    from the uniform vector until the L1 change is below ``tol`` for every (layer, head), or
    ``max_iter`` steps (then a ``RuntimeWarning``).

    Each step is one vector-matrix product computed chunk by chunk (dask ``einsum`` over the
    stored chunks: one pass over the array, memory O(chunk + N)); never N^2 in memory.
    **Computes**; returns a numpy-backed DataArray ``(layer, head, key)`` summing to 1 over
    ``key``, with attrs ``iterations`` and ``converged``.
    """
    check_attention(da, square=True)
    _same_positions(da, "pagerank")
    if not 0 <= damping <= 1:
        raise ValueError(f"damping must be in [0, 1], got {damping}")
    a = as_float32(da)
    a = a.drop_vars([c for c in a.coords if c not in (schema.LAYER, schema.HEAD)])
    n = a.sizes[schema.KEY]
    shape = (a.sizes[schema.LAYER], a.sizes[schema.HEAD], n)
    pi = np.full(shape, 1.0 / n)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        vec = xr.DataArray(pi.astype(a.dtype), dims=(schema.LAYER, schema.HEAD, schema.QUERY))
        step = xr.dot(vec, a, dim=schema.QUERY).transpose(*vec.dims[:2], schema.KEY)
        nxt = damping * np.asarray(step.values, dtype=np.float64)
        nxt += (1.0 - nxt.sum(axis=-1, keepdims=True)) / n
        delta = np.abs(nxt - pi).sum(axis=-1).max()
        pi = nxt
        if delta < tol:
            converged = True
            break
    if not converged:
        warnings.warn(f"pagerank did not converge to tol={tol} in {max_iter} iterations", RuntimeWarning, stacklevel=2)
    return xr.DataArray(
        pi,
        dims=(schema.LAYER, schema.HEAD, schema.KEY),
        coords={schema.LAYER: da[schema.LAYER].values, schema.HEAD: da[schema.HEAD].values,
                **{name: c.variable for name, c in da.coords.items() if c.dims == (schema.KEY,)}},
        name="importance_pagerank",
        attrs={"iterations": it, "converged": converged, "damping": damping},
    )
