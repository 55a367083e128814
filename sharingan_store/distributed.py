"""One lazy dask graph over many runs: :func:`map_runs`.

``map_runs(store, fn)`` opens every run (metadata only), applies ``fn`` — which takes an
:class:`~sharingan_store.run.AttentionRun` and returns a *lazy* xarray object, e.g.
``lambda r: r.entropy().mean("query")`` — and concatenates the results along a new
``run`` dimension. Nothing is computed: the result is one dask graph, so
``.compute()`` runs on whatever scheduler is active, a ``dask.distributed`` cluster
included.

The graph holds no attention data: its leaves are zarr arrays, which pickle as the store
URL (or path) plus the array metadata, so every worker reads the chunks it needs from the
store itself (local disk shared by the workers, or object storage such as ``s3://``).

Examples
--------
>>> import tempfile, torch
>>> import sharingan_store as ss
>>> from sharingan_store.testing import tiny_model
>>> store = ss.open_store(tempfile.mkdtemp() + "/s")
>>> model = tiny_model("llama")
>>> for i in range(3):
...     _ = store.extract(model, input_ids=torch.arange(1, 20 + i), run=f"r{i}", progress=False)
>>> mean_entropy = map_runs(store, lambda r: r.entropy().mean("query"))
>>> mean_entropy.dims, list(mean_entropy["run"].values)
(('run', 'layer', 'head'), ['r0', 'r1', 'r2'])
>>> mean_entropy.compute().shape
(3, 2, 4)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import xarray as xr

from sharingan_store import schema
from sharingan_store.api import Store, open_store
from sharingan_store.run import AttentionRun

__all__ = ["RUN_DIM", "map_runs"]

#: Name of the dimension that indexes the runs in :func:`map_runs` results.
RUN_DIM = schema.RUN


def _as_store(store_or_url: Store | str | os.PathLike[str], storage_options: dict[str, Any] | None) -> Store:
    if isinstance(store_or_url, Store):
        if storage_options:
            raise ValueError("storage_options apply when a URL is given, not an open Store")
        return store_or_url
    if hasattr(store_or_url, "open") and hasattr(store_or_url, "run_ids"):  # a Store-like object
        return store_or_url  # type: ignore[return-value]
    return open_store(store_or_url, mode="r", storage_options=storage_options)


def _object_string_coords(obj: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
    """Non-index string coords as ``object``, so an outer join can fill them (numpy strings take no NaN)."""
    fix = {name: c.astype(object) for name, c in obj.coords.items()
           if name not in obj.indexes and c.dtype.kind in "UST"}
    return obj.assign_coords(fix) if fix else obj


def map_runs(
    store_or_url: Store | str | os.PathLike[str],
    fn: Callable[[AttentionRun], xr.DataArray | xr.Dataset],
    runs: Sequence[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    join: str = "outer",
    skip_incomplete: bool = True,
) -> xr.DataArray | xr.Dataset:
    """Apply ``fn`` to many runs and stack the lazy results along a new ``run`` dimension.

    Parameters
    ----------
    store_or_url
        An open :class:`~sharingan_store.Store`, or its URL/path (opened read only).
    fn
        ``fn(run) -> xr.DataArray | xr.Dataset``, lazy (dask-backed) for the result to stay lazy;
        e.g. ``lambda r: r.entropy().mean("query")`` or ``lambda r: r.sel(layer=0).sinks_mass()``.
        Results must share their dims (not necessarily their sizes: see ``join``).
    runs
        Run ids; ``None``: every complete run of the store (sorted).
    storage_options
        fsspec options when ``store_or_url`` is a URL (``s3://…``).
    join
        How differing coordinates are aligned before stacking (``"outer"`` fills with NaN,
        e.g. per-query results of runs of different lengths; ``"exact"`` refuses).
    skip_incomplete
        With ``runs=None``, leave out runs whose status is not ``complete`` (an explicit
        incomplete run raises :class:`~sharingan_store.errors.RunIncompleteError`).

    Returns
    -------
    xr.DataArray or xr.Dataset
        Indexed by ``run`` (first dim), lazy until ``.compute()``.

    Raises
    ------
    ValueError
        No runs to map, or ``fn`` returned something that is not an xarray object.
    """
    store = _as_store(store_or_url, storage_options)
    if runs is None:
        ids = store.run_ids()
        if skip_incomplete:
            ids = [r for r in ids if store.run_group(r).attrs.get(schema.STATUS) == schema.STATUS_COMPLETE]
    else:
        if isinstance(runs, str):
            runs = [runs]
        ids = list(runs)
        if len(set(ids)) != len(ids):
            raise ValueError(f"run ids must be unique, got {ids}")
    if not ids:
        raise ValueError(f"no runs to map over in {store.url}")
    results = []
    for run_id in ids:
        out = fn(store.open(run_id))
        if not isinstance(out, (xr.DataArray, xr.Dataset)):
            raise ValueError(f"fn must return an xarray DataArray or Dataset, got {type(out).__name__} for run "
                             f"{run_id!r}")
        if RUN_DIM in out.dims:
            raise ValueError(f"fn's result already has a {RUN_DIM!r} dim")
        results.append(_object_string_coords(out))
    index = pd.Index(ids, name=RUN_DIM, dtype=object)
    # coords="different": per-token coords that differ between runs (query_token…) gain a run dim
    stacked = xr.concat(results, dim=index, join=join, coords="different", compat="equals",
                        combine_attrs="drop_conflicts")
    if isinstance(stacked, xr.DataArray) and stacked.name is None:
        stacked.name = getattr(results[0], "name", None)
    return stacked
