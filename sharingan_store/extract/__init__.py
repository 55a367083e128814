"""Extraction: exact post-softmax attention, block by block, from ``transformers`` models."""

from __future__ import annotations

from sharingan_store.extract.attention import IMPLEMENTATION, register, sharingan_attention
from sharingan_store.extract.blocks import DEFAULT_MAX_BLOCK_BYTES, BlockPlan, plan_blocks
from sharingan_store.extract.model import ModelInfo, check_supported, model_info, use_sharingan_attention
from sharingan_store.extract.pipeline import check_input_ids, extract_dense, resolve_device, resolve_indices, run_extraction
from sharingan_store.extract.tokens import TokenizedInput, prepare_input

__all__ = [
    "DEFAULT_MAX_BLOCK_BYTES",
    "IMPLEMENTATION",
    "BlockPlan",
    "ModelInfo",
    "TokenizedInput",
    "check_input_ids",
    "check_supported",
    "extract_dense",
    "model_info",
    "plan_blocks",
    "prepare_input",
    "register",
    "resolve_device",
    "resolve_indices",
    "run_extraction",
    "sharingan_attention",
    "use_sharingan_attention",
]
