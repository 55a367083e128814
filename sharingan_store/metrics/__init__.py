"""Analysis metrics over attention DataArrays ``(layer, head, query, key)``.

All are lazy (dask) unless noted (``sinks`` returns a DataFrame and ``pagerank``
iterates, so both compute). Reductions run in float32.
"""

from __future__ import annotations

from sharingan_store.metrics.compare import compare, cosine_similarity, js_divergence
from sharingan_store.metrics.distance import attention_distance
from sharingan_store.metrics.entropy import entropy
from sharingan_store.metrics.importance import IMPORTANCE_METHODS, pagerank, token_importance
from sharingan_store.metrics.rollout import rollout
from sharingan_store.metrics.similarity import head_similarity
from sharingan_store.metrics.sinks import sink_scores, sinks

__all__ = [
    "IMPORTANCE_METHODS",
    "attention_distance",
    "compare",
    "cosine_similarity",
    "entropy",
    "head_similarity",
    "js_divergence",
    "pagerank",
    "rollout",
    "sink_scores",
    "sinks",
    "token_importance",
]
