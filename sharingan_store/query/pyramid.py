"""Lazy reads of a run's multiscale pyramid (written by :mod:`sharingan_store.write.pyramid`).

Examples
--------
>>> levels = open_pyramid("my-store", "run-1")  # doctest: +SKIP
>>> sorted(levels)  # doctest: +SKIP
[2, 4, 8]
>>> levels[4]["mean"].dims  # doctest: +SKIP
('layer', 'head', 'query', 'key')
"""

from __future__ import annotations

from typing import Any

import xarray as xr
import zarr

from sharingan_store import schema

__all__ = ["open_pyramid"]

_MULTISCALES_ATTR = schema.MULTISCALES_ATTR


def open_pyramid(store: Any, run_id: str) -> dict[int, xr.Dataset]:
    """``{factor: Dataset(mean, max)}`` of a run's pyramid, dask-backed; ``{}`` when absent.

    Parameters
    ----------
    store
        Store URL/path, a zarr store, or the store's root :class:`zarr.Group`.
    run_id
        The run.
    """
    if isinstance(store, zarr.Group):
        prefix = store.path.strip("/")
        zstore = store.store
    else:
        prefix, zstore = "", store
    base = "/".join(p for p in (prefix, schema.run_path(run_id), schema.PYRAMID_GROUP) if p)
    try:
        pg = zarr.open_group(zstore, path=base, mode="r", use_consolidated=False)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return {}
    meta = pg.attrs.get(_MULTISCALES_ATTR)
    if not meta:
        return {}
    out: dict[int, xr.Dataset] = {}
    for d in meta[0]["datasets"]:
        out[int(d["factor"])] = xr.open_zarr(zstore, group=f"{base}/{d['path']}", consolidated=False)
    return out
