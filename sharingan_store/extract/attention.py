"""The registered ``"sharingan"`` attention implementation: exact, blockwise, emitting blocks.

``transformers`` calls :func:`sharingan_attention` once per attention layer with ``query``
``[B, H, Q, D]`` (after RoPE) and ``key``/``value`` ``[B, Hkv, K, D]`` (before the GQA
repeat). For each (head block × query block) it computes, in float32,

    softmax(q·kᵀ·scaling → softcap → + bias/ALiBi → mask → [sinks])

emits the probabilities to the active :class:`BlockSink`, and computes the layer output
``P·V`` from the same block, so the forward pass equals eager attention and attention is
computed once. Peak extra memory is a few blocks, never ``H·N²``.

The function is registered class-level on import (both ``AttentionInterface`` and
``AttentionMaskInterface``, so padding and sliding windows reach it). Outside an extraction
(no active sink) it still computes exact attention, emitting nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Protocol

import torch

from sharingan_store.extract.blocks import BlockPlan, plan_blocks

__all__ = ["IMPLEMENTATION", "BlockSink", "active_sink", "register", "sharingan_attention"]

#: Name under which the implementation is registered in ``transformers``.
IMPLEMENTATION = "sharingan"


class BlockSink(Protocol):
    """Receiver of attention blocks during one forward pass (the extraction session)."""

    def begin_layer(self, module: torch.nn.Module, num_heads: int, q_len: int, k_len: int) -> tuple[int, BlockPlan]:
        """Called once per attention layer; returns ``(layer_index, plan)``."""

    def wants(self, layer: int) -> bool:
        """Whether blocks of this model layer are to be emitted."""

    def emit(self, layer: int, h0: int, h1: int, q0: int, q1: int, probs: torch.Tensor) -> None:
        """Receive exact probabilities ``[B, h1-h0, q1-q0, W]`` (float32) of model heads [h0, h1).

        ``W`` is the number of keys ``K``, or fewer for plain causal attention: then keys
        ``[W, K)`` are all invisible to the block (exact zeros) and ``W`` covers every visible key.
        """

    def end_layer(self, layer: int) -> None:
        """Called after the layer's last block."""


_ACTIVE: contextvars.ContextVar[BlockSink | None] = contextvars.ContextVar("sharingan_sink", default=None)


@contextlib.contextmanager
def active_sink(sink: BlockSink) -> Iterator[BlockSink]:
    """Route the blocks of forward passes inside the ``with`` to ``sink``."""
    token = _ACTIVE.set(sink)
    try:
        yield sink
    finally:
        _ACTIVE.reset(token)


def _upper(rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """``[rows, cols]`` bool: True strictly above the diagonal (keys after the query)."""
    return torch.ones(rows, cols, dtype=torch.bool, device=device).triu_(1)


def _mask_block(mask: torch.Tensor, h0: int, h1: int, q0: int, q1: int, k_len: int) -> torch.Tensor:
    m = mask[..., q0:q1, :k_len]
    if m.shape[1] > 1:
        m = m[:, h0:h1]
    return m


def sharingan_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Exact blockwise attention; see the module docstring. Returns ``(output [B,Q,H,Dv], None)``."""
    bsz, num_heads, q_len, head_dim = query.shape
    num_kv = key.shape[1]
    k_len = key.shape[2]
    if num_heads % num_kv:
        raise ValueError(f"query heads ({num_heads}) are not a multiple of key/value heads ({num_kv})")
    groups = num_heads // num_kv
    if scaling is None:
        scaling = head_dim**-0.5
    softcap = kwargs.get("softcap")
    sliding_window = kwargs.get("sliding_window")
    sinks = kwargs.get("s_aux")
    if sinks is None:
        sinks = kwargs.get("sinks")
    position_bias = kwargs.get("position_bias")
    is_causal = kwargs.get("is_causal")
    if is_causal is None:
        is_causal = bool(getattr(module, "is_causal", True))
    is_causal = is_causal and q_len > 1

    sink = _ACTIVE.get()
    if sink is not None:
        layer, plan = sink.begin_layer(module, num_heads, q_len, k_len)
        emitting = sink.wants(layer)
    else:
        layer, emitting = -1, False
        plan = plan_blocks(num_heads, k_len, chunk=min(512, k_len), batch=bsz)

    out = torch.empty(bsz, num_heads, q_len, value.shape[-1], dtype=value.dtype, device=value.device)
    fill = torch.finfo(torch.float32).min
    q_offset = k_len - q_len  # queries are the last q_len positions
    k_pos = torch.arange(k_len, device=query.device)
    for h0 in range(0, num_heads, plan.head_block):
        h1 = min(h0 + plan.head_block, num_heads)
        kv_index = torch.arange(h0, h1, device=key.device) // groups
        k_h = key.index_select(1, kv_index).float()
        v_h = value.index_select(1, kv_index)
        for q0 in range(0, q_len, plan.q_block):
            q1 = min(q0 + plan.q_block, q_len)
            # Plain causal attention (no mask tensor): keys after the block's last query are
            # invisible, so they are neither computed nor emitted (the block is narrower).
            k_hi = min(k_len, q1 + q_offset) if (attention_mask is None and is_causal) else k_len
            scores = torch.matmul(query[:, h0:h1, q0:q1].float(), k_h[:, :, :k_hi].transpose(-1, -2))
            scores.mul_(scaling)
            if softcap is not None:
                scores = torch.tanh(scores / softcap).mul_(softcap)
            if position_bias is not None:
                scores += _mask_block(position_bias, h0, h1, q0, q1, k_len)[..., :k_hi].float()
            if attention_mask is not None:
                m = _mask_block(attention_mask, h0, h1, q0, q1, k_len)
                if m.dtype == torch.bool:
                    scores.masked_fill_(~m, fill)
                else:
                    scores += m.float()
                    scores.clamp_(min=fill)
            elif is_causal and sliding_window is None:
                # keys before the block's first query are visible to every row: mask only the
                # square of keys [q0, q1) (shifted by q_offset) above its diagonal
                d0 = q0 + q_offset
                square = scores[..., d0:k_hi]
                square.masked_fill_(_upper(q1 - q0, k_hi - d0, query.device), fill)
            elif is_causal or sliding_window is not None:
                q_pos = torch.arange(q0, q1, device=query.device)[:, None] + q_offset
                kp = k_pos[None, :k_hi]
                hidden = torch.zeros(q1 - q0, k_hi, dtype=torch.bool, device=query.device)
                if is_causal:
                    hidden |= kp > q_pos
                if sliding_window is not None:
                    hidden |= kp <= q_pos - sliding_window
                scores.masked_fill_(hidden, fill)
            if sinks is not None:
                s = sinks[h0:h1].float().reshape(1, -1, 1, 1).expand(bsz, -1, q1 - q0, 1)
                probs = torch.softmax(torch.cat([scores, s], dim=-1), dim=-1)[..., :-1]
            else:
                probs = torch.softmax(scores, dim=-1)
            del scores
            out[:, h0:h1, q0:q1] = torch.matmul(probs.to(v_h.dtype), v_h[:, :, :k_hi])
            if emitting:
                sink.emit(layer, h0, h1, q0, q1, probs)
            del probs
    if sink is not None:
        sink.end_layer(layer)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Register the implementation and its mask function with ``transformers`` (idempotent).

    The mask function is ``transformers``' own ``sdpa_mask``: a boolean mask, or ``None``
    when plain causal attention needs none (then causality is applied per block here).
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, sharingan_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)
