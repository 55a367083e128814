"""Plots of attention views (optional ``viz`` extra: matplotlib, imported lazily).

Examples
--------
>>> from sharingan_store.testing import synthetic_attention
>>> from sharingan_store.viz import heatmap
>>> ax = heatmap(synthetic_attention(num_layers=1, num_heads=1, seq_len=8), log=True)
>>> [t.get_text() for t in ax.get_xticklabels()][:3]
['t0', 't1', 't2']
"""

from __future__ import annotations

from sharingan_store.viz.heatmap import MAX_LABELS, heatmap, save, to_2d
from sharingan_store.viz.multiscale import plot_multiscale

__all__ = ["MAX_LABELS", "heatmap", "plot_multiscale", "save", "to_2d"]
