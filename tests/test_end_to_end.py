"""Extraction through the public API into real zarr stores, read back with our API and with plain xarray."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import sharingan_store as ss
from sharingan_store import schema
from sharingan_store.extract import extract_dense
from sharingan_store.testing import tiny_model


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama", num_layers=3, num_heads=4, num_kv_heads=2, initializer_range=0.2)


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 128, (150,), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def eager(llama, ids):
    orig = llama.config._attn_implementation
    llama.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = llama.base_model(input_ids=ids[None], output_attentions=True)
    finally:
        llama.set_attn_implementation(orig)
    return np.stack([a[0].numpy() for a in out.attentions])


def test_float32_store_equals_eager(tmp_path, llama, ids, eager):
    store = ss.open_store(tmp_path / "s")
    run = store.extract(llama, input_ids=ids, run="f32", dtype="float32", chunk=64, progress=False)
    np.testing.assert_allclose(run.attention.values, eager, rtol=0, atol=1e-5)


def test_float16_store_within_1e3_rows_sum_to_one_upper_triangle_zero_and_absent(tmp_path, llama, ids, eager):
    store = ss.open_store(tmp_path / "s")
    run = store.extract(llama, input_ids=ids, run="f16", chunk=32, max_block_bytes=4 * 32 * 150, progress=False)
    got = run.attention.values.astype(np.float32)
    assert run.attention.dtype == np.float16
    np.testing.assert_allclose(got, eager, rtol=0, atol=1e-3)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=2e-2)  # fp16 rounding of up to 150 terms
    upper = np.triu(np.ones((150, 150), bool), k=1)
    assert (got[..., upper] == 0).all()
    # chunks wholly above the diagonal are never written: 5x5 grid of 32-chunks -> 15 on/below per head
    chunk_dir = Path(store.url) / "runs" / "f16" / "attention" / "c"
    files = [p for p in chunk_dir.rglob("*") if p.is_file()]
    assert len(files) == 3 * 4 * 15


def test_plain_xarray_opens_run(tmp_path, llama, ids):
    store = ss.open_store(tmp_path / "s")
    store.extract(llama, input_ids=ids, run="plain", layers=[0, 2], heads=[1, 3], progress=False,
                  metadata={"who": "test"})
    ds = xr.open_zarr(os.fspath(tmp_path / "s"), group="runs/plain")
    att = ds[schema.ATTENTION]
    assert att.dims == schema.DIMS
    assert list(ds[schema.LAYER].values) == [0, 2] and list(ds[schema.HEAD].values) == [1, 3]
    assert ds.attrs[schema.STATUS] == schema.STATUS_COMPLETE
    assert ds.attrs["metadata"] == {"who": "test"} and ds.attrs["seq_len"] == 150
    assert schema.QUERY_TOKEN in ds.coords and schema.KEY_TOKEN in ds.coords
    assert not np.isnan(att.values).any()


def test_partial_extraction_selects_by_model_index(tmp_path, llama, ids):
    full = extract_dense(llama, ids)
    store = ss.open_store(tmp_path / "s")
    run = store.extract(llama, input_ids=ids, run="part", layers=[0, 2], heads=[1, 3], dtype="float32",
                        progress=False)
    sub = run.sel(layer=2, head=3)
    assert sub.layers == [2] and sub.heads == [3]
    np.testing.assert_allclose(sub.attention.values[0, 0], full[2, 3], atol=1e-6)
    with pytest.raises(ss.SelectionError, match=r"layer \[1\] not in this run; valid layer values: \[0, 2\]"):
        run.sel(layer=1)


def test_bfloat16_round_trip(tmp_path, llama, ids, eager):
    store = ss.open_store(tmp_path / "s")
    run = store.extract(llama, input_ids=ids, run="bf16", dtype="bfloat16", progress=False)
    got = run.attention.values
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, eager, rtol=2**-7, atol=1e-6)


def test_text_with_tokenizer_stores_tokens_offsets_and_sentences(tmp_path, minilm):
    model, tok = minilm
    text = "The cat sat. The dog ran!\n\nA new paragraph here."
    store = ss.open_store(tmp_path / "s")
    run = store.extract(model, text, tokenizer=tok, run="txt", progress=False)
    assert run.tokens[0] == "[CLS]" and "cat" in run.tokens
    a = run.attention
    starts = a[schema.CHAR_START].values
    i = run.tokens.index("dog")
    assert text[starts[i]:a[schema.CHAR_END].values[i]] == "dog"
    assert a[schema.SENTENCE_ID].values[i] == 1 and a[schema.PARAGRAPH_ID].values[-2] == 1
    assert run.attrs["attention_kind"] == "bidirectional"
    assert (a.values[..., np.triu_indices(a.sizes["query"], 1)[0], np.triu_indices(a.sizes["query"], 1)[1]] > 0).any()


def test_pyramid_global_view_equals_full_scan(tmp_path):
    model = tiny_model("llama", num_layers=1, num_heads=2, num_kv_heads=1, initializer_range=0.2)
    n = 2100  # >= 2048: the pyramid is written automatically; not a multiple of any factor
    ids = torch.randint(0, 128, (n,), generator=torch.Generator().manual_seed(2))
    store = ss.open_store(tmp_path / "s")
    run = store.extract(model, input_ids=ids, run="pyr", progress=False)
    assert run.pyramid, "a run of >= 2048 tokens has a pyramid"
    for method in ("mean", "max"):
        fast = run.global_view(256, method).values
        slow = run.global_view(256, method, use_pyramid=False).values
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-7)
    ms = run.multiscale(hotspots=[100, 2000])
    np.testing.assert_allclose(ms.global_view.values, run.global_view(256).values, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(text=""), ValueError, "empty"),
        (dict(input_ids=torch.arange(0)), ValueError, "empty"),
        (dict(input_ids=torch.arange(10), layers=[5]), IndexError, r"valid: 0\.\.2"),
        (dict(input_ids=torch.arange(10), heads=[-9]), IndexError, r"valid: 0\.\.3"),
        (dict(input_ids=torch.arange(10), dtype="int8"), ValueError, "float16"),
        (dict(input_ids=torch.arange(10), run="bad id!"), ValueError, "invalid run id"),
        (dict(input_ids=torch.arange(10), device="cuda"), ValueError, "CUDA"),
    ],
)
def test_bad_arguments(tmp_path, llama, kwargs, error, match):
    store = ss.open_store(tmp_path / "s")
    text = kwargs.pop("text", None)
    tok = None
    if text is not None:
        from sharingan_store.testing import load_minilm

        tok = load_minilm()[1]
    with pytest.raises(error, match=match):
        store.extract(llama, text, tokenizer=tok, progress=False, **kwargs)
    assert store.run_ids() == [], "a rejected extraction writes nothing"


def test_text_longer_than_max_positions(tmp_path):
    model = tiny_model("llama", max_positions=32)
    store = ss.open_store(tmp_path / "s")
    with pytest.raises(ValueError, match="at most 32"):
        store.extract(model, input_ids=torch.arange(40) % 128, progress=False)


def test_unsupported_model(tmp_path):
    store = ss.open_store(tmp_path / "s")
    with pytest.raises(ss.UnsupportedModelError, match="BloomForCausalLM"):
        store.extract(tiny_model("bloom"), input_ids=torch.arange(10), progress=False)


def test_existing_run_is_not_overwritten(tmp_path, llama, ids):
    store = ss.open_store(tmp_path / "s")
    store.extract(llama, input_ids=ids[:20], run="r", progress=False)
    with pytest.raises(ss.RunExistsError, match="overwrite=True"):
        store.extract(llama, input_ids=ids[:30], run="r", progress=False)
    assert store.open("r").seq_len == 20
    assert store.extract(llama, input_ids=ids[:30], run="r", overwrite=True, progress=False).seq_len == 30


def test_auto_run_ids_are_unique(tmp_path, llama, ids):
    store = ss.open_store(tmp_path / "s")
    a = store.extract(llama, input_ids=ids[:20], progress=False).run_id
    b = store.extract(llama, input_ids=ids[:20], progress=False).run_id
    assert a != b and sorted(store.runs()["run"]) == sorted([a, b])


def test_every_array_of_a_run_carries_crc32c(tmp_path):
    import zarr

    model = tiny_model("llama", num_layers=1, num_heads=2, num_kv_heads=1)
    store = ss.open_store(tmp_path / "s")
    store.extract(model, input_ids=torch.arange(2048) % 128, run="r", progress=False, pyramid=True)
    group = zarr.open_group(os.fspath(tmp_path / "s"), path="runs/r", mode="r")
    arrays = [(path, arr) for path, arr in group.arrays()]
    for sub in group.group_keys():
        for sub2 in [group[sub]] + [g for _, g in group[sub].groups()]:
            arrays += [(f"{sub2.path}/{p}", a) for p, a in sub2.arrays()]
    assert len(arrays) > 20
    for path, arr in arrays:
        codecs = [type(c).__name__ for c in arr.metadata.codecs]
        flat = codecs + [type(c).__name__ for c in getattr(arr.metadata.codecs[0], "codecs", ())]
        assert "Crc32cCodec" in flat, f"{path} has no crc32c: {codecs}"


def test_pyramid_built_afterwards_serves_global_view(tmp_path):
    model = tiny_model("llama", num_layers=1, num_heads=2, num_kv_heads=1, initializer_range=0.2)
    store = ss.open_store(tmp_path / "s")
    run = store.extract(model, input_ids=torch.arange(600) % 128, run="late", pyramid=False, progress=False)
    assert run.pyramid == {}
    assert store.build_pyramid("late") == [2, 4, 8, 16, 32]
    run = store.open("late")
    assert sorted(run.pyramid) == [2, 4, 8, 16, 32]
    np.testing.assert_allclose(run.global_view(64, "mean").values,
                               run.global_view(64, "mean", use_pyramid=False).values, rtol=1e-5, atol=1e-8)
    with pytest.raises(ss.ReadOnlyError):
        ss.open_store(tmp_path / "s", mode="r").build_pyramid("late")


def test_resume_reuses_the_interrupted_block_size(tmp_path, llama, ids, monkeypatch):
    from sharingan_store.write import RunWriter

    store = ss.open_store(tmp_path / "s")
    budget = 4 * 32 * 150  # blocks of 32 rows, far below today's default
    real_submit, calls = RunWriter.submit, []

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated Ctrl-C")
        return real_submit(self, *args)

    monkeypatch.setattr(RunWriter, "submit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.extract(llama, input_ids=ids, run="r", chunk=32, max_block_bytes=budget, progress=False)
    monkeypatch.setattr(RunWriter, "submit", real_submit)
    assert store.run_group("r").attrs["status"] == "failed"
    with pytest.raises(ss.FormatError, match="query blocks of 32 rows"):
        store.extract(llama, input_ids=ids, run="r", chunk=32, max_block_bytes=2**30, resume=True, progress=False)
    # a chunk write killed mid-way leaves zarr's temporary file: resume removes it
    stale = tmp_path / "s" / "runs" / "r" / "attention" / "c" / "0" / "0" / "0" / "0.deadbeef.partial"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"")
    run = store.extract(llama, input_ids=ids, run="r", chunk=32, resume=True, progress=False)
    assert not stale.exists()
    ref = ss.open_store(tmp_path / "ref").extract(llama, input_ids=ids, run="r", chunk=32, max_block_bytes=budget,
                                                   progress=False)
    np.testing.assert_array_equal(run.attention.values, ref.attention.values)
