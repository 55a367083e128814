"""Fixtures of the scale tests: a real loopback S3 server, tiny models, the offline tokenizer."""

from __future__ import annotations

import pytest

from sharingan_store.testing import tiny_model

from ._scale_helpers import S3_INPUTS


@pytest.fixture(scope="session")
def s3():
    """moto's ThreadedMotoServer on 127.0.0.1 (a free port) with one bucket; see sharingan_store.testing.s3."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    from sharingan_store.testing.s3 import s3_server

    with s3_server("sharingan-scale") as server:
        yield server


@pytest.fixture(scope="session")
def llama():
    """A tiny causal Llama: 2 layers × 4 heads (GQA 2 kv heads), vocab 128."""
    return tiny_model("llama")


@pytest.fixture(scope="session")
def s3_store(s3, llama):
    """A store at ``s3://<bucket>/store`` on the loopback server, with the runs of ``S3_INPUTS``."""
    import torch

    import sharingan_store as ss

    store = ss.open_store(s3.url("store"), storage_options=s3.storage_options)
    for run, ids in S3_INPUTS.items():
        store.extract(llama, input_ids=torch.tensor(ids), run=run, pyramid=True, progress=False)
    return store
