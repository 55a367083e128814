"""Helpers for tests, benchmarks and notebooks: tiny random-weight models and synthetic attention."""

from __future__ import annotations

from sharingan_store.testing.models import TINY_FAMILIES, load_minilm, tiny_model
from sharingan_store.testing.reference import eager_attentions
from sharingan_store.testing.synthetic import synthetic_attention

__all__ = ["TINY_FAMILIES", "eager_attentions", "load_minilm", "synthetic_attention", "tiny_model"]
