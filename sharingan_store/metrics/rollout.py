"""Attention rollout (Abnar & Zuidema, 2020), for a few target rows only.

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> from sharingan_store.metrics import rollout
>>> r = rollout(synthetic_attention(num_layers=3, seq_len=10), targets=[-1, 0])
>>> r.dims
('target', 'key')
>>> bool(abs(r.sum("key") - 1).max() < 1e-5)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from sharingan_store import schema
from sharingan_store.query._common import as_float32, check_attention, positions

__all__ = ["TARGET", "rollout"]

TARGET = schema.TARGET


def rollout(da: xr.DataArray, targets: Sequence[int] = (-1,)) -> xr.DataArray:
    """Attention rollout rows for ``targets``.

    Per layer ``Â_l = rownorm(0.5 * mean_heads(A_l) + 0.5 * I)`` and the rollout is
    ``R = Â_L ... Â_1`` (layers in the order of the ``layer`` coordinate, first layer
    applied first). Only the rows of ``targets`` are computed, as vector-matrix products
    from the last layer down (``v <- v Â_l``, ``v`` starting at the one-hot target rows), so
    memory is O(N * len(targets)) plus chunks; nothing N x N is formed.

    Parameters
    ----------
    targets
        Query *indices* (negative counts from the end, ``-1`` = last token).

    Returns
    -------
    xr.DataArray
        Lazy, dims ``(target, key)``; ``target`` holds the targets' token positions. Each
        row sums to 1.

    Raises
    ------
    IndexError
        A target outside ``-N..N-1``.
    """
    check_attention(da, square=True)
    q = positions(da, schema.QUERY)
    if not np.array_equal(q, positions(da, schema.KEY)):
        raise ValueError(f"rollout needs the same token positions on {schema.QUERY!r} and {schema.KEY!r}")
    n = q.size
    idx = []
    for t in targets:
        t = int(t)
        if not -n <= t < n:
            raise IndexError(f"rollout target {t} out of range: valid query indices are {-n}..{n - 1}")
        idx.append(t % n)
    a = as_float32(da)
    a = a.drop_vars(list(a.coords))
    m = a.mean(schema.HEAD)  # (layer, query, key)
    d = 0.5 * m.sum(schema.KEY) + 0.5  # row sums of 0.5 M + 0.5 I
    v = xr.DataArray(np.eye(n, dtype=a.dtype)[idx], dims=(TARGET, schema.QUERY))
    for layer in reversed(range(a.sizes[schema.LAYER])):
        w = v / d.isel({schema.LAYER: layer})
        v = 0.5 * xr.dot(w, m.isel({schema.LAYER: layer}), dim=schema.QUERY) + 0.5 * w.rename({schema.QUERY: schema.KEY})
        v = v.transpose(TARGET, schema.KEY).rename({schema.KEY: schema.QUERY})
    out = v.rename({schema.QUERY: schema.KEY}).assign_coords({TARGET: q[idx], schema.KEY: q})
    out.name = "rollout"
    return out
