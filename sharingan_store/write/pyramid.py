"""The multiscale pyramid of a run: mean and max of ``f × f`` cells at factors ``f = 2**k``.

Layout (DESIGN.md §3 ``pyramid/``)::

    runs/<id>/pyramid/            attrs: {"multiscales": [{"name", "axes", "datasets", "metadata"}]}
        f<f>/mean, f<f>/max       (layer, head, query, key) float32, ceil(N/f) × ceil(N/f)
        f<f>/query, f<f>/key      first token position of each cell: 0, f, 2f, …
        f<f>/layer, f<f>/head     the run's layer/head coordinates

Levels: every ``f = 2**k`` (k ≥ 1) with ``min_level_size <= ceil(N/f) <= max_level_size`` (16
and 512 by default) — the finest level has at most ``max_level_size`` cells per side, the coarsest
``min_level_size``. Cells at the lower/right
edge that extend past ``N`` are partial: ``mean`` averages only their in-bounds entries
(zeros above a causal diagonal are entries). Values are pooled from the *stored* values
(after the storage cast and bit-rounding) so a pyramid view equals the same reduction of
the full-resolution data.

Levels are computed from each submitted block on its device — the finest level by one
reduction over the cell rows and then the keys, coarser levels by
halving the finest — and buffered per (layer, head block) until all rows are
in, then each level array is written once. Buffer memory per (layer, head block) is about
``h × 8 × (4/3) × max_level_size**2`` bytes (about 2.7 MiB per head at the default 512).

Examples
--------
>>> pyramid_factors(10, min_level_size=2)
[2, 4, 8]
>>> pyramid_factors(32768)[:2]
[64, 128]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import zarr

from sharingan_store import schema
from sharingan_store.write._util import (
    MULTISCALES_ATTR,
    PYRAMID_METHODS,
    WRITE_ATTR,
    consolidate,
    create_coord,
    level_name,
    open_plain,
    refresh_root_index,
)
from sharingan_store.write.codecs import CodecSpec, decode_storage
from sharingan_store.write.layout import RunLayout

__all__ = [
    "AUTO_PYRAMID_MIN_LEN",
    "DEFAULT_MAX_LEVEL_SIZE",
    "DEFAULT_MIN_LEVEL_SIZE",
    "PyramidAccumulator",
    "build_pyramid",
    "create_pyramid_group",
    "pyramid_factors",
    "write_pyramid_levels",
]

#: The finest stored level has at most this many cells per axis. Finer levels cost as many
#: bytes as the data itself and are rarely what a global view asks for.
DEFAULT_MAX_LEVEL_SIZE = 512
#: Coarser levels than this are not stored (a global view that small coarsens a stored level).
DEFAULT_MIN_LEVEL_SIZE = 16
#: ``pyramid=None`` (auto) writes a pyramid only for runs at least this long; shorter runs
#: are scanned in full faster than the pyramid's files are opened.
AUTO_PYRAMID_MIN_LEN = 2048
_LEVEL_CHUNK = 512


def pyramid_factors(seq_len: int, max_level_size: int = DEFAULT_MAX_LEVEL_SIZE,
                    min_level_size: int = DEFAULT_MIN_LEVEL_SIZE) -> list[int]:
    """Factors ``2**k`` (k ≥ 1) with ``min_level_size <= ceil(seq_len/f) <= max_level_size``.

    Examples
    --------
    >>> pyramid_factors(4096, max_level_size=1024, min_level_size=2)
    [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    >>> pyramid_factors(16384)
    [32, 64, 128, 256, 512, 1024]
    >>> pyramid_factors(2)
    []
    """
    if max_level_size < 1:
        raise ValueError(f"max_level_size must be >= 1, got {max_level_size}")
    out = []
    f = 2
    while math.ceil(seq_len / f) >= min_level_size:
        if math.ceil(seq_len / f) <= max_level_size:
            out.append(f)
        f *= 2
    return out


def _halve(s: torch.Tensor, m: torch.Tensor, r0: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pool partial level arrays ``[h, R, C]`` (first row = cell row ``r0``) by 2 on both axes.

    Missing rows/columns (unaligned start, odd end) are zero-padded, which is exact for sums
    and for maxima of non-negative values. Strided adds are memory-bound (far faster on CPU
    than pooling kernels), and each cell is reduced in a fixed pairwise order independent
    of the head grouping, so the writer's and :func:`build_pyramid`'s results are identical.
    """
    top = r0 % 2
    bottom = (top + s.shape[1]) % 2
    right = s.shape[2] % 2
    if top or bottom or right:
        s = F.pad(s, (0, right, top, bottom))
        m = F.pad(m, (0, right, top, bottom))
    s = s[:, 0::2] + s[:, 1::2]
    s = s[:, :, 0::2] + s[:, :, 1::2]
    m = torch.maximum(m[:, 0::2], m[:, 1::2])
    m = torch.maximum(m[:, :, 0::2], m[:, :, 1::2])
    return s, m, r0 // 2


def _pool_rows_then_keys(x: torch.Tensor, q0: int, f: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sums and maxima of ``f×f`` cells of rows ``[q0, q0+R)`` of ``x`` ``[h, R, W]`` (any float dtype).

    Reduces the ``f`` rows of each cell first (a contiguous, vectorised reduction), then the
    keys of the ``f``-times smaller result, in float32. Unaligned first/last rows and the last keys are zero-padded (exact for sums and
    for maxima of non-negative values). Returns ``(sum, max, first cell row)``; the result
    depends only on the block's values, so extraction and :func:`build_pyramid` agree bit for bit.
    """
    top = q0 % f
    bottom = -(top + x.shape[1]) % f
    right = -x.shape[2] % f
    if top or bottom or right:
        x = F.pad(x, (0, right, top, bottom))
    h, rows, width = x.shape
    # one float32 copy first: summing half-precision input with dtype=float32 is ~4x slower on CPU
    cells = x.to(torch.float32).reshape(h, rows // f, f, width)
    s = cells.sum(2)
    m = cells.amax(2)
    s = s.reshape(h, rows // f, width // f, f).sum(-1)
    m = m.reshape(h, rows // f, width // f, f).amax(-1)
    return s, m, q0 // f


class PyramidAccumulator:
    """Level sums/maxima of one (layer, head block), filled block by block.

    Parameters
    ----------
    seq_len
        ``N``.
    factors
        Increasing powers of two (see :func:`pyramid_factors`).
    num_heads
        Heads in the block (first axis of every submitted block).
    device
        Where the buffers live (the blocks' device).

    Examples
    --------
    >>> acc = PyramidAccumulator(4, [2], 1)
    >>> acc.add(0, 4, torch.arange(16.).reshape(1, 4, 4), kend=4)
    True
    >>> acc.result()[2][0][0]  # mean
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """

    def __init__(self, seq_len: int, factors: Sequence[int], num_heads: int,
                 device: torch.device | str = "cpu") -> None:
        self.seq_len = seq_len
        self.factors = list(factors)
        if any(f & (f - 1) or f < 2 for f in self.factors) or self.factors != sorted(self.factors):
            raise ValueError(f"factors must be increasing powers of two >= 2, got {self.factors}")
        self.rows_done = 0
        self._sum: dict[int, torch.Tensor] = {}
        self._max: dict[int, torch.Tensor] = {}
        for f in self.factors:
            n = math.ceil(seq_len / f)
            self._sum[f] = torch.zeros((num_heads, n, n), dtype=torch.float32, device=device)
            self._max[f] = torch.zeros((num_heads, n, n), dtype=torch.float32, device=device)

    def add(self, q0: int, q1: int, block: torch.Tensor, kend: int | None = None) -> bool:
        """Fold rows ``[q0, q1)`` of ``block`` (``[h, q1-q0, >= kend]``, values ≥ 0) in.

        Keys at or beyond ``kend`` must be zero (causal upper triangle) and are skipped.
        Returns ``True`` once all ``seq_len`` rows have been added.
        """
        if not self.factors:
            self.rows_done += q1 - q0
            return self.rows_done >= self.seq_len
        kend = self.seq_len if kend is None else kend
        s, m, r0 = _pool_rows_then_keys(block[..., :kend], q0, self.factors[0])
        cur = self.factors[0]
        for f in self.factors:
            while cur < f:
                s, m, r0 = _halve(s, m, r0)
                cur *= 2
            nr, nc = s.shape[1], s.shape[2]
            self._sum[f][:, r0:r0 + nr, :nc] += s
            dst = self._max[f][:, r0:r0 + nr, :nc]
            torch.maximum(dst, m, out=dst)
        self.rows_done += q1 - q0
        return self.rows_done >= self.seq_len

    def result(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``{f: (mean, max)}`` as float32 numpy arrays ``[h, n_f, n_f]``."""
        out = {}
        for f in self.factors:
            n = math.ceil(self.seq_len / f)
            counts = torch.clamp(self.seq_len - torch.arange(n, device=self._sum[f].device) * f, max=f)
            counts = counts.to(torch.float32)
            mean = self._sum[f] / (counts[:, None] * counts[None, :])
            out[f] = (mean.cpu().numpy(), self._max[f].cpu().numpy())
        return out


def create_pyramid_group(run_group: zarr.Group, factors: Sequence[int], *, name: str,
                         overwrite: bool = False) -> zarr.Group:
    """Create ``pyramid/`` in ``run_group`` with empty level arrays and ``multiscales`` attrs."""
    layer = np.asarray(run_group[schema.LAYER][:])
    head = np.asarray(run_group[schema.HEAD][:])
    n = int(run_group[schema.QUERY].shape[0])
    datasets = [
        {"path": level_name(f), "factor": int(f),
         "coordinateTransformations": [{"type": "scale", "scale": [1, 1, int(f), int(f)]}]}
        for f in factors
    ]
    attrs = {MULTISCALES_ATTR: [{
        "name": name,
        "version": "sharingan-1",
        "axes": [{"name": d} for d in schema.DIMS],
        "datasets": datasets,
        "metadata": {"methods": list(PYRAMID_METHODS)},
    }]}
    pg = run_group.create_group(schema.PYRAMID_GROUP, attributes=attrs, overwrite=overwrite)
    pipe = CodecSpec(shuffle="shuffle").pipeline("float32")
    for f in factors:
        lg = pg.create_group(level_name(f))
        nf = math.ceil(n / f)
        c = min(nf, _LEVEL_CHUNK)
        for method in PYRAMID_METHODS:
            lg.create_array(
                method, shape=(len(layer), len(head), nf, nf), dtype="float32",
                chunks=(1, 1, c, c), fill_value=0.0, dimension_names=list(schema.DIMS),
                config={"write_empty_chunks": True}, **pipe,
            )
        create_coord(lg, schema.LAYER, schema.LAYER, layer)
        create_coord(lg, schema.HEAD, schema.HEAD, head)
        create_coord(lg, schema.QUERY, schema.QUERY, np.arange(nf, dtype=np.int64) * f)
        create_coord(lg, schema.KEY, schema.KEY, np.arange(nf, dtype=np.int64) * f)
    return pg


def write_pyramid_levels(pyramid_group: zarr.Group, layer_pos: int, head_positions: Sequence[int],
                         levels: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write each level's ``mean``/``max`` of one (layer, head block): one write per contiguous head run."""
    from sharingan_store.write._util import contiguous_runs

    for f, arrays in levels.items():
        lg = pyramid_group[level_name(f)]
        for method, values in zip(PYRAMID_METHODS, arrays):
            arr = lg[method].with_config({"write_empty_chunks": True})
            for start, stop, off in contiguous_runs(head_positions):
                arr[layer_pos, start:stop] = values[off:off + stop - start]


def _factors_of(pyramid_group: zarr.Group) -> list[int]:
    meta = pyramid_group.attrs[MULTISCALES_ATTR][0]
    return [int(d["factor"]) for d in meta["datasets"]]


def build_pyramid(run: zarr.Group | str, run_id: str | None = None, *,
                  max_level_size: int = DEFAULT_MAX_LEVEL_SIZE, min_level_size: int = DEFAULT_MIN_LEVEL_SIZE,
                  factors: Sequence[int] | None = None, device: str | torch.device = "cpu",
                  overwrite: bool = True) -> list[int]:
    """Build (or rebuild) the pyramid of an existing run from its full-resolution chunks.

    Reads one query block of one head at a time (memory ≈ ``q_block × N`` values plus the
    level buffers of one head), in the same blocks the writer used, so the result is
    identical to the pyramid written during extraction. Re-consolidates the run and the
    store root afterwards; the run's status is not changed.

    Parameters
    ----------
    run
        The run's zarr group, or a store URL/path (then ``run_id`` is required).
    run_id
        Run id when ``run`` is a store URL.
    max_level_size, factors
        Level selection (see :func:`pyramid_factors`); ``factors`` overrides. By default an
        existing pyramid is rebuilt with its own factors (level ``f`` is pooled from level
        ``f/2``, so the set of factors fixes the float32 summation order).
    device
        Torch device used for pooling.
    overwrite
        Replace an existing ``pyramid/`` group.

    Returns
    -------
    list of int
        The factors built.

    Examples
    --------
    >>> build_pyramid("my-store", "run-1")  # doctest: +SKIP
    [2, 4, 8, 16]
    """
    if isinstance(run, zarr.Group):
        run_group = open_plain(run.store, run.path)
    else:
        if run_id is None:
            raise ValueError("run_id is required when run is a store URL")
        run_group = open_plain(run, schema.run_path(run_id))
    att = run_group[schema.ATTENTION]
    info = dict(att.attrs[WRITE_ATTR])
    layout = RunLayout.from_dict(info["layout"])
    codec = CodecSpec.from_dict(info["codec"])
    causal = bool(info["causal"])
    storage_dtype = att.attrs[schema.STORAGE_DTYPE_ATTR]
    n = layout.seq_len
    if factors is not None:
        fs = list(factors)
    elif (schema.PYRAMID_GROUP in run_group and max_level_size == DEFAULT_MAX_LEVEL_SIZE
          and min_level_size == DEFAULT_MIN_LEVEL_SIZE):
        fs = _factors_of(run_group[schema.PYRAMID_GROUP])  # rebuild the same levels
    else:
        fs = pyramid_factors(n, max_level_size, min_level_size)
    pg = create_pyramid_group(run_group, fs, name=run_group.path.rsplit("/", 1)[-1], overwrite=overwrite)
    del codec  # stored values are already rounded; decoding is all we need
    nl, nh = att.shape[0], att.shape[1]
    for lp in range(nl):
        for hp in range(nh):
            acc = PyramidAccumulator(n, fs, 1, device=device)
            for q0, q1 in layout.q_blocks():
                kend = layout.key_end(q1, causal)
                raw = np.asarray(att[lp, hp:hp + 1, q0:q1, :kend])
                block = torch.from_numpy(decode_storage(raw, storage_dtype)).to(device)
                acc.add(q0, q1, block, kend)
            write_pyramid_levels(pg, lp, [hp], acc.result())
    consolidate(run_group)
    refresh_root_index(run_group)
    return fs
