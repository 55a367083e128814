"""The extraction session: one forward pass, blocks routed to a consumer, progress shown.

:func:`run_extraction` switches the model to the ``"sharingan"`` implementation (restored
afterwards, also on error), runs one forward pass under ``torch.inference_mode()`` with
``use_cache=False``, and hands each emitted block to ``on_block`` with *store positions*
(indices into the selected layers/heads), so a consumer such as the zarr ``RunWriter``
never sees model indices it did not ask for.

Examples
--------
>>> import numpy as np, torch
>>> from sharingan_store.testing import tiny_model
>>> model = tiny_model("llama")
>>> dense = extract_dense(model, torch.arange(10))
>>> dense.shape, bool(np.allclose(dense.sum(-1), 1, atol=1e-5))
((2, 4, 10, 10), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from sharingan_store.extract.attention import BlockPlan, active_sink
from sharingan_store.extract.blocks import DEFAULT_MAX_BLOCK_BYTES, plan_blocks
from sharingan_store.extract.model import ModelInfo, model_info, use_sharingan_attention

__all__ = ["BlockConsumer", "check_input_ids", "ExtractionSession", "extract_dense", "resolve_device", "resolve_indices", "run_extraction"]

#: ``on_block(layer_pos, head_pos, q0, q1, probs)``: ``probs`` is float32 ``[h, q1-q0, W]``
#: for store heads ``head_pos`` (a slice), batch element 0 (or ``[B, h, q, W]`` when batched).
#: ``W`` is the number of keys, or fewer for plain causal attention, where keys ``>= W`` are
#: exact zeros (invisible to every row of the block) and are not computed.
BlockConsumer = Callable[[int, slice, int, int, torch.Tensor], None]


def resolve_indices(requested: Sequence[int] | int | None, total: int, what: str) -> list[int]:
    """Validate a layer/head selection in model indices; ``None`` means all.

    Negative indices count from the end. Returns sorted unique indices.

    >>> resolve_indices([2, 0, -1], 4, "layer")
    [0, 2, 3]
    """
    if requested is None:
        return list(range(total))
    if isinstance(requested, (int, np.integer)):
        requested = [int(requested)]
    out = []
    for idx in requested:
        if not isinstance(idx, (int, np.integer)) or isinstance(idx, bool):
            raise TypeError(f"{what} indices must be integers, got {idx!r}")
        i = int(idx) + total if idx < 0 else int(idx)
        if not 0 <= i < total:
            raise IndexError(f"{what} {idx} is out of range: the model has {total} {what}s (valid: 0..{total - 1})")
        out.append(i)
    if not out:
        raise ValueError(f"empty {what} selection: pass None for all {total} {what}s")
    return sorted(set(out))


def check_input_ids(model: Any, ids: torch.Tensor, info: ModelInfo | None = None) -> None:
    """Token ids must fit the model: a clear error instead of an IndexError deep inside.

    The ids must index the embedding table and, when ``info`` is given, the sequence (the
    last axis) must not be longer than ``info.max_positions``.
    """
    seq_len = int(ids.shape[-1])
    if info is not None and info.max_positions is not None and seq_len > info.max_positions:
        raise ValueError(
            f"the input has {seq_len} tokens but {info.model_class} accepts at most {info.max_positions} "
            "(config.max_position_embeddings): shorten the text"
        )
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    vocab = getattr(embeddings, "num_embeddings", None)
    if vocab is not None and ids.numel() and (int(ids.max()) >= vocab or int(ids.min()) < 0):
        raise ValueError(
            f"token ids must lie in 0..{vocab - 1} (the model's vocabulary); got ids in "
            f"{int(ids.min())}..{int(ids.max())}: was the input made with another tokenizer?"
        )


def resolve_device(device: str | torch.device | None, model: Any) -> torch.device:
    """The device to run on: ``None`` keeps the model's device; CUDA must exist if asked for."""
    if device is None:
        try:
            return next(model.parameters()).device
        except StopIteration:  # pragma: no cover - parameterless model
            return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine; use device='cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available on this machine")
    return dev


@dataclass
class ExtractionSession:
    """A :class:`~sharingan_store.extract.attention.BlockSink` for one forward pass."""

    info: ModelInfo
    layers: list[int]
    heads: list[int]
    chunk: int
    max_block_bytes: int
    on_block: BlockConsumer
    batch: int = 1
    progress: Any = None
    skip: Callable[[int, int], bool] | None = None  # (layer_pos, q0) -> already on disk
    _next_layer: int = 0
    _layer_pos: dict[int, int] = field(default_factory=dict)
    _head_pos: dict[int, int] = field(default_factory=dict)
    _plan: BlockPlan | None = None
    layers_seen: int = 0

    def __post_init__(self) -> None:
        self._layer_pos = {layer: i for i, layer in enumerate(self.layers)}
        self._head_pos = {head: i for i, head in enumerate(self.heads)}

    def plan(self, num_heads: int, seq_len: int) -> BlockPlan:
        if self._plan is None or self._plan.seq_len != seq_len:
            self._plan = plan_blocks(
                num_heads, seq_len, chunk=min(self.chunk, seq_len), max_block_bytes=self.max_block_bytes,
                batch=self.batch,
            )
        return self._plan

    # BlockSink protocol ------------------------------------------------------------
    def begin_layer(self, module: torch.nn.Module, num_heads: int, q_len: int, k_len: int) -> tuple[int, BlockPlan]:
        layer = getattr(module, "layer_idx", None)
        if not isinstance(layer, int):
            layer = self._next_layer
        self._next_layer = layer + 1
        self.layers_seen += 1
        return layer, self.plan(num_heads, k_len)

    def wants(self, layer: int) -> bool:
        return layer in self._layer_pos

    def emit(self, layer: int, h0: int, h1: int, q0: int, q1: int, probs: torch.Tensor) -> None:
        lpos = self._layer_pos[layer]
        if self.skip is not None and self.skip(lpos, q0):
            self._tick(q1 - q0, h1 - h0, probs)
            return
        local = [h - h0 for h in range(h0, h1) if h in self._head_pos]
        if local:
            block = probs if self.batch > 1 else probs[0]
            if len(local) != h1 - h0:
                index = torch.tensor(local, device=probs.device)
                block = block.index_select(-3, index)
            first = self._head_pos[h0 + local[0]]
            self.on_block(lpos, slice(first, first + len(local)), q0, q1, block)
        self._tick(q1 - q0, h1 - h0, probs)

    def _tick(self, rows: int, heads: int, probs: torch.Tensor) -> None:
        if self.progress is not None:
            self.progress.update(rows * heads)

    def end_layer(self, layer: int) -> None:
        pass


def _forward(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
             position_ids: torch.Tensor | None = None) -> None:
    backbone = getattr(model, "base_model", None) or model
    kwargs: dict[str, Any] = {"input_ids": input_ids}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    try:
        backbone(**kwargs, use_cache=False)
    except TypeError as exc:
        if "use_cache" not in str(exc):
            raise
        backbone(**kwargs)


def run_extraction(
    model: Any,
    input_ids: torch.Tensor,
    on_block: BlockConsumer,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    chunk: int = 512,
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
    device: str | torch.device | None = None,
    progress: bool = True,
    skip: Callable[[int, int], bool] | None = None,
    info: ModelInfo | None = None,
) -> ExtractionSession:
    """Run one forward pass of ``model`` and route exact attention blocks to ``on_block``.

    Parameters
    ----------
    model
        A ``transformers`` model that routes through ``AttentionInterface``.
    input_ids
        ``(N,)`` or ``(B, N)`` token ids.
    on_block
        Consumer of blocks, see :data:`BlockConsumer`.
    layers, heads
        Model indices to emit (``None``: all). All layers/heads are still computed.
    attention_mask
        Optional ``(B, N)`` padding mask (1 = token, 0 = padding).
    position_ids
        Optional ``(B, N)`` positions passed to the model (left-padded batches need them
        for models with absolute position embeddings); ``None``: the model's default.
    chunk
        Storage chunk edge; query blocks are multiples of it.
    max_block_bytes
        Budget of one float32 score block.
    device
        Where to compute; ``None`` keeps the model's device. The model is moved for the
        run and moved back afterwards.
    progress
        Show a tqdm bar over layers × heads × query rows.
    skip
        ``skip(layer_pos, q0) -> bool``: blocks already stored (resume).
    """
    info = info or model_info(model)
    input_ids = torch.as_tensor(input_ids)
    layer_sel = resolve_indices(layers, info.num_layers, "layer")
    head_sel = resolve_indices(heads, info.num_heads, "head")
    ids = input_ids if input_ids.ndim == 2 else input_ids[None]
    check_input_ids(model, ids, info)
    dev = resolve_device(device, model)
    original_device = resolve_device(None, model)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(layer_sel) * info.num_heads * int(ids.shape[1]), unit="row",
                   desc="extracting attention", leave=False)
    session = ExtractionSession(
        info=info, layers=layer_sel, heads=head_sel, chunk=chunk, max_block_bytes=max_block_bytes,
        on_block=on_block, batch=int(ids.shape[0]), progress=bar, skip=skip,
    )
    was_training = model.training
    moved = dev != original_device
    try:
        if moved:
            model.to(dev)
        model.eval()
        with use_sharingan_attention(model), active_sink(session), torch.inference_mode():
            mask = attention_mask.to(dev) if attention_mask is not None else None
            positions = position_ids.to(dev) if position_ids is not None else None
            _forward(model, ids.to(dev), mask, positions)
    finally:
        if bar is not None:
            bar.close()
        if moved:
            model.to(original_device)
        model.train(was_training)
    if session.layers_seen != info.num_layers:
        from sharingan_store.errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"{info.model_class}: the attention implementation was called {session.layers_seen} times for "
            f"{info.num_layers} layers; this model does not route all its attention through AttentionInterface"
        )
    return session


def extract_dense(
    model: Any,
    input_ids: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    attention_mask: torch.Tensor | None = None,
    chunk: int = 512,
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
) -> np.ndarray:
    """Exact attention as a dense float32 array ``(layer, head, query, key)`` — for small inputs and tests.

    With a batched ``input_ids`` ``(B, N)`` the result is ``(B, layer, head, query, key)``.
    """
    info = model_info(model)
    input_ids = torch.as_tensor(input_ids)
    layer_sel = resolve_indices(layers, info.num_layers, "layer")
    head_sel = resolve_indices(heads, info.num_heads, "head")
    ids = input_ids if input_ids.ndim == 2 else input_ids[None]
    bsz, n = ids.shape
    out = np.zeros((bsz, len(layer_sel), len(head_sel), n, n), np.float32)

    def collect(lpos: int, hpos: slice, q0: int, q1: int, probs: torch.Tensor) -> None:
        block = probs if probs.ndim == 4 else probs[None]
        out[:, lpos, hpos, q0:q1, :block.shape[-1]] = block.float().cpu().numpy()

    run_extraction(model, ids, collect, layers=layer_sel, heads=head_sel, attention_mask=attention_mask, chunk=chunk,
                   max_block_bytes=max_block_bytes, progress=False, info=info)
    return out if input_ids.ndim == 2 else out[0]
