"""Query layer: lazy views (local, global, segments, multiscale) and pyramid reads over attention DataArrays."""

from __future__ import annotations

from sharingan_store.query.pyramid import open_pyramid
from sharingan_store.query.views import MultiScaleAttention, global_view, local, multiscale, segments

__all__ = ["MultiScaleAttention", "global_view", "local", "multiscale", "open_pyramid", "segments"]
