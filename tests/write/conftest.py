"""Fixtures of the write-layer tests: a real zarr store in tmp_path and causal blocks."""

from __future__ import annotations

import pytest
import zarr

from sharingan_store import schema


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "store"
    zarr.open_group(path, mode="w", zarr_format=3,
                    attributes={schema.ROOT_ATTR: {"format_version": schema.FORMAT_VERSION}})
    return path


@pytest.fixture
def root(store_path):
    return zarr.open_group(store_path, mode="r+")
