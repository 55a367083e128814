"""sharingan_store: the warehouse for transformer attention.

Exact, memory-bounded attention extraction from Hugging Face models into chunked,
compressed zarr v3 stores, queried lazily with xarray/dask.
"""

from __future__ import annotations

from sharingan_store import accessor as _accessor  # noqa: F401  (registers the ``da.attn`` accessor)
from sharingan_store.api import Store, open_run, open_store
from sharingan_store.errors import (
    FormatError,
    IntegrityError,
    ReadOnlyError,
    RunExistsError,
    RunIncompleteError,
    RunNotFoundError,
    SelectionError,
    SharinganError,
    UnsupportedModelError,
)
from sharingan_store.distributed import map_runs
from sharingan_store.run import AttentionRun

__version__ = "0.1.0"

__all__ = [
    "AttentionRun",
    "FormatError",
    "IntegrityError",
    "ReadOnlyError",
    "RunExistsError",
    "RunIncompleteError",
    "RunNotFoundError",
    "SelectionError",
    "SharinganError",
    "Store",
    "UnsupportedModelError",
    "__version__",
    "map_runs",
    "open_run",
    "open_store",
]
