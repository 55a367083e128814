"""Row entropy of attention.

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> from sharingan_store.metrics import entropy
>>> h = entropy(synthetic_attention(seq_len=8))
>>> h.dims
('layer', 'head', 'query')
>>> float(h.isel(query=0).max())  # the first causal row sees one key: a point mass
0.0
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sharingan_store import schema
from sharingan_store.query._common import as_float32, check_attention

__all__ = ["entropy"]


def entropy(da: xr.DataArray) -> xr.DataArray:
    """Shannon entropy of each attention row, in nats.

    ``H[l, h, q] = -sum_k a[l, h, q, k] * ln a[l, h, q, k]`` with ``0 ln 0 = 0``, reduced in
    float32. For a normalised row ``0 <= H <= ln(n_visible)`` (the number of keys the
    query can see). Lazy; dims ``(layer, head, query)``.
    """
    a = as_float32(check_attention(da))
    positive = a > 0
    plogp = xr.where(positive, a * np.log(a.where(positive, 1)), 0)
    out = 0 - plogp.sum(schema.KEY)  # 0 - x, not -x: no negative zeros
    out.name = "entropy"
    out.attrs = {"units": "nats"}
    return out
