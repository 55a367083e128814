"""Provenance in run attrs and in ``Store.runs()``, with filters and sizes."""

from __future__ import annotations

import pytest

import sharingan_store as ss
from sharingan_store.store import RUN_COLUMNS

PROVENANCE = ("model", "config_hash", "weights_fingerprint", "tokenizer", "text_sha256", "seq_len", "layers",
              "heads", "dtype", "codec", "attention_kind", "created", "library_versions", "metadata", "status",
              "num_layers", "num_heads", "num_kv_heads")


def test_run_attrs_hold_every_provenance_item(base_store):
    store = ss.open_store(base_store, mode="r")
    attrs = store.open("a").attrs
    missing = [k for k in PROVENANCE if k not in attrs]
    assert not missing
    assert attrs["status"] == "complete" and attrs["seq_len"] == 64 and attrs["dtype"] == "float16"
    assert attrs["layers"] == [0, 1] and attrs["heads"] == [0, 1, 2, 3]
    assert attrs["created"].endswith("+00:00")  # UTC
    assert {"torch", "transformers", "zarr"} <= set(attrs["library_versions"])
    assert len(attrs["text_sha256"]) == 64 and len(attrs["weights_fingerprint"]) >= 16
    assert attrs["codec"]["checksum"] is True


def test_runs_frame_has_provenance_columns_and_size(base_store):
    frame = ss.open_store(base_store, mode="r").runs()
    assert list(frame.columns) == list(RUN_COLUMNS)
    for col in PROVENANCE:
        assert col in frame.columns
    assert list(frame["run"]) == ["a", "b"]
    assert (frame["size"] > 1000).all()
    assert frame.loc[0, "weights_fingerprint"] != frame.loc[1, "weights_fingerprint"]
    assert frame.loc[0, "text_sha256"] == frame.loc[1, "text_sha256"]
    assert ss.open_store(base_store, mode="r").runs(size=False)["size"].isna().all()


def test_runs_filters(base_store):
    store = ss.open_store(base_store, mode="r")
    assert list(store.runs(status="complete")["run"]) == ["a", "b"]
    assert store.runs(status="failed").empty
    assert list(store.runs(model="LlamaForCausalLM", status="complete")["run"]) == ["a", "b"]
    assert store.runs(model="gpt2").empty
    assert list(store.runs(status=["failed", "complete"])["run"]) == ["a", "b"]
    fp = store.runs().loc[1, "weights_fingerprint"]
    assert list(store.runs(weights_fingerprint=fp)["run"]) == ["b"]
    with pytest.raises(ValueError, match="cannot filter on 'colour'"):
        store.runs(colour="red")


def test_user_metadata_round_trips(tmp_path):
    from tests.store.helpers import make_store

    store = make_store(tmp_path / "s", runs={"m": {"metadata": {"prompt": "x", "k": [1, 2]}}})
    assert store.open("m").attrs["metadata"] == {"prompt": "x", "k": [1, 2]}
    assert store.runs().loc[0, "metadata"] == {"prompt": "x", "k": [1, 2]}
