"""Mean attention distance: how far, in tokens, a head looks.

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> from sharingan_store.metrics import attention_distance
>>> attention_distance(synthetic_attention(seq_len=8)).dims
('layer', 'head')
"""

from __future__ import annotations

import xarray as xr

from sharingan_store import schema
from sharingan_store.query._common import as_float32, check_attention, coord_like, positions

__all__ = ["attention_distance"]


def attention_distance(da: xr.DataArray) -> xr.DataArray:
    """Mean distance attended, per (layer, head), in tokens.

    ``D[l, h] = mean_q sum_k a[l, h, q, k] * |q - k|`` with ``q``, ``k`` token positions.
    The ``|q - k|`` factor is built chunk by chunk (never an N x N array). Lazy; dims
    ``(layer, head)``.
    """
    a = as_float32(check_attention(da))
    q = coord_like(a, schema.QUERY, positions(a, schema.QUERY).astype(a.dtype))
    k = coord_like(a, schema.KEY, positions(a, schema.KEY).astype(a.dtype))
    per_query = (a * abs(q - k)).sum(schema.KEY)
    out = per_query.mean(schema.QUERY)
    out.name = "attention_distance"
    out.attrs = {"units": "tokens"}
    return out
