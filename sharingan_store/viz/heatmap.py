"""Heatmaps of 2-D attention views (any of the views, one layer/head selected).

Uses ``matplotlib.figure.Figure`` directly (no pyplot global state), so it works under
any backend, including Agg on headless machines.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from sharingan_store import schema
from sharingan_store.viz._mpl import require_matplotlib

__all__ = ["MAX_LABELS", "heatmap", "save", "to_2d"]

#: Most token labels drawn on one axis; beyond this ticks show positions.
MAX_LABELS = 64
#: Smallest value shown on a log colour scale (zeros are drawn at the floor).
LOG_FLOOR = 1e-6

_TOKEN_COORDS = {schema.QUERY: schema.QUERY_TOKEN, schema.KEY: schema.KEY_TOKEN}


def to_2d(view: Any) -> xr.DataArray:
    """A 2-D DataArray from a 2-D view, or a 4-D one with size-1 ``layer``/``head`` (squeezed).

    ``ValueError`` names the dims when more than one layer/head is left.
    """
    if not isinstance(view, xr.DataArray):
        arr = np.asarray(view)
        if arr.ndim != 2:
            raise ValueError(f"heatmap needs a 2-D array, got shape {arr.shape}")
        return xr.DataArray(arr, dims=("row", "column"))
    extra = [d for d in view.dims if d in (schema.LAYER, schema.HEAD)]
    big = [d for d in extra if view.sizes[d] != 1]
    if big:
        raise ValueError(
            f"heatmap draws one layer/head; select one first (e.g. .isel({big[0]}=0)); dims are {dict(view.sizes)}"
        )
    view = view.squeeze(extra, drop=False) if extra else view
    if view.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D view, got dims {view.dims}")
    return view


def _labels(view: xr.DataArray, dim: str, labels: Any) -> list[str] | None:
    n = view.sizes[dim]
    if labels is False or labels is None or labels == "none":
        return None
    if labels == "auto" and n > MAX_LABELS:
        return None
    token = _TOKEN_COORDS.get(dim)
    if token is not None and token in view.coords and view[token].dims == (dim,):
        return [str(t) for t in np.asarray(view[token].values)]
    if dim in view.coords:
        return [str(v) for v in np.asarray(view[dim].values)]
    return None


def heatmap(
    view: Any,
    ax: Any = None,
    *,
    log: bool = False,
    labels: Any = "auto",
    title: str | None = None,
    cmap: str = "viridis",
    floor: float = LOG_FLOOR,
    colorbar: bool = True,
) -> Any:
    """Draw a 2-D attention view as an image with a colour bar; returns the Axes.

    Parameters
    ----------
    view
        A 2-D DataArray (rows = first dim), a 4-D view with size-1 ``layer``/``head``, or a
        2-D numpy array. Lazy views are computed here.
    ax
        Axes to draw into; a new ``Figure`` (6 x 5 in) is made when None.
    log
        Log colour scale (``LogNorm``); values below ``floor`` are drawn at ``floor``.
    labels
        ``"auto"``: token strings (``query_token``/``key_token``, else positions) on each
        axis with at most ``MAX_LABELS`` entries; ``True``: always; ``False``: never.
    title, cmap
        Passed to matplotlib.
    """
    require_matplotlib()
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    da2 = to_2d(view)
    values = np.asarray(da2.values, dtype=np.float32)
    if ax is None:
        ax = Figure(figsize=(6, 5), layout="constrained").add_subplot()  # room for token labels
    finite = values[np.isfinite(values)]
    if log:
        positive = finite[finite > 0]
        vmax = float(positive.max()) if positive.size else 1.0
        vmin = max(floor, float(positive.min())) if positive.size else floor
        vmin = min(vmin, vmax)
        norm = LogNorm(vmin=vmin, vmax=max(vmax, vmin * 1.0000001))
        shown = np.where(np.isfinite(values), np.maximum(values, vmin), values)
    else:
        norm = Normalize(vmin=float(finite.min()) if finite.size else 0, vmax=float(finite.max()) if finite.size else 1)
        shown = values
    image = ax.imshow(shown, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    rows, cols = da2.dims
    ax.set_ylabel(str(rows))
    ax.set_xlabel(str(cols))
    force = labels is True
    ylab = _labels(da2, rows, "always" if force else labels)
    xlab = _labels(da2, cols, "always" if force else labels)
    if ylab is not None:
        ax.set_yticks(range(len(ylab)), ylab, fontsize=7)
    if xlab is not None:
        ax.set_xticks(range(len(xlab)), xlab, fontsize=7, rotation=90)
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    return ax


def save(fig: Any, path: str | os.PathLike[str], *, dpi: int = 100) -> str:
    """Write ``fig`` (a Figure, or an Axes' figure) to ``path``; the format follows the suffix.

    The image is ``figsize * dpi`` pixels (no tight cropping). Returns the path.
    """
    require_matplotlib()
    figure = getattr(fig, "figure", fig) if not hasattr(fig, "savefig") else fig
    figure.savefig(os.fspath(path), dpi=dpi)
    return os.fspath(path)
