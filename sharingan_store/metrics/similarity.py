"""Cosine similarity between heads' attention patterns.

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> from sharingan_store.metrics import head_similarity
>>> s = head_similarity(synthetic_attention(num_layers=2, num_heads=3, seq_len=8))
>>> s.dims
('layer', 'head_a', 'head_b')
>>> head_similarity(synthetic_attention(num_layers=2, num_heads=3, seq_len=8), across_layers=True).shape
(6, 6)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sharingan_store import schema
from sharingan_store.query._common import as_float32, check_attention

__all__ = ["head_similarity"]

HEAD_A, HEAD_B = "head_a", "head_b"
LAYER_A, LAYER_B = "layer_a", "layer_b"
PAIR_A, PAIR_B = "pair_a", "pair_b"


def head_similarity(da: xr.DataArray, across_layers: bool = False) -> xr.DataArray:
    """Cosine similarity of flattened (query x key) head patterns.

    ``S[a, b] = <A_a, A_b> / (||A_a|| ||A_b||)`` with the inner product over every
    (query, key) entry. Accumulated as a Gram matrix by a dask ``einsum`` reduction chunk
    by chunk, so no full pattern is ever in memory. A head whose pattern is all zero gives
    NaN. Lazy.

    Returns
    -------
    xr.DataArray
        ``across_layers=False``: dims ``(layer, head_a, head_b)``, heads within each layer.
        ``across_layers=True``: one matrix over every (layer, head) pair, dims
        ``(pair_a, pair_b)`` with non-dim coords ``layer_a, head_a`` / ``layer_b, head_b``
        (layer-major order).
    """
    a = as_float32(check_attention(da))
    a = a.drop_vars([c for c in a.coords if c not in (schema.LAYER, schema.HEAD)])
    norm = np.sqrt((a * a).sum([schema.QUERY, schema.KEY]))
    if not across_layers:
        x, y = a.rename({schema.HEAD: HEAD_A}), a.rename({schema.HEAD: HEAD_B})
        gram = xr.dot(x, y, dim=[schema.QUERY, schema.KEY])
        out = gram / (norm.rename({schema.HEAD: HEAD_A}) * norm.rename({schema.HEAD: HEAD_B}))
        out = out.transpose(schema.LAYER, HEAD_A, HEAD_B)
    else:
        ra = {schema.LAYER: LAYER_A, schema.HEAD: HEAD_A}
        rb = {schema.LAYER: LAYER_B, schema.HEAD: HEAD_B}
        gram = xr.dot(a.rename(ra), a.rename(rb), dim=[schema.QUERY, schema.KEY])
        cos = (gram / (norm.rename(ra) * norm.rename(rb))).transpose(LAYER_A, HEAD_A, LAYER_B, HEAD_B)
        nl, nh = a.sizes[schema.LAYER], a.sizes[schema.HEAD]
        layers = np.repeat(a[schema.LAYER].values, nh)
        heads = np.tile(a[schema.HEAD].values, nl)
        out = xr.DataArray(
            cos.data.reshape(nl * nh, nl * nh),
            dims=(PAIR_A, PAIR_B),
            coords={
                PAIR_A: np.arange(nl * nh),
                PAIR_B: np.arange(nl * nh),
                LAYER_A: (PAIR_A, layers),
                HEAD_A: (PAIR_A, heads),
                LAYER_B: (PAIR_B, layers),
                HEAD_B: (PAIR_B, heads),
            },
        )
    out.name = "head_similarity"
    return out
