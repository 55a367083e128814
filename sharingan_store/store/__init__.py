"""Storage layer: the catalog of runs, provenance, backends, reading and extraction into runs."""

from __future__ import annotations

from sharingan_store.store.catalog import RUN_COLUMNS, Catalog

__all__ = ["RUN_COLUMNS", "Catalog"]
