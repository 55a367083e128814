"""Lazy matplotlib import with a clear message when the ``viz`` extra is missing."""

from __future__ import annotations

from types import ModuleType


def require_matplotlib() -> ModuleType:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "sharingan_store.viz needs matplotlib: install the 'viz' extra "
            "(pip install 'sharingan-store[viz]')"
        ) from exc
    return matplotlib
