"""Synthetic attention tensors of the store's schema, for tests and benchmarks.

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> da = synthetic_attention(num_layers=2, num_heads=3, seq_len=10, seed=0)
>>> da.dims
('layer', 'head', 'query', 'key')
>>> bool(abs(da.sum("key") - 1).max() < 1e-5)
True
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sharingan_store import schema

__all__ = ["synthetic_attention"]


def synthetic_attention(
    num_layers: int = 2,
    num_heads: int = 2,
    seq_len: int = 64,
    *,
    causal: bool = True,
    peaked: float = 4.0,
    seed: int = 0,
    dtype: str = "float32",
) -> xr.DataArray:
    """A dense, row-normalised attention DataArray ``(layer, head, query, key)``.

    Scores are Gaussian noise times ``peaked`` plus a sink on token 0, so patterns look
    like real attention (a few large weights) rather than uniform noise.

    Parameters
    ----------
    num_layers, num_heads, seq_len
        Shape of the result.
    causal
        Zero the upper triangle (keys after the query) before normalising.
    peaked
        Scale of the random logits; larger gives sharper rows.
    seed
        Random seed.
    dtype
        ``"float32"`` or ``"float64"``.
    """
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((num_layers, num_heads, seq_len, seq_len)) * peaked
    logits[..., 0] += 2.0
    if causal:
        logits = np.where(np.tril(np.ones((seq_len, seq_len), dtype=bool)), logits, -np.inf)
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    tokens = np.array([f"t{i}" for i in range(seq_len)])
    return xr.DataArray(
        probs.astype(dtype),
        dims=schema.DIMS,
        coords={
            schema.LAYER: np.arange(num_layers),
            schema.HEAD: np.arange(num_heads),
            schema.QUERY: np.arange(seq_len),
            schema.KEY: np.arange(seq_len),
            schema.QUERY_TOKEN: (schema.QUERY, tokens),
            schema.KEY_TOKEN: (schema.KEY, tokens),
        },
        name=schema.ATTENTION,
        attrs={"attention_kind": "causal" if causal else "bidirectional"},
    )
