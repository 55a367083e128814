"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest

from sharingan_store.testing import load_minilm


@pytest.fixture(scope="session")
def minilm():
    """The real pretrained all-MiniLM-L6-v2 ``(model, tokenizer)``, offline, loaded once per session."""
    return load_minilm()
