"""``AttentionRun``: the handle of one stored run — selection, views and metrics, all lazy.

It sits above ``query`` (views) and ``metrics`` and delegates to the same functions as
the ``da.attn`` accessor, so there is one implementation with two doors.

Examples
--------
>>> import tempfile, torch
>>> import sharingan_store as ss
>>> from sharingan_store.testing import tiny_model
>>> store = ss.open_store(tempfile.mkdtemp() + "/s")
>>> run = store.extract(tiny_model("llama", num_layers=3), input_ids=torch.arange(40), layers=[0, 2],
...                     run="r", progress=False)
>>> sub = run.sel(layer=2).isel(head=slice(0, 2))
>>> sub.attention.sizes["layer"], sub.attention.sizes["head"]
(1, 2)
>>> sub.local(center=20, window=4).sizes["query"]
9
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from sharingan_store import metrics, schema
from sharingan_store.errors import SelectionError
from sharingan_store.query import views

if TYPE_CHECKING:
    from sharingan_store.query.views import MultiScaleAttention

__all__ = ["AttentionRun"]

_KEEP_DIMS = (schema.LAYER, schema.HEAD, schema.QUERY, schema.KEY)


def _as_list(value: Any) -> Any:
    """Scalar selectors become one-element lists so the 4-D schema keeps its dims."""
    if isinstance(value, (slice, list, tuple, np.ndarray, xr.DataArray, range)):
        return list(value) if isinstance(value, (tuple, range)) else value
    return [value]


class AttentionRun:
    """One run: ``attention`` ``(layer, head, query, key)`` as a lazy, dask-backed DataArray.

    Do not construct directly: use :meth:`sharingan_store.Store.open` or
    :func:`sharingan_store.open_run`. Selections (:meth:`sel`, :meth:`isel`) return a new
    ``AttentionRun``; views and metrics return lazy xarray objects (``.compute()`` reads
    only the chunks needed).
    """

    def __init__(self, dataset: xr.Dataset, *, run_id: str,
                 pyramid: Mapping[int, xr.Dataset] | Callable[[], Mapping[int, xr.Dataset]] | None = None,
                 url: str | None = None, attention: xr.DataArray | None = None):
        self._ds = dataset
        self.run_id = run_id
        self.url = url
        # the pyramid's metadata is read on first use (a loader), so opening a run stays cheap
        self._pyramid_source = pyramid
        self._pyramid_levels: dict[int, xr.Dataset] | None = None if callable(pyramid) else dict(pyramid or {})
        if attention is None:
            attention = dataset[schema.ATTENTION]
            attention.attrs = {**dataset.attrs, **{k: v for k, v in attention.attrs.items() if k != "coordinates"}}
        self._attention = attention

    # ----------------------------------------------------------------- data
    @property
    def attention(self) -> xr.DataArray:
        """The lazy ``(layer, head, query, key)`` DataArray of the (selected) run."""
        return self._attention

    @property
    def dataset(self) -> xr.Dataset:
        """The whole run as an ``xr.Dataset`` (unselected)."""
        return self._ds

    @property
    def attrs(self) -> dict[str, Any]:
        """Run provenance and status."""
        return dict(self._ds.attrs)

    @property
    def tokens(self) -> list[str]:
        """Token strings of the (selected) queries."""
        return [str(t) for t in self._attention[schema.QUERY_TOKEN].values]

    @property
    def token_ids(self) -> np.ndarray:
        """Token ids of the (selected) queries."""
        return np.asarray(self._attention[schema.TOKEN_ID].values)

    @property
    def layers(self) -> list[int]:
        """Model layer indices in the selection."""
        return [int(v) for v in self._attention[schema.LAYER].values]

    @property
    def heads(self) -> list[int]:
        """Model head indices in the selection."""
        return [int(v) for v in self._attention[schema.HEAD].values]

    @property
    def seq_len(self) -> int:
        """Number of tokens of the stored sequence."""
        return int(self._ds.sizes[schema.QUERY])

    @property
    def _pyramid(self) -> dict[int, xr.Dataset]:
        if self._pyramid_levels is None:
            loader = self._pyramid_source
            self._pyramid_levels = dict(loader()) if callable(loader) else {}
        return self._pyramid_levels

    @property
    def pyramid(self) -> dict[int, xr.Dataset]:
        """Pyramid levels (factor → Dataset with ``mean``/``max``), empty when the run has none."""
        return dict(self._pyramid)

    def __repr__(self) -> str:
        a = self._attention
        sizes = ", ".join(f"{d}: {a.sizes[d]}" for d in a.dims)
        return (f"<AttentionRun {self.run_id!r} ({sizes}) model={self._ds.attrs.get('model')!r} "
                f"dtype={self._ds.attrs.get('dtype')!r} status={self._ds.attrs.get(schema.STATUS)!r}>")

    # ----------------------------------------------------------------- selection
    def _with(self, attention: xr.DataArray) -> AttentionRun:
        pyramid = self._pyramid_levels if self._pyramid_levels is not None else self._pyramid_source
        return AttentionRun(self._ds, run_id=self.run_id, pyramid=pyramid, url=self.url, attention=attention)

    def _check_dims(self, indexers: Mapping[str, Any]) -> None:
        unknown = [d for d in indexers if d not in _KEEP_DIMS]
        if unknown:
            raise SelectionError(f"cannot select on {unknown}: the dims are {list(_KEEP_DIMS)}")

    def sel(self, indexers: Mapping[str, Any] | None = None, **kw: Any) -> AttentionRun:
        """Select by model layer/head index and token position (labels); dims are kept.

        ``run.sel(layer=12)`` keeps a ``layer`` dim of size 1. Labels that are not in the
        run raise :class:`~sharingan_store.errors.SelectionError` naming the valid ones.
        """
        indexers = {**(indexers or {}), **kw}
        self._check_dims(indexers)
        labelled: dict[str, slice] = {}  # label slices go to xarray's .sel
        positional: dict[str, slice | list[int]] = {}  # labels become positions (slices when contiguous)
        for dim, value in ((d, _as_list(v)) for d, v in indexers.items()):
            if isinstance(value, slice):
                labelled[dim] = value
                continue
            have = self._attention[dim].values
            missing = [v for v in np.asarray(value).ravel().tolist() if v not in set(have.tolist())]
            if missing:
                raise SelectionError(f"{dim} {missing} not in this run; valid {dim} values: {_describe(have)}")
            positional[dim] = _contiguous(self._attention.indexes[dim].get_indexer(np.asarray(value).ravel()))
        att = self._attention.sel(labelled) if labelled else self._attention
        return self._with(att.isel(positional) if positional else att)

    def isel(self, indexers: Mapping[str, Any] | None = None, **kw: Any) -> AttentionRun:
        """Select by position along each dim; dims are kept. Out of range → :class:`SelectionError`."""
        indexers = {**(indexers or {}), **kw}
        self._check_dims(indexers)
        sel = {d: _as_list(v) for d, v in indexers.items()}
        for dim, value in sel.items():
            if isinstance(value, slice):
                continue
            size = self._attention.sizes[dim]
            flat = np.asarray(value).ravel()
            if flat.dtype.kind == "b" or flat.size == 0:
                continue  # boolean masks and empty selections: xarray checks them
            if flat.dtype.kind not in "iu":
                raise SelectionError(f"{dim} positions must be integers, got {value!r}")
            bad = [int(i) for i in flat if not -size <= int(i) < size]
            if bad:
                raise SelectionError(f"{dim} positions {bad} out of range: valid 0..{size - 1} (or negative)")
            sel[dim] = _contiguous(np.where(flat < 0, flat + size, flat))
        return self._with(self._attention.isel(sel))

    # ----------------------------------------------------------------- views
    def local(self, center: int, window: int = 64, keys: str = "window") -> xr.DataArray:
        """:func:`sharingan_store.query.views.local` on this selection."""
        return views.local(self._attention, center, window, keys)

    def global_view(self, size: int = 256, method: str = "mean", *, use_pyramid: bool = True) -> xr.DataArray:
        """:func:`sharingan_store.query.views.global_view`, from the pyramid when the run has one."""
        return views.global_view(self._attention, size, method, pyramid=self._pyramid if use_pyramid else None)

    def segments(self, size: int | None = None, boundaries: str | Sequence[int] | None = None) -> xr.DataArray:
        """:func:`sharingan_store.query.views.segments`."""
        return views.segments(self._attention, size, boundaries)

    def multiscale(self, global_size: int = 256, segment_size: int | None = None,
                   hotspots: int | Sequence[int] = 5, window: int = 64, *, method: str = "mean",
                   use_pyramid: bool = True) -> MultiScaleAttention:
        """:func:`sharingan_store.query.views.multiscale`; the global view comes from the pyramid when present."""
        return views.multiscale(self._attention, global_size=global_size, segment_size=segment_size,
                                hotspots=hotspots, window=window, method=method,
                                pyramid=self._pyramid if use_pyramid else None)

    # ----------------------------------------------------------------- metrics
    def entropy(self) -> xr.DataArray:
        """:func:`sharingan_store.metrics.entropy`."""
        return metrics.entropy(self._attention)

    def sinks(self, threshold: float = 0.3) -> pd.DataFrame:
        """:func:`sharingan_store.metrics.sinks` (computes; see :meth:`sink_scores` for the lazy scores)."""
        return metrics.sinks(self._attention, threshold)

    def sink_scores(self) -> xr.DataArray:
        """:func:`sharingan_store.metrics.sink_scores`: lazy per-key sink scores, to combine in one ``dask.compute``."""
        return metrics.sink_scores(self._attention)

    def token_importance(self, method: str = "received") -> xr.DataArray:
        """:func:`sharingan_store.metrics.token_importance`."""
        return metrics.token_importance(self._attention, method)

    def attention_distance(self) -> xr.DataArray:
        """:func:`sharingan_store.metrics.attention_distance`."""
        return metrics.attention_distance(self._attention)

    def head_similarity(self, across_layers: bool = False) -> xr.DataArray:
        """:func:`sharingan_store.metrics.head_similarity`."""
        return metrics.head_similarity(self._attention, across_layers)

    def rollout(self, targets: Sequence[int] = (-1,)) -> xr.DataArray:
        """:func:`sharingan_store.metrics.rollout` (needs every layer from the first up)."""
        return metrics.rollout(self._attention, targets)


def _contiguous(positions: np.ndarray) -> slice | list[int]:
    """Increasing consecutive positions become a slice, so dask slices chunks instead of gathering."""
    pos = [int(p) for p in np.asarray(positions).ravel()]
    if pos and pos == list(range(pos[0], pos[0] + len(pos))):
        return slice(pos[0], pos[0] + len(pos))
    return pos


def _describe(values: np.ndarray) -> str:
    vals = values.tolist()
    if len(vals) > 8 and all(isinstance(v, int) for v in vals) and vals == list(range(vals[0], vals[-1] + 1)):
        return f"{vals[0]}..{vals[-1]}"
    return str(vals[:16]) + (" ..." if len(vals) > 16 else "")
