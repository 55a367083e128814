"""The reference every exactness check compares against: eager ``output_attentions=True``.

Examples
--------
>>> import torch
>>> from sharingan_store.testing import eager_attentions, tiny_model
>>> eager_attentions(tiny_model("llama"), torch.arange(6)).shape
(2, 4, 6, 6)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["eager_attentions"]


def eager_attentions(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> np.ndarray:
    """Attention from eager ``model.base_model(..., output_attentions=True)`` as float32 numpy.

    ``(layer, head, query, key)`` for one sequence ``(N,)``; ``(batch, layer, head, query, key)``
    for ``(B, N)`` ids. The model's attention implementation is restored afterwards.
    """
    ids = input_ids if input_ids.ndim == 2 else input_ids[None]
    original = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        kwargs: dict[str, Any] = {"input_ids": ids, "output_attentions": True}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        with torch.no_grad():
            out = model.base_model(**kwargs)
        stacked = torch.stack(out.attentions, dim=1).float().cpu().numpy()
    finally:
        model.set_attn_implementation(original)
    return stacked if input_ids.ndim == 2 else stacked[0]
