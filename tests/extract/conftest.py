"""Fixtures for the extraction tests: the offline MiniLM and a cache of tiny models."""

from __future__ import annotations

import pytest

from sharingan_store.testing import load_minilm, tiny_model


@pytest.fixture(scope="session")
def minilm():
    """The real pretrained all-MiniLM-L6-v2 ``(model, tokenizer)``, loaded once."""
    return load_minilm()


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
