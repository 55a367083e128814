"""Building any lazy metric computes nothing (counting scheduler)."""

from __future__ import annotations

import pytest

from sharingan_store import metrics
from sharingan_store.testing import synthetic_attention

LAZY = {
    "entropy": metrics.entropy,
    "sink_scores": metrics.sink_scores,
    "received": lambda da: metrics.token_importance(da, "received"),
    "given": lambda da: metrics.token_importance(da, "given"),
    "both": lambda da: metrics.token_importance(da, "both"),
    "distance": metrics.attention_distance,
    "similarity": metrics.head_similarity,
    "similarity_across": lambda da: metrics.head_similarity(da, across_layers=True),
    "rollout": lambda da: metrics.rollout(da, [-1, 3]),
}


@pytest.mark.parametrize("name", sorted(LAZY))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_building_metric_computes_nothing(name, dtype, counting):
    da = synthetic_attention(2, 2, 50).astype(dtype).chunk({"query": 16, "key": 16})
    out = LAZY[name](da)
    assert counting.calls == 0
    assert out.chunks is not None
    out.compute()
    assert counting.calls >= 1


def test_pagerank_computes_one_pass_per_iteration(counting):
    da = synthetic_attention(1, 2, 40).chunk({"query": 16, "key": 16})
    pr = metrics.pagerank(da, tol=1e-8, max_iter=200)
    assert counting.calls == pr.attrs["iterations"]
