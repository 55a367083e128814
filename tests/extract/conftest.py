"""Fixtures for the extraction tests: a cache of tiny models (the MiniLM fixture is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from sharingan_store.testing import tiny_model


@pytest.fixture(scope="session")
def tiny_models():
    """Cache of tiny models by family (built once per session; tests must not mutate weights)."""
    cache: dict[tuple, object] = {}

    def get(family: str, **kw):
        key = (family, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = tiny_model(family, **kw)
        return cache[key]

    return get
