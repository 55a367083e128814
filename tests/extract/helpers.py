"""Helpers for the extraction tests: eager reference attention and random ids."""

from __future__ import annotations

import torch

from sharingan_store.testing import eager_attentions  # noqa: F401  (re-exported for the tests)


#: Families that route through ``AttentionInterface`` (bloom does not).
SUPPORTED_FAMILIES = ["llama", "mistral", "qwen2", "gemma2", "gpt2", "falcon-alibi", "gpt-oss", "bert"]


def random_ids(n: int, *, batch: int | None = None, vocab: int = 128, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (n,) if batch is None else (batch, n)
    # avoid id 0 so nothing looks like padding to models with a pad_token_id of 0
    return torch.randint(1, vocab, shape, generator=gen)
