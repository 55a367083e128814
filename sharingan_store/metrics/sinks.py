"""Attention sinks: keys that every query that can see them attends to.

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> from sharingan_store.metrics import sinks
>>> df = sinks(synthetic_attention(num_layers=1, num_heads=1, seq_len=16), threshold=0.1)
>>> list(df.columns)
['layer', 'head', 'position', 'token', 'score']
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from sharingan_store import schema
from sharingan_store.query._common import as_float32, check_attention, seeing_queries

__all__ = ["sink_scores", "sinks"]


def sink_scores(da: xr.DataArray) -> xr.DataArray:
    """Sink score per key: attention received, averaged over the queries that can see it.

    ``score[l, h, k] = sum_q a[l, h, q, k] / n_seeing(k)`` where ``n_seeing(k)`` counts the
    queries ``q >= k`` for ``attention_kind`` ``"causal"`` (the default when the attribute
    is absent) and ``"sliding"`` (the window is not known here, so all later queries
    count), and every query for ``"bidirectional"``. A key no query can see scores NaN.
    Lazy; dims ``(layer, head, key)``; 1 means every query that can see the key puts all
    its attention there.
    """
    check_attention(da)
    n = seeing_queries(da).astype(np.float32)
    n[n == 0] = np.nan
    received = as_float32(da).sum(schema.QUERY)
    out = received / xr.DataArray(n, dims=(schema.KEY,))
    out.name = "sink_score"
    return out


def sinks(da: xr.DataArray, threshold: float = 0.3) -> pd.DataFrame:
    """Keys whose :func:`sink_score` is above ``threshold``, per layer and head.

    Computes (reads the whole array once). Returns a DataFrame with columns
    ``layer, head, position, token, score``: one row per (layer, head, sink), sorted by
    layer, head and descending score. ``token`` is the ``key_token`` string, or None when
    the array has no token coordinate.
    """
    scores = sink_scores(da).compute()
    values = scores.values
    li, hi, ki = np.nonzero(values > threshold)
    tokens = scores[schema.KEY_TOKEN].values if schema.KEY_TOKEN in scores.coords else None
    df = pd.DataFrame(
        {
            "layer": scores[schema.LAYER].values[li],
            "head": scores[schema.HEAD].values[hi],
            "position": scores[schema.KEY].values[ki],
            "token": tokens[ki] if tokens is not None else [None] * len(ki),
            "score": values[li, hi, ki].astype(np.float64),
        }
    )
    df = df.sort_values(["layer", "head", "score"], ascending=[True, True, False], kind="stable")
    return df.reset_index(drop=True)
