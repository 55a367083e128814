"""GPU pipeline check (issue 5): exactness vs eager in fp32, then throughput of a larger random Llama.

Run on a machine with a CUDA GPU::

    python benchmarks/gpu_check.py                       # exactness + 8 layers × 16 heads at N = 16384
    python benchmarks/gpu_check.py --append              # also append the table to benchmarks/RESULTS.md

and on any machine (CI, laptops) the same code path on the CPU at a small N::

    python benchmarks/gpu_check.py --cpu --n 512 --layers 2 --heads 4

What it measures
----------------
exactness
    Tiny random models (Llama with GQA, GPT-2, BERT) on the device: max |extraction − eager
    ``output_attentions``| in float32, for the dense collector and for a float32 store
    round trip. Target ≤ 1e-5.
throughput
    ``store.extract`` of an ``--layers`` × ``--heads`` random Llama (hidden = 64 · heads) at
    ``--n`` tokens into a local store (float16 storage, default codec): wall time, blocks/s,
    GB/s of dense float16 attention into the store (L·H·N²·2 / s; causal chunks above the
    diagonal are never written), bytes on disk, and two views of how long the GPU waits:

    * ``wait fraction (queue)``: time the producer spent blocked in ``RunWriter._put``
      (the writer queue full: compression is the bottleneck) ÷ extraction time;
    * ``wait fraction (vs compute-only)``: 1 − (forward with a no-op block consumer) ÷
      (full extraction) — the share of wall time not explained by GPU compute.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sharingan_store.testing import eager_attentions

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def check_exactness(dev: torch.device, n: int, work: Path) -> list[dict]:
    import sharingan_store as ss
    from sharingan_store.extract import extract_dense
    from sharingan_store.testing import tiny_model

    rows = []
    store = ss.open_store(work / "exact", mode="w")
    for family in ("llama", "gpt2", "bert"):
        model = tiny_model(family, num_layers=2, num_heads=4, num_kv_heads=2, max_positions=max(n, 128)).to(dev)
        ids = torch.randint(1, 128, (n,), generator=torch.Generator().manual_seed(0)).to(dev)
        ref = eager_attentions(model, ids)
        dense = extract_dense(model, ids, chunk=64, max_block_bytes=4 * 64 * n * 4)
        run = store.extract(model, input_ids=ids.cpu(), run=f"exact-{family}", dtype="float32", device=dev,
                            chunk=64, progress=False)
        stored = run.attention.values
        rows.append(dict(family=family, n=n, dense_err=float(np.abs(dense - ref).max()),
                         store_err=float(np.abs(stored - ref).max())))
    return rows


class _Probe:
    """Counts submitted blocks and the time the producer waits on a full writer queue."""

    def __init__(self) -> None:
        from sharingan_store.write import writer as writer_mod

        self.mod = writer_mod
        self.blocks = 0
        self.wait = 0.0

    def __enter__(self):
        cls = self.mod.RunWriter
        self._submit, self._put = cls.submit, cls._put
        probe = self

        def submit(w, *a, **k):
            probe.blocks += 1
            return probe._submit(w, *a, **k)

        def put(w, task):
            t0 = time.perf_counter()
            try:
                return probe._put(w, task)
            finally:
                probe.wait += time.perf_counter() - t0

        cls.submit, cls._put = submit, put
        return self

    def __exit__(self, *exc):
        self.mod.RunWriter.submit, self.mod.RunWriter._put = self._submit, self._put


def check_throughput(dev: torch.device, n: int, layers: int, heads: int, work: Path) -> dict:
    import sharingan_store as ss
    from sharingan_store.extract import run_extraction
    from sharingan_store.testing import tiny_model

    model = tiny_model("llama", num_layers=layers, num_heads=heads, num_kv_heads=heads, hidden_size=64 * heads,
                       max_positions=max(n, 2048), vocab_size=1024).to(dev)
    ids = torch.randint(1, 1024, (n,), generator=torch.Generator().manual_seed(0))
    # compute only: the same blocks, consumed by a no-op (what the GPU alone costs)
    _sync(dev)
    t0 = time.perf_counter()
    run_extraction(model, ids, lambda *a: None, device=dev, progress=False)
    _sync(dev)
    compute_s = time.perf_counter() - t0
    store = ss.open_store(work / "tp", mode="w")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with _Probe() as probe:
        _sync(dev)
        t1 = time.perf_counter()
        store.extract(model, input_ids=ids, run="tp", device=dev, progress=False)
        _sync(dev)
        total_s = time.perf_counter() - t1
    files = size = 0
    for d, _, names in os.walk(work / "tp"):
        for x in names:
            files += 1
            size += os.path.getsize(os.path.join(d, x))
    dense = layers * heads * n * n * 2
    out = dict(device=str(dev), n=n, layers=layers, heads=heads, seconds=total_s, compute_only_s=compute_s,
               blocks=probe.blocks, blocks_s=probe.blocks / total_s, gb_s=dense / total_s / 1e9,
               disk_mb=size / 1e6, files=files, wait_queue=probe.wait / total_s,
               wait_vs_compute=max(0.0, 1 - compute_s / total_s))
    if dev.type == "cuda":
        out["gpu_peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="run the same pipeline on the CPU (CI / no GPU)")
    p.add_argument("--n", type=int, default=None, help="tokens of the throughput run (default 16384; 512 with --cpu)")
    p.add_argument("--layers", type=int, default=None, help="default 8 (2 with --cpu)")
    p.add_argument("--heads", type=int, default=None, help="default 16 (4 with --cpu)")
    p.add_argument("--exact-n", type=int, default=96, help="tokens of the exactness check")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md under '## GPU'")
    p.add_argument("--json", default=None, help="also write the raw numbers to this file")
    args = p.parse_args(argv)
    if args.cpu:
        dev = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            print("no CUDA device here: run with --cpu to exercise the same pipeline on the CPU", file=sys.stderr)
            return 2
        dev = torch.device("cuda")
    n = args.n or (512 if args.cpu else 16384)
    layers = args.layers or (2 if args.cpu else 8)
    heads = args.heads or (4 if args.cpu else 16)
    with tempfile.TemporaryDirectory(prefix="sharingan-gpu-") as tmp:
        work = Path(tmp)
        exact = check_exactness(dev, args.exact_n, work)
        tp = None if args.skip_throughput else check_throughput(dev, n, layers, heads, work)
    worst = max(max(r["dense_err"], r["store_err"]) for r in exact)
    lines = [f"_{time.strftime('%Y-%m-%d %H:%M')} — device {tp.get('gpu', dev) if tp else dev}_", "",
             "| exactness (fp32) | N | max err dense | max err store |", "|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['n']} | {r['dense_err']:.2e} | {r['store_err']:.2e} |" for r in exact]
    if tp:
        lines += ["", "| model | N | extract s | compute-only s | blocks/s | GB/s (dense fp16) | MB on disk | files "
                      "| GPU waits (queue) | GPU waits (vs compute-only) |",
                  "|---|---|---|---|---|---|---|---|---|---|",
                  f"| Llama {tp['layers']}×{tp['heads']} random | {tp['n']} | {tp['seconds']:.1f} "
                  f"| {tp['compute_only_s']:.1f} | {tp['blocks_s']:.1f} | {tp['gb_s']:.2f} | {tp['disk_mb']:.0f} "
                  f"| {tp['files']} | {tp['wait_queue']:.0%} | {tp['wait_vs_compute']:.0%} |"]
    text = "\n".join(lines)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(exactness=exact, throughput=tp), indent=2))
    if args.append:
        from scale import RESULTS, append_section

        append_section(RESULTS, "## GPU", text)
    ok = worst <= 1e-5
    print(f"\nexactness {'OK' if ok else 'FAILED'}: worst max abs error {worst:.2e} (target 1e-5)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
