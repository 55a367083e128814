"""``da.attn``: the views and metrics on any DataArray of the attention schema.

Importing :mod:`sharingan_store` registers the accessor (it sits above ``query`` and ``metrics``, which it delegates to). It holds only the
DataArray and delegates to :mod:`sharingan_store.query.views` and
:mod:`sharingan_store.metrics` (the same functions ``AttentionRun`` uses).

Examples
--------
>>> import sharingan_store
>>> from sharingan_store.testing import synthetic_attention
>>> da = synthetic_attention(num_layers=1, num_heads=1, seq_len=40)
>>> da.attn.local(center=20, window=2).sizes["key"]
5
>>> da.attn.entropy().dims
('layer', 'head', 'query')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import xarray as xr

from sharingan_store import metrics
from sharingan_store.query import views

__all__ = ["AttentionAccessor"]


@xr.register_dataarray_accessor("attn")
class AttentionAccessor:
    """Attention views and metrics for ``da.attn``; see the functions they delegate to."""

    __slots__ = ("_obj",)

    def __init__(self, xarray_obj: xr.DataArray) -> None:
        self._obj = xarray_obj

    # views -------------------------------------------------------------------
    def local(self, center: int, window: int = 64, keys: str = "window") -> xr.DataArray:
        """:func:`sharingan_store.query.views.local`."""
        return views.local(self._obj, center, window, keys)

    def global_view(
        self, size: int = 256, method: str = "mean", *, pyramid: Mapping[int, xr.Dataset] | None = None
    ) -> xr.DataArray:
        """:func:`sharingan_store.query.views.global_view`."""
        return views.global_view(self._obj, size, method, pyramid=pyramid)

    def segments(self, size: int | None = None, boundaries: str | Sequence[int] | None = None) -> xr.DataArray:
        """:func:`sharingan_store.query.views.segments`."""
        return views.segments(self._obj, size, boundaries)

    def multiscale(
        self,
        global_size: int = 256,
        segment_size: int | None = None,
        hotspots: int | Sequence[int] = 5,
        window: int = 64,
        *,
        method: str = "mean",
        pyramid: Mapping[int, xr.Dataset] | None = None,
    ) -> views.MultiScaleAttention:
        """:func:`sharingan_store.query.views.multiscale`."""
        return views.multiscale(
            self._obj, global_size, segment_size, hotspots, window, method=method, pyramid=pyramid
        )

    # metrics -----------------------------------------------------------------
    def entropy(self) -> xr.DataArray:
        """:func:`sharingan_store.metrics.entropy`."""
        return metrics.entropy(self._obj)

    def sink_scores(self) -> xr.DataArray:
        """:func:`sharingan_store.metrics.sink_scores`."""
        return metrics.sink_scores(self._obj)

    def sinks(self, threshold: float = 0.3) -> pd.DataFrame:
        """:func:`sharingan_store.metrics.sinks`."""
        return metrics.sinks(self._obj, threshold)

    def token_importance(
        self, method: str = "received", *, damping: float = 0.85, tol: float = 1e-6, max_iter: int = 100
    ) -> xr.DataArray:
        """:func:`sharingan_store.metrics.token_importance`."""
        return metrics.token_importance(self._obj, method, damping=damping, tol=tol, max_iter=max_iter)

    def attention_distance(self) -> xr.DataArray:
        """:func:`sharingan_store.metrics.attention_distance`."""
        return metrics.attention_distance(self._obj)

    def head_similarity(self, across_layers: bool = False) -> xr.DataArray:
        """:func:`sharingan_store.metrics.head_similarity`."""
        return metrics.head_similarity(self._obj, across_layers)

    def rollout(self, targets: Sequence[int] = (-1,)) -> xr.DataArray:
        """:func:`sharingan_store.metrics.rollout`."""
        return metrics.rollout(self._obj, targets)
