"""Shared helpers of the write layer: extra attribute names and zarr plumbing.

Attribute and group names are re-exported from :mod:`sharingan_store.schema`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from sharingan_store import schema

WRITE_ATTR = schema.WRITE_ATTR
PROGRESS_GROUP = schema.PROGRESS_GROUP
PROGRESS_ARRAY = schema.PROGRESS_ARRAY
MULTISCALES_ATTR = schema.MULTISCALES_ATTR
PYRAMID_METHODS = schema.PYRAMID_METHODS


def level_name(f: int) -> str:
    """``"f{f}"``, the group of pyramid level ``f``.

    Examples
    --------
    >>> level_name(4)
    'f4'
    """
    return f"f{f}"


_CONSOLIDATED_WARNING = "Consolidated metadata is currently not part in the Zarr format 3"


def consolidate(group: zarr.Group) -> None:
    """``zarr.consolidate_metadata`` on ``group`` with zarr's v3-spec warning silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CONSOLIDATED_WARNING)
        zarr.consolidate_metadata(group.store, path=group.path)


def open_plain(store: Any, path: str, mode: str = "r+") -> zarr.Group:
    """Open ``path`` ignoring consolidated metadata (which may be stale while writing)."""
    return zarr.open_group(store, path=path, mode=mode, use_consolidated=False, zarr_format=3)


def root_of(run_group: zarr.Group) -> zarr.Group:
    """The store-root group of a run group at ``<root>/runs/<id>``."""
    parts = run_group.path.strip("/").split("/")
    root_path = "/".join(parts[:-2])
    return open_plain(run_group.store, root_path)


def refresh_root_index(run_group: zarr.Group) -> None:
    """Re-consolidate the store root (the index plain xarray reads).

    ``xr.open_zarr(url, group="runs/<id>")`` reads consolidated metadata at the *store
    root*, and a stale root index hides new runs or shows old attrs, so the writer refreshes
    it after every status change.
    """
    consolidate(root_of(run_group))


def checked_compressors() -> tuple[Any, ...]:
    """Compressors of the small arrays (coordinates, token ids, progress): zstd, then a crc32c,
    so that every chunk of a run carries a checksum, not only the attention chunks."""
    return (zarr.codecs.ZstdCodec(level=3), zarr.codecs.Crc32cCodec())


def create_coord(group: zarr.Group, name: str, dim: str, values: np.ndarray,
                 attrs: dict[str, Any] | None = None) -> None:
    """A 1-D array ``name`` along ``dim`` holding ``values`` (strings become vlen UTF-8)."""
    values = np.asarray(values)
    if values.dtype.kind in "UO" or values.dtype.kind == "T":
        arr = group.create_array(name, shape=values.shape, dtype=str, dimension_names=[dim],
                                 attributes=attrs or {}, overwrite=True, compressors=checked_compressors())
        arr[:] = values.astype(str)
    else:
        group.create_array(name, data=values, dimension_names=[dim], attributes=attrs or {},
                           overwrite=True, compressors=checked_compressors())


def contiguous_runs(positions: Sequence[int]) -> list[tuple[int, int, int]]:
    """Split sorted-or-not positions into ``(start, stop, offset)`` contiguous runs.

    ``offset`` is the index of ``start`` in ``positions``.

    Examples
    --------
    >>> contiguous_runs([0, 1, 3])
    [(0, 2, 0), (3, 4, 2)]
    """
    out: list[tuple[int, int, int]] = []
    i = 0
    pos = list(positions)
    while i < len(pos):
        j = i
        while j + 1 < len(pos) and pos[j + 1] == pos[j] + 1:
            j += 1
        out.append((pos[i], pos[j] + 1, i))
        i = j + 1
    return out


__all__ = [
    "MULTISCALES_ATTR",
    "PROGRESS_ARRAY",
    "PROGRESS_GROUP",
    "PYRAMID_METHODS",
    "WRITE_ATTR",
    "consolidate",
    "contiguous_runs",
    "create_coord",
    "level_name",
    "open_plain",
    "refresh_root_index",
    "root_of",
]
