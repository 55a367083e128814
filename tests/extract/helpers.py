"""Helpers for the extraction tests: eager reference attention and random ids."""

from __future__ import annotations

import numpy as np
import torch


#: Families that route through ``AttentionInterface`` (bloom does not).
SUPPORTED_FAMILIES = ["llama", "mistral", "qwen2", "gemma2", "gpt2", "falcon-alibi", "gpt-oss", "bert"]


def eager_attentions(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> np.ndarray:
    """Reference attention from eager ``output_attentions=True``: ``(B, layer, head, query, key)``.

    The model's attention implementation is restored afterwards.
    """
    ids = input_ids if input_ids.ndim == 2 else input_ids[None]
    original = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        kwargs = {"input_ids": ids, "output_attentions": True}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        with torch.no_grad():
            out = model.base_model(**kwargs)
        return torch.stack(out.attentions, dim=1).float().numpy()
    finally:
        model.set_attn_implementation(original)


def random_ids(n: int, *, batch: int | None = None, vocab: int = 128, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (n,) if batch is None else (batch, n)
    # avoid id 0 so nothing looks like padding to models with a pad_token_id of 0
    return torch.randint(1, vocab, shape, generator=gen)
