"""Turning a URL into a zarr v3 store: local paths, fsspec URLs (``s3://``, ``memory://``…), zip archives.

Examples
--------
>>> store = make_zarr_store("memory://doc-example", mode="a")
>>> type(store).__name__
'FsspecStore'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import zarr
import zarr.storage

__all__ = ["MODES", "is_remote", "make_zarr_store", "normalize_url", "read_mode"]

#: ``"r"`` read only; ``"r+"`` read/write an existing store; ``"a"`` read/write, create when missing;
#: ``"w"`` create, erasing whatever is there.
MODES = ("r", "r+", "a", "w")


def is_remote(url: str) -> bool:
    """Whether ``url`` names an fsspec protocol other than the local file system."""
    return "://" in url and not url.startswith("file://")


def normalize_url(url: str | os.PathLike[str]) -> str:
    """Local paths become absolute; URLs are kept as given."""
    url = os.fspath(url)
    if is_remote(url):
        return url
    if url.startswith("file://"):
        url = url[len("file://"):]
    return str(Path(url).expanduser().absolute())


def make_zarr_store(url: str | os.PathLike[str], mode: str = "a", storage_options: dict[str, Any] | None = None) -> Any:
    """A zarr v3 store object for ``url``.

    A path ending in ``.zip`` is a zarr zip archive (written once, then read with
    ``mode="r"``); ``scheme://`` URLs go through fsspec with ``storage_options``; anything
    else is a local directory.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    url = normalize_url(url)
    read_only = mode == "r"
    if url.endswith(".zip") and not is_remote(url):
        if read_only and not Path(url).exists():
            raise FileNotFoundError(f"no zip archive at {url}")
        zip_mode = "r" if read_only else ("w" if mode == "w" or not Path(url).exists() else "a")
        return zarr.storage.ZipStore(url, mode=zip_mode, read_only=read_only)
    if is_remote(url):
        return zarr.storage.FsspecStore.from_url(url, storage_options=storage_options or {}, read_only=read_only)
    if storage_options:
        raise ValueError("storage_options apply to fsspec URLs (s3://, gs://, memory://...), not to local paths")
    return zarr.storage.LocalStore(url, read_only=read_only)


def read_mode(zstore: Any) -> str:
    """The zarr mode for reading nodes of ``zstore``: ``"r"`` on read-only stores, else ``"r+"``.

    zarr refuses ``mode="r"`` on a writable store it cannot reopen read-only (a zip archive
    opened for appending), and ``"r+"`` never writes by itself.
    """
    return "r" if getattr(zstore, "read_only", False) else "r+"
