"""Heatmaps and the multiscale figure, drawn with the Agg backend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from sharingan_store.query.views import global_view, multiscale, segments
from sharingan_store.testing import synthetic_attention
from sharingan_store.viz import heatmap, plot_multiscale, save, to_2d


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_heatmap_small_has_token_labels_and_colorbar(tmp_path):
    da = synthetic_attention(1, 1, 12)
    ax = heatmap(da, title="tiny")
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"t{i}" for i in range(12)]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"t{i}" for i in range(12)]
    assert ax.get_title() == "tiny"
    assert len(ax.figure.axes) == 2  # image + colour bar
    out = save(ax.figure, tmp_path / "tiny.png", dpi=50)
    assert png_size(tmp_path / "tiny.png") == (300, 250)
    assert out.endswith("tiny.png")


def test_heatmap_large_has_no_token_labels():
    ax = heatmap(synthetic_attention(1, 1, 100).isel(layer=0, head=0))
    assert "t1" not in [t.get_text() for t in ax.get_xticklabels()]


def test_heatmap_log_scale_with_zeros(tmp_path):
    da = synthetic_attention(1, 1, 20)  # causal: zeros above the diagonal
    ax = heatmap(da, log=True, labels=False)
    image = ax.images[0]
    assert type(image.norm).__name__ == "LogNorm" and image.norm.vmin > 0
    assert np.isfinite(np.asarray(image.get_array())).all()
    save(ax.figure, tmp_path / "log.png")
    assert png_size(tmp_path / "log.png") == (600, 500)


def test_heatmap_into_given_axes_and_views(chunked=True):
    da = synthetic_attention(2, 2, 80).chunk({"query": 16, "key": 16})
    fig = Figure(figsize=(8, 4))
    a1, a2 = fig.subplots(1, 2)
    heatmap(global_view(da, 10).isel(layer=[0], head=[1]), ax=a1)
    heatmap(segments(da, size=20).isel(layer=0, head=0), ax=a2)
    assert a1.get_xlabel() == "key" and a2.get_xlabel() == "key_segment"
    assert [t.get_text() for t in a1.get_xticklabels()][:2] == ["t0", "t8"]


def test_heatmap_needs_one_layer_head():
    with pytest.raises(ValueError, match="select one"):
        heatmap(synthetic_attention(2, 1, 8))
    with pytest.raises(ValueError, match="2-D"):
        to_2d(np.zeros((2, 2, 2)))
    assert to_2d(np.eye(3)).dims == ("row", "column")


def test_plot_multiscale(tmp_path):
    da = synthetic_attention(2, 2, 140).chunk({"query": 32, "key": 32})
    ms = multiscale(da, global_size=32, segment_size=20, hotspots=[0, 70], window=5)
    fig = plot_multiscale(ms)
    assert len([ax for ax in fig.axes if ax.images]) == 4  # global, segments, 2 local
    save(fig, tmp_path / "ms.png", dpi=40)
    assert png_size(tmp_path / "ms.png") == (800, 180)


def test_plot_multiscale_small():
    ms = multiscale(synthetic_attention(1, 1, 20))
    fig = plot_multiscale(ms)
    assert len([ax for ax in fig.axes if ax.images]) == 1
