"""The device path: a clear error for a missing GPU, and the GPU check script's CPU mode."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import sharingan_store as ss

GPU_CHECK = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_is_a_clear_error_and_writes_nothing(tmp_path, llama):
    store = ss.open_store(tmp_path / "s")
    with pytest.raises(ValueError, match="CUDA is not available.*device='cpu'"):
        store.extract(llama, input_ids=torch.arange(1, 9), run="r", device="cuda", progress=False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        store.extract(llama, input_ids=torch.arange(1, 9), run="r", device="cuda:1", progress=False)
    assert store.run_ids() == []


def test_gpu_check_script_runs_on_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "gpu.json"
    rc = module.main(["--cpu", "--n", "128", "--exact-n", "32", "--layers", "2", "--heads", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "exactness OK" in printed and "blocks/s" in printed
    import json

    numbers = json.loads(out.read_text())
    assert numbers["throughput"]["blocks"] > 0
    assert all(r["store_err"] <= 1e-5 for r in numbers["exactness"])
