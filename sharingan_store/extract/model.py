"""Model adapters: what a model is, whether it can be extracted, and scoped switching.

Examples
--------
>>> from sharingan_store.testing import tiny_model
>>> model = tiny_model("llama")
>>> info = model_info(model)
>>> info.num_layers, info.num_heads, info.num_kv_heads, info.kind
(2, 4, 2, 'causal')
>>> with use_sharingan_attention(model):
...     model.config._attn_implementation
'sharingan'
>>> model.config._attn_implementation
'sdpa'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from sharingan_store.errors import UnsupportedModelError
from sharingan_store.extract.attention import IMPLEMENTATION, register

__all__ = ["ModelInfo", "check_supported", "model_info", "use_sharingan_attention"]


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a model that the store records and the extractor relies on."""

    name: str
    model_class: str
    revision: str | None
    num_layers: int
    num_heads: int
    num_kv_heads: int
    max_positions: int | None
    kind: str  # "causal" | "bidirectional" | "sliding"
    sliding_window: int | None
    config_hash: str


def _text_config(model: Any) -> Any:
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def check_supported(model: Any) -> None:
    """Raise :class:`UnsupportedModelError` unless the model routes through ``AttentionInterface``."""
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise UnsupportedModelError(
            f"expected a transformers PreTrainedModel, got {type(model).__name__}"
        )
    can_set = getattr(type(model), "_can_set_attn_implementation", None)
    supports = bool(can_set()) if callable(can_set) else bool(getattr(model, "_supports_attention_backend", False))
    if not supports:
        raise UnsupportedModelError(
            f"{type(model).__name__} does not route its attention through transformers' AttentionInterface, "
            "so its exact attention cannot be extracted block by block. Supported: models whose modeling code calls "
            "`ALL_ATTENTION_FUNCTIONS.get_interface` (Llama, Mistral, Qwen2, Gemma2, GPT-2, Falcon, GPT-OSS, BERT, ...); "
            "for this model use `model(..., output_attentions=True)` on short inputs."
        )


def _causality(model: Any) -> bool:
    cfg = _text_config(model)
    if getattr(cfg, "is_decoder", False):
        return True
    for module in model.modules():
        if module is model:
            continue
        flag = getattr(module, "is_causal", None)
        if isinstance(flag, bool):
            return flag
    return True


def model_info(model: Any) -> ModelInfo:
    """Describe ``model`` (layers, heads, kv heads, attention kind, config hash)."""
    check_supported(model)
    cfg = _text_config(model)
    num_layers = int(getattr(cfg, "num_hidden_layers", getattr(cfg, "n_layer", 0)))
    num_heads = int(getattr(cfg, "num_attention_heads", getattr(cfg, "n_head", 0)))
    num_kv = getattr(cfg, "num_key_value_heads", None) or num_heads
    if getattr(cfg, "multi_query", False) and not getattr(cfg, "new_decoder_architecture", False):
        num_kv = 1
    max_pos = getattr(cfg, "max_position_embeddings", getattr(cfg, "n_positions", None))
    window = getattr(cfg, "sliding_window", None)
    causal = _causality(model)
    kind = "bidirectional" if not causal else ("sliding" if window else "causal")
    cfg_dict = model.config.to_dict()
    for volatile in ("_attn_implementation_autoset", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        cfg_dict.pop(volatile, None)
    config_hash = hashlib.sha256(json.dumps(cfg_dict, sort_keys=True, default=str).encode()).hexdigest()
    return ModelInfo(
        name=str(getattr(model.config, "_name_or_path", "") or type(model).__name__),
        model_class=type(model).__name__,
        revision=getattr(model.config, "_commit_hash", None),
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=int(num_kv),
        max_positions=int(max_pos) if max_pos else None,
        kind=kind,
        sliding_window=int(window) if window else None,
        config_hash=config_hash,
    )


def weights_fingerprint(model: Any, sample: int = 4096) -> str:
    """A cheap fingerprint of the weights: sha256 over names, shapes and a strided sample of values."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // sample)
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(flat[::step].to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def use_sharingan_attention(model: Any) -> Iterator[Any]:
    """Switch ``model`` to the ``"sharingan"`` implementation inside the ``with``; restore after, also on error."""
    check_supported(model)
    register()
    original = model.config._attn_implementation
    model.set_attn_implementation(IMPLEMENTATION)
    if model.config._attn_implementation != IMPLEMENTATION:
        model.set_attn_implementation(original)
        raise UnsupportedModelError(f"{type(model).__name__} refused the {IMPLEMENTATION!r} attention implementation")
    try:
        yield model
    finally:
        model.set_attn_implementation(original)
