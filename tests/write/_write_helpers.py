"""Helpers of the write-layer tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

import numpy as np
import torch


def token_meta(n: int) -> dict:
    return dict(
        token_ids=np.arange(n) + 100,
        query_tokens=[f"t{i}" for i in range(n)],
        char_start=np.arange(n) * 2,
        char_end=np.arange(n) * 2 + 1,
        sentence_id=np.arange(n) // 7,
        paragraph_id=np.arange(n) // 20,
    )


def attention(num_layers: int, num_heads: int, n: int, *, causal: bool = True, seed: int = 0) -> torch.Tensor:
    """Exact float32 probabilities ``[L, H, N, N]`` (zeros above the diagonal when causal)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_layers, num_heads, n, n, generator=g) * 3
    if causal:
        logits = logits.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(logits, dim=-1)


def write_run(root, run_id, probs, layout, *, causal=True, head_block=None, **kw):
    """Write ``probs`` block by block, as the extractor would; returns the closed writer."""
    from sharingan_store.write import RunWriter

    L, H, n, _ = probs.shape
    hb = head_block or H
    w = RunWriter.create(root, run_id, layers=kw.pop("layers", list(range(L))),
                         heads=kw.pop("heads", list(range(H))), layout=layout, causal=causal,
                         attrs=kw.pop("attrs", {"model": "toy"}), **token_meta(n), **kw)
    with w:
        for lp in range(L):
            for h0 in range(0, H, hb):
                for q0, q1 in layout.q_blocks():
                    w.submit(lp, slice(h0, min(h0 + hb, H)), q0, q1, probs[lp, h0:h0 + hb, q0:q1])
    return w
