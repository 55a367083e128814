from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import torch
import zarr

from sharingan_store import schema
from sharingan_store.write import CodecSpec, choose_layout, decode_storage, to_storage_numpy
from sharingan_store.write.codecs import bitround_torch

from tests.write._write_helpers import attention, write_run


def test_codec_spec_roundtrip_and_validation():
    spec = CodecSpec(keepbits=7)
    assert CodecSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="cname must be one of"):
        CodecSpec(cname="snappy")
    with pytest.raises(ValueError, match="clevel"):
        CodecSpec(clevel=12)
    with pytest.raises(ValueError, match="unknown CodecSpec keys"):
        CodecSpec.from_dict({"level": 1})
    with pytest.raises(ValueError, match="keepbits must be <= 10 for float16"):
        CodecSpec(keepbits=12).pipeline("float16")
    with pytest.raises(ValueError, match="bfloat16"):
        CodecSpec(keepbits=5).pipeline("bfloat16")
    with pytest.raises(ValueError, match="storage dtype must be one of"):
        CodecSpec().pipeline("int8")


@pytest.mark.parametrize("shard", [False, True])
def test_pipeline_in_array_metadata(root, shard):
    probs = attention(1, 1, 64)
    write_run(root, "r", probs, choose_layout(64, 32, chunk=32, shard=shard))
    meta = root["runs/r/attention"].metadata.to_dict()
    codecs = meta["codecs"]
    if shard:
        assert codecs[0]["name"] == "sharding_indexed"
        codecs = codecs[0]["configuration"]["codecs"]
    names = [c["name"] for c in codecs]
    assert names == ["bytes", "blosc", "crc32c"]
    blosc = codecs[1]["configuration"]
    assert (blosc["cname"], blosc["clevel"], blosc["shuffle"], blosc["typesize"]) == ("zstd", 1, "bitshuffle", 2)
    assert tuple(meta["dimension_names"]) == schema.DIMS


@pytest.mark.parametrize("dtype,tol", [("float16", 2**-11), ("float32", 0.0), ("bfloat16", 2**-8)])
def test_storage_roundtrip(root, dtype, tol):
    probs = attention(1, 2, 48, causal=False)
    write_run(root, "r", probs, choose_layout(48, 16, chunk=16), causal=False, storage_dtype=dtype)
    arr = root["runs/r/attention"]
    assert arr.attrs[schema.STORAGE_DTYPE_ATTR] == dtype
    assert arr.dtype == (np.dtype("uint16") if dtype == "bfloat16" else np.dtype(dtype))
    back = decode_storage(arr[:], dtype)
    assert back.dtype == np.float32
    ref = probs.numpy()
    big = ref > 1e-4  # relative bound on normal numbers
    rel = np.abs(back - ref)[big] / ref[big]
    assert rel.max() <= tol


def test_bf16_bits_and_lazy_decode():
    x = torch.tensor([0.5, 1.0, 3.140625])
    bits = to_storage_numpy(x, "bfloat16")
    assert bits.dtype == np.uint16
    lazy = decode_storage(dsa.from_array(bits, chunks=1), "bfloat16")
    assert isinstance(lazy, dsa.Array)
    np.testing.assert_array_equal(lazy.compute(), x.to(torch.bfloat16).float().numpy())


@pytest.mark.parametrize("keepbits", [3, 7])
def test_keepbits_error_bound_and_matches_numcodecs(root, keepbits):
    from numcodecs import BitRound

    x = torch.rand(10000) * 0.9 + 0.01
    h = x.to(torch.float16)
    ours = bitround_torch(h, keepbits).numpy()
    theirs = BitRound(keepbits=keepbits).decode(BitRound(keepbits=keepbits).encode(h.numpy()))
    np.testing.assert_array_equal(ours, np.asarray(theirs).view(np.float16))
    rel = np.abs(ours.astype(np.float32) - h.numpy().astype(np.float32)) / h.numpy().astype(np.float32)
    assert rel.max() <= 2.0 ** -(keepbits + 1)
    # through the store: the codec's BitRound is idempotent on our pre-rounded values
    probs = attention(1, 1, 32, causal=False)
    write_run(root, "k", probs, choose_layout(32, 32), causal=False, codec=CodecSpec(keepbits=keepbits))
    stored = root["runs/k/attention"][:]
    np.testing.assert_array_equal(stored, bitround_torch(probs.to(torch.float16), keepbits).numpy())
    assert "numcodecs.bitround" in [c["name"] for c in root["runs/k/attention"].metadata.to_dict()["codecs"]]


def test_corrupted_chunk_is_detected(root, store_path):
    probs = attention(1, 1, 32, causal=False)
    write_run(root, "c", probs, choose_layout(32, 32))
    chunk = next(p for p in (store_path / "runs/c/attention").rglob("*") if p.is_file() and p.name != "zarr.json")
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(Exception):
        zarr.open_array(store_path, path="runs/c/attention")[:]
