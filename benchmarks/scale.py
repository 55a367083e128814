"""Scale benchmarks (issue 5): long runs, cold reads, a LocalCluster vs one process, batched short inputs.

Usage::

    .venv/bin/python benchmarks/scale.py                      # N = 8K, 16K, 32K (several minutes on 2 cores)
    .venv/bin/python benchmarks/scale.py --n 8192 --quick     # a quick look
    .venv/bin/python benchmarks/scale.py --append             # also append the tables to benchmarks/RESULTS.md

Every measurement of memory or of a cold read runs in a fresh interpreter (this script
re-invoked with ``--child``) so RSS and caches are not shared between measurements. The
model is a random-weight tiny Llama, 2 layers × 2 heads (hidden 64), on the CPU; storage is
float16 with the default codec (Blosc zstd-1 + bit-shuffle + crc32c).

Columns
-------
extract s / MB/s
    Wall time of ``store.extract`` and the dense float16 bytes of the run (L·H·N²·2) per second.
peak extra MiB
    Peak RSS during extraction minus RSS before it (model and imports excluded).
files / MB on disk
    Files under the store after the run (sharded attention + pyramid + metadata).
local ms (cold)
    ``open_store`` + ``open`` + ``local(center=N-2768 (30000 at 32K), window=32).compute()`` in a fresh process
    (libraries imported before the clock starts).
global ms (pyramid, cold) / global ms (full scan)
    ``global_view(size=256)`` from the pyramid in a fresh process, and the full-scan equivalent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"


# ---------------------------------------------------------------------------- helpers (child side)
def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class _PeakRSS:
    def __enter__(self):
        self.peak = _rss_mib()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mib())


def _tree(path: str) -> tuple[int, int]:
    files = size = 0
    for d, _, names in os.walk(path):
        for x in names:
            files += 1
            size += os.path.getsize(os.path.join(d, x))
    return files, size


def _tiny(n: int, layers: int = 2, heads: int = 2):
    from sharingan_store.testing import tiny_model

    return tiny_model("llama", num_layers=layers, num_heads=heads, num_kv_heads=heads, hidden_size=64,
                      max_positions=max(n, 2048))


def _import_read_stack() -> None:
    import dask.array  # noqa: F401
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    try:
        import distributed  # noqa: F401 - dask imports it on the first compute when installed
    except ImportError:
        pass


def child_extract(url: str, n: int) -> dict:
    import torch

    import sharingan_store as ss

    model = _tiny(n)
    ids = torch.randint(1, 128, (n,), generator=torch.Generator().manual_seed(0))
    store = ss.open_store(url, mode="w")
    before = _rss_mib()
    t0 = time.perf_counter()
    with _PeakRSS() as peak:
        store.extract(model, input_ids=ids, run="long", progress=False)
    seconds = time.perf_counter() - t0
    files, size = _tree(url)
    att = store.root["runs/long/attention"]
    dense = 2 * 2 * n * n * 2
    return dict(seconds=seconds, mb_s=dense / seconds / 1e6, extra_mib=peak.peak - before, files=files,
                bytes=size, shards=list(att.shards) if att.shards else None, dense_bytes=dense)


def child_local(url: str, n: int) -> dict:
    _import_read_stack()
    import sharingan_store as ss

    center = 30000 if n >= 32768 else n - 2768 if n > 4096 else n // 2
    t0 = time.perf_counter()
    run = ss.open_store(url, mode="r").open("long")
    view = run.local(center=center, window=32).compute()
    cold = time.perf_counter() - t0
    t1 = time.perf_counter()
    run.local(center=center // 2, window=32).compute()
    warm = time.perf_counter() - t1
    return dict(cold_ms=cold * 1e3, warm_ms=warm * 1e3, shape=list(view.shape))


def child_global(url: str, full: bool) -> dict:
    _import_read_stack()
    import dask

    import sharingan_store as ss

    out = {}
    t0 = time.perf_counter()
    run = ss.open_store(url, mode="r").open("long")
    g = run.global_view(size=256).compute()
    out["pyramid_ms"] = (time.perf_counter() - t0) * 1e3
    out["levels"] = sorted(run.pyramid)
    if full:
        before = _rss_mib()
        with dask.config.set(scheduler="threads"), _PeakRSS() as peak:
            t1 = time.perf_counter()
            f = run.global_view(size=256, use_pyramid=False).compute()
            out["full_ms"] = (time.perf_counter() - t1) * 1e3
            t2 = time.perf_counter()
            run.entropy().mean("query").compute()
            out["entropy_ms"] = (time.perf_counter() - t2) * 1e3
        out["read_extra_mib"] = peak.peak - before
        import numpy as np

        out["max_abs_diff"] = float(np.abs(g.values - f.values).max())
    return out


def child_many(url: str, runs: int, n: int) -> dict:
    """A metric over many runs: one process (threads) vs a LocalCluster of 2 worker processes."""
    import dask
    import distributed
    import torch

    import sharingan_store as ss
    from sharingan_store.distributed import map_runs

    store = ss.open_store(url, mode="w")
    model = _tiny(n)
    gen = torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    for i in range(runs):
        store.extract(model, input_ids=torch.randint(1, 128, (n,), generator=gen), run=f"r{i:03d}", progress=False)
    extract_s = time.perf_counter() - t0
    fn = lambda r: r.entropy().mean("query")  # noqa: E731
    t1 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=2):
        want = map_runs(url, fn).compute()
    single = time.perf_counter() - t1
    t2 = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        startup = time.perf_counter() - t2
        t3 = time.perf_counter()
        got = client.compute(map_runs(url, fn)).result()
        cluster_s = time.perf_counter() - t3
    import numpy as np

    return dict(runs=runs, n=n, extract_s=extract_s, single_s=single, cluster_s=cluster_s, startup_s=startup,
                equal=bool(np.allclose(got.values, want.values, rtol=1e-6)))


def child_batch(url: str, count: int, batch_size: int) -> dict:
    import torch

    import sharingan_store as ss
    from sharingan_store.store.batch import extract_batch
    from sharingan_store.testing import tiny_model

    model = tiny_model("llama")  # 2 layers × 4 heads
    gen = torch.Generator().manual_seed(2)
    seqs = [torch.randint(1, 128, (int(torch.randint(16, 128, (1,), generator=gen)),), generator=gen)
            for _ in range(count)]
    store = ss.open_store(url, mode="w")
    extract_batch(store, model, input_ids=seqs[:2], runs=["w0", "w1"], progress=False)  # warm-up
    t0 = time.perf_counter()
    extract_batch(store, model, input_ids=seqs, runs=[f"b{i}" for i in range(count)], batch_size=batch_size,
                  progress=False)
    batched = time.perf_counter() - t0
    k = max(4, count // 4)
    t1 = time.perf_counter()
    for i, s in enumerate(seqs[:k]):
        store.extract(model, input_ids=s, run=f"s{i}", progress=False)
    single = time.perf_counter() - t1
    return dict(count=count, batch_size=batch_size, batch_runs_s=count / batched, single_runs_s=k / single)


CHILDREN = {"extract": child_extract, "local": child_local, "global": child_global, "many": child_many,
            "batch": child_batch}


# ---------------------------------------------------------------------------- parent side
def _child(kind: str, timeout: float = 3600, **kw) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--kw", json.dumps(kw)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> str:
    import platform

    import psutil

    return (f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load avg {os.getloadavg()[0]:.1f} at start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[8192, 16384, 32768], help="sequence lengths")
    p.add_argument("--quick", action="store_true", help="fewer/shorter runs for the cluster and batch parts")
    p.add_argument("--runs", type=int, default=20, help="runs for the LocalCluster comparison")
    p.add_argument("--run-n", type=int, default=1024, help="tokens per run of the LocalCluster comparison")
    p.add_argument("--batch-texts", type=int, default=64, help="sequences for the batch throughput")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--full-scan-max", type=int, default=16384, help="largest N with a full-scan global view")
    p.add_argument("--skip", nargs="*", default=[], choices=["long", "many", "batch"])
    p.add_argument("--append", action="store_true", help=f"append the tables to {RESULTS}")
    p.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed afterwards)")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--kw", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](**json.loads(args.kw))))
        return 0
    if args.quick:
        args.runs, args.run_n, args.batch_texts = min(args.runs, 8), min(args.run_n, 512), min(args.batch_texts, 24)

    work = Path(args.dir or tempfile.mkdtemp(prefix="sharingan-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"_{time.strftime('%Y-%m-%d %H:%M')} — {_machine()}; tiny Llama 2 layers × 2 heads (hidden 64), "
             "float16, CPU._", ""]
    try:
        if "long" not in args.skip:
            lines += ["| N | extract s | MB/s (dense fp16) | peak extra MiB | files | MB on disk | on disk vs dense "
                      "| local ms (cold) | local ms (warm) | global ms (pyramid, cold) | global ms (full scan) "
                      "| full-scan read extra MiB |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for n in args.n:
                url = str(work / f"n{n}")
                print(f"N={n}: extracting…", file=sys.stderr, flush=True)
                e = _child("extract", url=url, n=n)
                loc = _child("local", url=url, n=n)
                glo = _child("global", url=url, full=n <= args.full_scan_max)
                full = f"{glo['full_ms']:.0f}" if "full_ms" in glo else "—"
                rd = f"{glo['read_extra_mib']:.0f}" if "read_extra_mib" in glo else "—"
                lines.append(
                    f"| {n} | {e['seconds']:.1f} | {e['mb_s']:.0f} | {e['extra_mib']:.0f} | {e['files']} "
                    f"| {e['bytes'] / 1e6:.0f} | {e['dense_bytes'] / e['bytes']:.1f}× smaller | {loc['cold_ms']:.0f} "
                    f"| {loc['warm_ms']:.0f} | {glo['pyramid_ms']:.0f} | {full} | {rd} |")
                print(lines[-1], file=sys.stderr, flush=True)
                shutil.rmtree(url, ignore_errors=True)
            lines.append("")
        if "many" not in args.skip:
            print(f"{args.runs} runs: LocalCluster vs one process…", file=sys.stderr, flush=True)
            m = _child("many", url=str(work / "many"), runs=args.runs, n=args.run_n)
            lines += ["| metric over runs | runs × N | one process (threads) s | LocalCluster 2 workers s "
                      "| cluster start s | equal |", "|---|---|---|---|---|---|",
                      f"| `entropy().mean('query')` via `map_runs` | {m['runs']} × {m['n']} | {m['single_s']:.2f} "
                      f"| {m['cluster_s']:.2f} | {m['startup_s']:.1f} | {m['equal']} |", ""]
            print(lines[-2], file=sys.stderr, flush=True)
        if "batch" not in args.skip:
            print("batched short inputs…", file=sys.stderr, flush=True)
            b = _child("batch", url=str(work / "batch"), count=args.batch_texts, batch_size=args.batch_size)
            lines += ["| short inputs (16–127 tokens, tiny Llama 2×4) | batch_size | runs/s batched "
                      "| runs/s one by one |", "|---|---|---|---|",
                      f"| {b['count']} sequences | {b['batch_size']} | {b['batch_runs_s']:.1f} "
                      f"| {b['single_runs_s']:.1f} |", ""]
            print(lines[-2], file=sys.stderr, flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    if args.append:
        append_section(RESULTS, "## Scale", text)
    return 0


def append_section(path: Path, heading: str, text: str) -> None:
    """Append ``text`` at the end of the ``heading`` section of ``path`` (created when missing)."""
    existing = path.read_text() if path.exists() else "# Benchmark results\n"
    if heading not in existing:
        path.write_text(existing.rstrip() + f"\n\n{heading}\n\n" + text + "\n")
        return
    start = existing.index(heading) + len(heading)
    nxt = existing.find("\n## ", start)
    end = len(existing) if nxt < 0 else nxt
    path.write_text(existing[:end].rstrip() + "\n\n" + text + "\n" + existing[end:])


if __name__ == "__main__":
    sys.exit(main())
