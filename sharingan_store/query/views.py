"""Views of an attention DataArray: local windows, global downsampling, segments, multiscale.

Every function takes an ``xr.DataArray`` with dims exactly ``schema.DIMS``
(``layer, head, query, key``), usually dask-backed, and returns a *lazy* result: building
a view computes nothing, and ``.compute()`` reads only the chunks the view needs.
Reductions always run in (at least) float32, since dask means over float16 overflow.

These are the single implementation behind both doors: ``AttentionRun.local(...)`` and
``da.attn.local(...)`` delegate here.

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> from sharingan_store.query.views import global_view, local, segments
>>> da = synthetic_attention(num_layers=1, num_heads=2, seq_len=100)
>>> local(da, center=50, window=4).sizes["query"]
9
>>> global_view(da, size=10).sizes["key"]
10
>>> seg = segments(da, size=25)
>>> seg.dims
('layer', 'head', 'query_segment', 'key_segment')
>>> bool(abs(seg.sum("key_segment") - 1).max() < 1e-5)
True
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from sharingan_store import schema
from sharingan_store.query._common import as_float32, check_attention, positions

__all__ = [
    "KEY_SEGMENT",
    "KEY_SEGMENT_END",
    "QUERY_SEGMENT",
    "QUERY_SEGMENT_END",
    "MultiScaleAttention",
    "global_view",
    "local",
    "multiscale",
    "segments",
]

# Names of the segment view (candidates for schema.py).
QUERY_SEGMENT = schema.QUERY_SEGMENT
KEY_SEGMENT = schema.KEY_SEGMENT
QUERY_SEGMENT_END = schema.QUERY_SEGMENT_END
KEY_SEGMENT_END = schema.KEY_SEGMENT_END

GLOBAL_METHODS = ("mean", "max", "sample")
_PYRAMID_VARS = ("mean", "max")


# --------------------------------------------------------------------------- helpers
def _axis_coords(da: xr.DataArray, dim: str) -> list[str]:
    """Names of every coordinate (index or not) that lies along ``dim``."""
    return [name for name, c in da.coords.items() if dim in c.dims]


def _nondim_coords(da: xr.DataArray, dim: str) -> list[str]:
    return [name for name in _axis_coords(da, dim) if name != dim]


def _require_monotonic(da: xr.DataArray, dim: str) -> None:
    if dim in da.indexes and not da.indexes[dim].is_monotonic_increasing:
        raise ValueError(f"{dim!r} positions must be increasing; sort with .sortby({dim!r}) first")


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


# --------------------------------------------------------------------------- local
def local(da: xr.DataArray, center: int, window: int = 64, keys: str = "window") -> xr.DataArray:
    """Rows (and keys) around a token: the attention of ``[center-window, center+window]``.

    Parameters
    ----------
    da
        Attention ``(layer, head, query, key)``.
    center
        A token *position* (a value of the ``query`` coordinate, not an index).
    window
        Half-width in tokens (``>= 0``); the range is inclusive and clipped at the edges.
    keys
        ``"window"`` keeps only keys in the same range (a square block around the diagonal);
        ``"all"`` keeps full rows (so rows still sum to 1).

    Returns
    -------
    xr.DataArray
        Lazy; a positional ``isel`` on contiguous slices, so ``.compute()`` reads only the
        chunks the window touches. Token-string and other per-token coords are kept.

    Raises
    ------
    IndexError
        ``center`` outside the valid token positions (the message names the range).
    ValueError
        Bad ``window`` or ``keys``, or an input without the schema's dims.
    """
    check_attention(da)
    if keys not in ("window", "all"):
        raise ValueError(f"keys must be 'window' or 'all', got {keys!r}")
    window = _as_int(window, "window")
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    center = _as_int(center, "center")
    _require_monotonic(da, schema.QUERY)
    q = positions(da, schema.QUERY)
    if q.size == 0 or not (q[0] <= center <= q[-1]):
        valid = f"{q[0]}..{q[-1]}" if q.size else "none (empty query axis)"
        raise IndexError(f"center {center} is out of range: valid token positions are {valid}")
    lo, hi = center - window, center + window
    sel = {schema.QUERY: slice(int(np.searchsorted(q, lo, "left")), int(np.searchsorted(q, hi, "right")))}
    if keys == "window":
        _require_monotonic(da, schema.KEY)
        k = positions(da, schema.KEY)
        sel[schema.KEY] = slice(int(np.searchsorted(k, lo, "left")), int(np.searchsorted(k, hi, "right")))
    return da.isel(sel)


# --------------------------------------------------------------------------- global
def _cell(n: int, size: int) -> int:
    return 1 if n <= size else math.ceil(n / size)


def _pyramid_source(
    da: xr.DataArray, pyramid: Mapping[int, xr.Dataset] | None, method: str, c: int
) -> tuple[int, xr.DataArray] | None:
    """The coarsest usable pyramid level ``(f, var)`` for cell size ``c``, or None.

    Usable: ``f`` divides ``c``, the run covers full positions ``0..N-1`` on both axes,
    the level has the right shape, and holds every selected layer/head.
    """
    if not pyramid or method not in _PYRAMID_VARS:
        return None
    n = da.sizes[schema.QUERY]
    if da.sizes[schema.KEY] != n:
        return None
    full = np.arange(n)
    if not (np.array_equal(positions(da, schema.QUERY), full) and np.array_equal(positions(da, schema.KEY), full)):
        return None
    for f in sorted((int(f) for f in pyramid), reverse=True):
        if f < 2 or c % f:
            continue
        level = pyramid[f]
        if method not in level:
            continue
        var = level[method]
        m = math.ceil(n / f)
        if set(var.dims) != set(schema.DIMS) or var.sizes[schema.QUERY] != m or var.sizes[schema.KEY] != m:
            continue
        try:
            var = var.sel({schema.LAYER: da[schema.LAYER].values, schema.HEAD: da[schema.HEAD].values})
        except (KeyError, IndexError):
            continue
        return f, var.transpose(*schema.DIMS)
    return None


def global_view(
    da: xr.DataArray,
    size: int = 256,
    method: str = "mean",
    *,
    pyramid: Mapping[int, xr.Dataset] | None = None,
) -> xr.DataArray:
    """Downsample to about ``size x size`` cells: the whole matrix at a glance.

    Each cell covers ``c = ceil(N / size)`` tokens per axis (the last cell is partial, so
    there are ``ceil(N / c)`` cells). An axis with ``N <= size`` is not downsampled; when
    both are, ``da`` is returned unchanged.

    Parameters
    ----------
    size
        Target cells per axis (``>= 1``).
    method
        ``"mean"``: mean over the in-bounds entries of each cell (float32).
        ``"max"``: max over each cell.
        ``"sample"``: uniformly spaced rows and keys: the *first* row/key of each cell,
        i.e. every ``c``-th token starting at the first (exact values, no reduction).
    pyramid
        Optional cache ``{f: Dataset(mean, max)}`` whose level ``f`` holds the mean/max
        over rows ``[i f, (i+1) f)`` x keys ``[j f, (j+1) f)`` of the full matrix. When a
        level with ``f`` dividing ``c`` exists (the largest is used) the view is reduced
        from it: max of maxes, or the count-weighted mean of means (edge cells are
        partial), equal to the full-scan view up to float32 rounding. Used only when
        ``da`` spans all positions ``0..N-1`` on both axes; layers/heads are selected from
        the pyramid by coordinate, falling back to the full scan if one is missing.

    Returns
    -------
    xr.DataArray
        Lazy, dims ``(layer, head, query, key)``; ``query``/``key`` coordinates are the
        first token position of each cell, per-token coords (``query_token``...) are those
        of that first token. Attrs gain ``global_view_cell`` (``c``) and
        ``global_view_method``.
    """
    check_attention(da)
    if method not in GLOBAL_METHODS:
        raise ValueError(f"method must be one of {GLOBAL_METHODS}, got {method!r}")
    size = _as_int(size, "size")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    nq, nk = da.sizes[schema.QUERY], da.sizes[schema.KEY]
    cq, ck = _cell(nq, size), _cell(nk, size)
    if cq == 1 and ck == 1:
        return da
    stride = {schema.QUERY: slice(None, None, cq), schema.KEY: slice(None, None, ck)}
    firsts = da.isel(stride)  # lazy; its coords are the cell-start coords
    if method == "sample":
        out = firsts
    else:
        source = _pyramid_source(da, pyramid, method, cq) if cq == ck else None
        if source is None:
            body = _strip_axis_coords(as_float32(da))
            window = body.coarsen({schema.QUERY: cq, schema.KEY: ck}, boundary="pad")
            reduced = window.mean() if method == "mean" else window.max()
        else:
            reduced = _from_pyramid(*source, n=nq, c=cq, method=method)
        out = reduced.assign_coords({name: firsts[name].variable for name in
                                     _axis_coords(firsts, schema.QUERY) + _axis_coords(firsts, schema.KEY)})
    out = out.copy(deep=False)
    out.attrs = {**da.attrs, "global_view_cell": cq, "global_view_method": method}
    out.name = da.name
    return out


def _strip_axis_coords(da: xr.DataArray) -> xr.DataArray:
    return da.drop_vars(_axis_coords(da, schema.QUERY) + _axis_coords(da, schema.KEY))


def _from_pyramid(f: int, var: xr.DataArray, *, n: int, c: int, method: str) -> xr.DataArray:
    m = c // f
    var = _strip_axis_coords(as_float32(var))
    if method == "max":
        return var.coarsen({schema.QUERY: m, schema.KEY: m}, boundary="pad").max()
    starts = np.arange(0, n, f)
    counts = np.minimum(f, n - starts).astype(var.dtype)  # rows (= keys) per level cell
    wq = xr.DataArray(counts, dims=(schema.QUERY,))
    wk = xr.DataArray(counts, dims=(schema.KEY,))
    total = (var * wq * wk).coarsen({schema.QUERY: m, schema.KEY: m}, boundary="pad").sum()
    nq = wq.coarsen({schema.QUERY: m}, boundary="pad").sum()
    nk = wk.coarsen({schema.KEY: m}, boundary="pad").sum()
    return (total / (nq * nk)).transpose(*schema.DIMS)


# --------------------------------------------------------------------------- segments
def _segment_starts(da: xr.DataArray, size: int | None, boundaries: object) -> np.ndarray:
    q = positions(da, schema.QUERY)
    k = positions(da, schema.KEY)
    if q.size == 0 or k.size == 0:
        raise ValueError("segments of an empty attention matrix")
    origin = int(min(q.min(), k.min()))
    last = int(max(q.max(), k.max()))
    if size is not None:
        size = _as_int(size, "size")
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        return np.arange(origin, last + 1, size)
    if isinstance(boundaries, str):
        names = {"sentence": schema.SENTENCE_ID, "paragraph": schema.PARAGRAPH_ID}
        if boundaries not in names:
            raise ValueError(f"boundaries must be 'sentence', 'paragraph' or a list of token offsets, got {boundaries!r}")
        name = names[boundaries]
        if name not in da.coords or da[name].dims != (schema.QUERY,):
            raise ValueError(
                f"boundaries={boundaries!r} needs a {name!r} coordinate along {schema.QUERY!r}; "
                f"this array has coords {sorted(map(str, da.coords))} (extract from text to get it, "
                f"or pass explicit token offsets)"
            )
        if da.sizes[schema.QUERY] != da.sizes[schema.KEY] or not np.array_equal(q, k):
            raise ValueError(f"boundaries={boundaries!r} needs the same positions on query and key")
        ids = np.asarray(da[name].values)
        change = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        return q[change]
    try:
        offsets = np.unique(np.asarray(list(boundaries), dtype=np.int64))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"boundaries must be 'sentence', 'paragraph' or a list of token offsets, got {boundaries!r}") from None
    if offsets.size and (offsets[0] < origin or offsets[-1] > last):
        raise ValueError(f"boundary offsets must lie in the token positions {origin}..{last}, got {offsets.tolist()}")
    if not offsets.size or offsets[0] != origin:
        offsets = np.r_[origin, offsets]
    return offsets


def segments(
    da: xr.DataArray, size: int | None = None, boundaries: str | Sequence[int] | None = None
) -> xr.DataArray:
    """Attention between segments of the text: a ``B x B`` matrix of segment-to-segment mass.

    Cell ``[a, b]`` is the mean, over the queries of segment ``a``, of the total attention
    mass each puts on the keys of segment ``b``. Each row therefore sums to the mean row
    mass of its queries (1 for normalised rows).

    Parameters
    ----------
    size
        Fixed segments of ``size`` tokens, starting at the first position.
    boundaries
        ``"sentence"`` / ``"paragraph"`` (from the ``sentence_id`` / ``paragraph_id``
        coordinates; ``ValueError`` if absent), or an explicit list of token start
        offsets (the first position is always a start). Exactly one of ``size`` and
        ``boundaries`` must be given.

    Returns
    -------
    xr.DataArray
        Lazy, dims ``(layer, head, query_segment, key_segment)``, float32. The
        ``query_segment``/``key_segment`` coordinates are the start positions of the
        segments; ``query_segment_end``/``key_segment_end`` their exclusive ends. A key
        segment with no keys in ``da`` holds 0; a query segment with no queries holds NaN.
    """
    check_attention(da)
    if (size is None) == (boundaries is None):
        raise ValueError("give exactly one of size= or boundaries=")
    for dim in (schema.QUERY, schema.KEY):
        _require_monotonic(da, dim)
    starts = _segment_starts(da, size, boundaries)
    last = int(max(positions(da, schema.QUERY).max(), positions(da, schema.KEY).max()))
    ends = np.r_[starts[1:], last + 1]
    ids = np.arange(starts.size)
    seg_q = np.searchsorted(starts, positions(da, schema.QUERY), side="right") - 1
    seg_k = np.searchsorted(starts, positions(da, schema.KEY), side="right") - 1

    body = _strip_axis_coords(as_float32(da))
    qpos, kpos = positions(da, schema.QUERY), positions(da, schema.KEY)
    contiguous = np.array_equal(qpos, kpos) and np.array_equal(qpos, np.arange(starts[0], starts[0] + qpos.size))
    if size is not None and contiguous:
        # fixed segments on contiguous positions are plain blocks: coarsen (few tasks, chunk-aligned)
        step = int(starts[1] - starts[0]) if starts.size > 1 else qpos.size
        mass = body.coarsen({schema.KEY: step}, boundary="pad").sum()
        out = mass.coarsen({schema.QUERY: step}, boundary="pad").mean()
        out = out.rename({schema.QUERY: QUERY_SEGMENT, schema.KEY: KEY_SEGMENT})
        return _finish_segments(out, da, starts, ends)
    # arbitrary boundaries: group contiguous runs (one slice per segment)
    mass = body.groupby(xr.DataArray(seg_k, dims=(schema.KEY,), name=KEY_SEGMENT)).sum()
    mass = mass.reindex({KEY_SEGMENT: ids}, fill_value=0)
    out = mass.groupby(xr.DataArray(seg_q, dims=(schema.QUERY,), name=QUERY_SEGMENT)).mean()
    out = out.reindex({QUERY_SEGMENT: ids})
    return _finish_segments(out, da, starts, ends)


def _finish_segments(out: xr.DataArray, da: xr.DataArray, starts: np.ndarray, ends: np.ndarray) -> xr.DataArray:
    out = out.transpose(schema.LAYER, schema.HEAD, QUERY_SEGMENT, KEY_SEGMENT)
    out = out.assign_coords(
        {
            QUERY_SEGMENT: starts,
            KEY_SEGMENT: starts,
            QUERY_SEGMENT_END: (QUERY_SEGMENT, ends),
            KEY_SEGMENT_END: (KEY_SEGMENT, ends),
        }
    )
    out.attrs = dict(da.attrs)
    out.name = da.name
    return out


# --------------------------------------------------------------------------- multiscale
@dataclass(frozen=True)
class MultiScaleAttention:
    """Global, segment and local views of one attention matrix (the seed's container).

    Attributes
    ----------
    global_view
        The whole matrix, downsampled when ``N > global_size`` (else the matrix itself).
    segment_view
        Segment-to-segment view, or None when ``N <= 2 * global_size``.
    local_views
        ``{center position: local view}`` around each hotspot (empty when none).
    hotspots
        Positions of the hottest tokens by received attention (averaged over layers and
        heads), hottest first.
    seq_len
        ``N``, the number of query positions of the source.
    """

    global_view: xr.DataArray
    segment_view: xr.DataArray | None = None
    local_views: Mapping[int, xr.DataArray] = field(default_factory=dict)
    hotspots: tuple[int, ...] = ()
    seq_len: int = 0

    def __repr__(self) -> str:
        seg = None if self.segment_view is None else dict(self.segment_view.sizes)
        return (
            f"MultiScaleAttention(seq_len={self.seq_len}, global_view={dict(self.global_view.sizes)}, "
            f"segment_view={seg}, hotspots={list(self.hotspots)}, window sizes="
            f"{ {c: v.sizes[schema.QUERY] for c, v in self.local_views.items()} })"
        )

    @property
    def downsampled(self) -> bool:
        """Whether the global view is smaller than the matrix."""
        return self.global_view.sizes[schema.QUERY] < self.seq_len


def hottest_tokens(da: xr.DataArray, k: int) -> tuple[int, ...]:
    """Positions of the ``k`` keys receiving the most attention (mean over layers/heads).

    Computes: one pass over the array (a received-attention sum).
    """
    check_attention(da)
    received = as_float32(da).sum(schema.QUERY).mean([schema.LAYER, schema.HEAD]).values
    order = np.argsort(-received, kind="stable")[: max(0, k)]
    return tuple(int(p) for p in positions(da, schema.KEY)[order])


def multiscale(
    da: xr.DataArray,
    global_size: int = 256,
    segment_size: int | None = None,
    hotspots: int | Sequence[int] = 5,
    window: int = 64,
    *,
    method: str = "mean",
    pyramid: Mapping[int, xr.Dataset] | None = None,
) -> MultiScaleAttention:
    """All scales at once, following the seed's rule on ``N`` (query length).

    - ``N <= global_size``: nothing is downsampled; ``global_view`` is ``da`` itself.
    - ``N > global_size``: ``global_view = global_view(da, global_size, method)``.
    - ``N > 2 * global_size`` (512 by default): also ``segment_view =
      segments(da, size=segment_size)`` (default ``ceil(N / 64)``, i.e. at most 64
      segments) and ``local_views`` (``keys="window"``, half-width ``window``) at the
      ``hotspots`` hottest tokens.

    ``hotspots`` is a count ``k`` (then the hottest tokens are found by received attention
    averaged over layers and heads, which *computes* one pass over the array) or an
    explicit sequence of positions (then nothing is computed). All views stay lazy.
    """
    check_attention(da)
    n = da.sizes[schema.QUERY]
    if n <= global_size:
        return MultiScaleAttention(global_view=da, seq_len=n)
    gv = global_view(da, global_size, method, pyramid=pyramid)
    if n <= 2 * global_size:
        return MultiScaleAttention(global_view=gv, seq_len=n)
    seg = segments(da, size=segment_size if segment_size is not None else math.ceil(n / 64))
    if isinstance(hotspots, (int, np.integer)) and not isinstance(hotspots, bool):
        spots = hottest_tokens(da, int(hotspots))
    else:
        spots = tuple(_as_int(p, "hotspot") for p in hotspots)  # type: ignore[union-attr]
    locals_ = {p: local(da, p, window) for p in spots}
    return MultiScaleAttention(global_view=gv, segment_view=seg, local_views=locals_, hotspots=spots, seq_len=n)
