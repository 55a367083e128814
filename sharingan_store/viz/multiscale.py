"""One-call figure of a :class:`~sharingan_store.query.views.MultiScaleAttention`."""

from __future__ import annotations

from typing import Any

import xarray as xr

from sharingan_store import schema
from sharingan_store.viz._mpl import require_matplotlib
from sharingan_store.viz.heatmap import heatmap

__all__ = ["plot_multiscale"]


def _collapse(view: xr.DataArray) -> xr.DataArray:
    """Mean over ``layer``/``head`` (in float32) so one panel shows the whole selection."""
    dims = [d for d in (schema.LAYER, schema.HEAD) if d in view.dims]
    promoted = view.astype("float32") if view.dtype.itemsize < 4 else view
    return promoted.mean(dims) if dims else promoted


def plot_multiscale(ms: Any, *, max_local: int = 3, log: bool = True, cmap: str = "viridis") -> Any:
    """A Figure with the global view, the segment view and up to ``max_local`` local views.

    Views with several layers/heads are averaged over them. Returns a
    ``matplotlib.figure.Figure`` (save it with :func:`sharingan_store.viz.save`).
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    panels: list[tuple[str, xr.DataArray]] = [("global", ms.global_view)]
    if ms.segment_view is not None:
        panels.append(("segments", ms.segment_view))
    for center in list(ms.local_views)[:max_local]:
        panels.append((f"local @ {center}", ms.local_views[center]))
    fig = Figure(figsize=(5 * len(panels), 4.5), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, view) in zip(axes, panels, strict=True):
        heatmap(_collapse(view), ax=ax, log=log, cmap=cmap, title=f"{name} (N={ms.seq_len})")
    return fig
