"""The write layer: codec presets, chunk layout, the streaming :class:`RunWriter`, the pyramid.

Examples
--------
>>> from sharingan_store.write import CodecSpec, choose_layout
>>> choose_layout(1024, 512).chunks
(1, 1, 512, 512)
>>> CodecSpec().cname
'zstd'
"""

from __future__ import annotations

from sharingan_store.write.codecs import CodecSpec, decode_storage, to_storage_numpy
from sharingan_store.write.layout import RunLayout, choose_layout
from sharingan_store.write.pyramid import PyramidAccumulator, build_pyramid, pyramid_factors
from sharingan_store.write.writer import RunWriter

__all__ = [
    "CodecSpec",
    "PyramidAccumulator",
    "RunLayout",
    "RunWriter",
    "build_pyramid",
    "choose_layout",
    "decode_storage",
    "pyramid_factors",
    "to_storage_numpy",
]
