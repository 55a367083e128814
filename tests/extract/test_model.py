"""Model adapters, selections, scoped switching/restoring, and input validation of the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sharingan_store.errors import SharinganError, UnsupportedModelError
from sharingan_store.extract import (
    check_supported,
    extract_dense,
    model_info,
    resolve_device,
    resolve_indices,
    run_extraction,
    use_sharingan_attention,
)
from sharingan_store.testing import tiny_model

from .helpers import random_ids

# --------------------------------------------------------------------------- model_info


@pytest.mark.parametrize(
    ("family", "kind", "kv"),
    [("llama", "causal", 2), ("mistral", "sliding", 2), ("gpt2", "causal", 4), ("bert", "bidirectional", 4)],
)
def test_model_info(tiny_models, family, kind, kv):
    info = model_info(tiny_models(family))
    assert (info.num_layers, info.num_heads, info.num_kv_heads, info.kind) == (2, 4, kv, kind)
    assert len(info.config_hash) == 64


def test_model_info_minilm(minilm):
    info = model_info(minilm[0])
    assert (info.num_layers, info.num_heads, info.kind, info.max_positions) == (6, 12, "bidirectional", 512)


# --------------------------------------------------------------------------- unsupported models


def test_bloom_unsupported():
    model = tiny_model("bloom")
    for fn in (check_supported, model_info):
        with pytest.raises(UnsupportedModelError, match="BloomForCausalLM") as exc:
            fn(model)
        assert isinstance(exc.value, TypeError) and isinstance(exc.value, SharinganError)
    with pytest.raises(TypeError, match="BloomForCausalLM"):
        extract_dense(model, random_ids(8))
    with pytest.raises(UnsupportedModelError):
        with use_sharingan_attention(model):
            pass  # pragma: no cover


@pytest.mark.parametrize("obj", [object(), "bert-base-uncased", torch.nn.Linear(2, 2)])
def test_not_a_model(obj):
    with pytest.raises(UnsupportedModelError):
        check_supported(obj)
    with pytest.raises(TypeError):
        extract_dense(obj, random_ids(8))


# --------------------------------------------------------------------------- partial extraction


@pytest.fixture(scope="module")
def three_layers():
    model = tiny_model("llama", num_layers=3)
    ids = random_ids(21, seed=7)
    full = extract_dense(model, ids, chunk=8, max_block_bytes=1)
    return model, ids, full


def test_full_shape(three_layers):
    _, _, full = three_layers
    assert full.shape == (3, 4, 21, 21)


@pytest.mark.parametrize(
    ("layers", "heads", "lsel", "hsel"),
    [
        ([0, 2], None, [0, 2], [0, 1, 2, 3]),
        (None, [1, 3], [0, 1, 2], [1, 3]),
        ([0, 2], [1, 3], [0, 2], [1, 3]),
        ([2, 0], [3, 1], [0, 2], [1, 3]),  # sorted
        ([-1], [-1, 0], [2], [0, 3]),  # negative indices
        (1, 2, [1], [2]),  # plain ints
        ([1, 1, -2], [2], [1], [2]),  # duplicates collapse
    ],
)
@pytest.mark.parametrize("budget", [1, 10**9])  # head blocks of 1 vs. all heads in one block
def test_partial_equals_slices(three_layers, layers, heads, lsel, hsel, budget):
    model, ids, full = three_layers
    part = extract_dense(model, ids, layers=layers, heads=heads, chunk=8, max_block_bytes=budget)
    expected = full[np.ix_(lsel, hsel)]
    if budget == 1:  # same block plan as the full extraction: bit-identical
        np.testing.assert_array_equal(part, expected)
    else:  # other block shapes only change float rounding
        np.testing.assert_allclose(part, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"layers": [3]}, r"layer 3 .*0\.\.2"),
        ({"layers": [-4]}, r"layer -4 .*0\.\.2"),
        ({"heads": [4]}, r"head 4 .*0\.\.3"),
        ({"heads": [0, -5]}, r"head -5 .*0\.\.3"),
    ],
)
def test_out_of_range_selection(three_layers, kw, pattern):
    model, ids, _ = three_layers
    with pytest.raises(IndexError, match=pattern):
        extract_dense(model, ids, **kw)


@pytest.mark.parametrize("kw", [{"layers": []}, {"heads": []}])
def test_empty_selection(three_layers, kw):
    model, ids, _ = three_layers
    with pytest.raises(ValueError, match="empty"):
        extract_dense(model, ids, **kw)


def test_resolve_indices():
    assert resolve_indices(None, 3, "layer") == [0, 1, 2]
    assert resolve_indices([2, 0, -1], 4, "layer") == [0, 2, 3]
    assert resolve_indices(np.int64(1), 4, "head") == [1]
    with pytest.raises(TypeError):
        resolve_indices([True], 4, "head")
    with pytest.raises(TypeError):
        resolve_indices([1.0], 4, "head")


# --------------------------------------------------------------------------- restoring the model


@pytest.mark.parametrize(("family", "impl"), [("llama", "sdpa"), ("gemma2", "eager"), ("bert", "sdpa")])
def test_implementation_restored_after_success(family, impl):
    model = tiny_model(family)
    ids = random_ids(12)[None]
    assert model.config._attn_implementation == impl
    with torch.no_grad():
        before = model(input_ids=ids)[0]
    extract_dense(model, ids[0])
    assert model.config._attn_implementation == impl
    assert all(
        getattr(m.config, "_attn_implementation", impl) == impl for m in model.modules() if hasattr(m, "config")
    )
    with torch.no_grad():
        after = model(input_ids=ids)[0]
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize(("family", "impl"), [("llama", "sdpa"), ("gemma2", "eager")])
def test_implementation_restored_after_error(family, impl):
    model = tiny_model(family)
    ids = random_ids(12)
    with torch.no_grad():
        before = model(input_ids=ids[None])[0]
    calls = []

    def consumer(*args):
        calls.append(args)
        raise Boom("consumer failed")

    with pytest.raises(Boom):
        run_extraction(model, ids, consumer, progress=False)
    assert len(calls) == 1
    assert model.config._attn_implementation == impl
    with torch.no_grad():
        after = model(input_ids=ids[None])[0]
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    # and a later extraction works normally
    assert extract_dense(model, ids).shape == (2, 4, 12, 12)


def test_training_mode_restored():
    model = tiny_model("llama")
    model.train()
    seen = []
    run_extraction(model, random_ids(10), lambda *a: seen.append(model.training), progress=False)
    assert seen and not any(seen)  # extraction runs in eval mode
    assert model.training and all(m.training for m in model.modules())
    assert model.config._attn_implementation == "sdpa"

    def boom(*args):
        raise Boom

    with pytest.raises(Boom):
        run_extraction(model, random_ids(10), boom, progress=False)
    assert model.training

    model.eval()
    extract_dense(model, random_ids(10))
    assert not model.training


def test_use_sharingan_attention_scoped():
    model = tiny_model("qwen2")
    with use_sharingan_attention(model):
        assert model.config._attn_implementation == "sharingan"
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(Boom):
        with use_sharingan_attention(model):
            raise Boom
    assert model.config._attn_implementation == "sdpa"


def test_no_grad_state_leak():
    model = tiny_model("llama")
    extract_dense(model, random_ids(8))
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    out = model(input_ids=random_ids(8)[None])[0]
    assert out.requires_grad


# --------------------------------------------------------------------------- input validation


def test_text_longer_than_max_positions():
    model = tiny_model("llama", max_positions=32)
    with pytest.raises(ValueError, match=r"40 tokens .* at most 32"):
        extract_dense(model, random_ids(40))
    assert model.config._attn_implementation == "sdpa"
    assert extract_dense(model, random_ids(32)).shape == (2, 4, 32, 32)


def test_resolve_device():
    model = tiny_model("llama")
    assert resolve_device(None, model) == torch.device("cpu")
    assert resolve_device("cpu", model) == torch.device("cpu")
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("not-a-device", model)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_resolve_device_cuda_missing():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device("cuda", model)
    with pytest.raises(ValueError, match="CUDA"):
        run_extraction(model, random_ids(8), lambda *a: None, device="cuda:0", progress=False)
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("layers", [None, [0]])
def test_progress_bar_completes(layers):
    """The bar's total counts the rows actually emitted (selected layers × all heads × tokens)."""
    model = tiny_model("llama")
    session = run_extraction(model, random_ids(10), lambda *a: None, layers=layers, progress=True, chunk=4,
                             max_block_bytes=1)
    bar = session.progress
    assert bar is not None and bar.n == bar.total == (2 if layers is None else 1) * 4 * 10
