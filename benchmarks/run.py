#!/usr/bin/env python
"""The one benchmark entry point: ``python benchmarks/run.py [--quick] [--smoke]``.

- full (default): the sizes of issues 2, 3 and 6 (N = 4K/8K/16K memory, a 16K run for the
  reads, baselines at 1K/4K/8K and the largest N each reaches, ours at 32K); 5 repetitions
  (3 at N ≥ 16K, 1 for the "largest N" rows). Long: tens of minutes on 2 cores.
- ``--quick``: the same code paths at sizes scaled down ×4 (under 5 minutes), 3 repetitions.
- ``--smoke``: every code path at N ≤ 512, 1 repetition, for the test suite; writes its
  RESULTS file to a temporary path unless ``--out`` is given.

Prints markdown tables and writes ``benchmarks/RESULTS.md`` (machine, versions, date, the
command, the tables, and one "what this means" line per table). Measurements are
interleaved (each repetition runs every contender once) so load from other users of the
machine hits all contenders alike; every memory figure comes from a fresh subprocess.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import baselines, extraction, reading, storage  # noqa: E402
from benchmarks._common import (  # noqa: E402
    GiB,
    Stat,
    dir_bytes,
    fmt_bytes,
    fmt_mem,
    fmt_time,
    kn,
    machine_info,
    md_table,
    ratio,
    run_worker,
)

DEFAULT_TL_PYTHON = os.environ.get("SHARINGAN_TL_PYTHON", "/tmp/tlvenv2/bin/python")


@dataclass
class Config:
    mode: str
    reps: int
    heavy_reps: int  # N >= 16K
    mem_ns: list[int]
    eager_n: int  # eager memory comparison (in cmp_ns)
    cmp_ns: list[int]
    tp_n: int
    read_n: int
    pyr_n: int
    storage_n: int
    peaked_n: int
    big_ours: list[int] = field(default_factory=list)
    eager_budget: int = 0  # 0: no "largest N" run
    would_need: list[int] = field(default_factory=list)


def config(args: argparse.Namespace) -> Config:
    if args.smoke:
        c = Config("smoke", 1, 1, [128, 512], 512, [512], 512, 512, 512, 256, 512,
                   would_need=[16384, 32768])
    elif args.quick:
        c = Config("quick", 3, 1, [1024, 2048, 4096], 2048, [1024, 2048], 2048, 2048, 2048, 1024, 2048,
                   would_need=[16384, 32768, 65536])
    else:
        c = Config("full", 5, 3, [4096, 8192, 16384], 8192, [1024, 4096, 8192], 8192, 16384, 16384, 4096,
                   4096, big_ours=[32768], eager_budget=10 * GiB, would_need=[16384, 32768, 65536])
    if args.reps:
        c.reps = args.reps
        c.heavy_reps = min(c.heavy_reps, args.reps)
    return c


def largest_n(need, budget: int, step: int = 1024) -> int:
    n = step
    while need(n + step) <= budget:
        n += step
    return n


class Bench:
    def __init__(self, cfg: Config, workdir: str, tl_python: str | None, log) -> None:
        self.cfg, self.work, self.tl_python, self.log = cfg, workdir, tl_python, log
        self.results: dict[tuple[str, int], list[dict]] = {}

    def job(self, kind: str, n: int, rep: int) -> None:
        w = self.work
        if kind == "ours":
            keep = n in (self.cfg.tp_n, self.cfg.read_n)
            res = run_worker("ours", dict(n=n, dir=f"{w}/ours-{n}", keep=keep, pyramid=True))
        elif kind == "ours_nopyr":
            res = run_worker("ours", dict(n=n, dir=f"{w}/nopyr-{n}", pyramid=False))
        elif kind == "zarr_alone":
            res = run_worker("zarr_alone", dict(src=f"{w}/ours-{n}", dst=f"{w}/zarr-alone-{n}"))
        elif kind in ("eager_npy", "eager_h5", "eager"):
            fmt = {"eager_npy": "npy", "eager_h5": "h5", "eager": "none"}[kind]
            res = run_worker("eager", dict(n=n, path=f"{w}/eager-{n}.{fmt}", fmt=fmt))
        elif kind == "tl":
            res = run_worker("tl", dict(n=n, path=f"{w}/tl-{n}.npy"), python=self.tl_python)
        else:
            raise ValueError(kind)
        self.results.setdefault((kind, n), []).append(res)
        msg = res.get("error") or f"{res['wall_s']:.2f} s, +{res['extra_rss'] / 2**20:.0f} MiB"
        self.log(f"  [{kind} N={n} rep {rep + 1}] {msg}")

    def run_jobs(self, jobs: list[tuple[str, int, int]]) -> None:
        """Interleaved: repetition r runs every job that still needs a repetition, in order."""
        for rep in range(max(r for _, _, r in jobs)):
            for kind, n, reps in jobs:
                if rep < reps:
                    self.job(kind, n, rep)

    def get(self, kind: str, n: int) -> list[dict]:
        return self.results.get((kind, n), [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="scaled-down sizes, under 5 minutes")
    ap.add_argument("--smoke", action="store_true", help="every code path at N <= 512 (for the tests)")
    ap.add_argument("--reps", type=int, default=0, help="override the number of repetitions")
    ap.add_argument("--out", default=None, help="RESULTS file (default benchmarks/RESULTS.md; smoke: a tmp file)")
    ap.add_argument("--tl-python", default=DEFAULT_TL_PYTHON,
                    help="interpreter of a venv with transformer-lens<3 (see benchmarks/tl_venv.sh)")
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a new tmp dir, removed after)")
    args = ap.parse_args(argv)
    cfg = config(args)
    if cfg.mode == "smoke":
        from benchmarks import _common

        _common.INPROCESS = True  # a code-path check: one process, except the foreign TransformerLens venv
    out_path = args.out or (os.path.join(tempfile.mkdtemp(prefix="sharingan-smoke-"), "RESULTS.md") if args.smoke
                            else str(Path(__file__).resolve().parent / "RESULTS.md"))
    work = args.workdir or tempfile.mkdtemp(prefix="sharingan-bench-")
    os.makedirs(work, exist_ok=True)
    t_start = time.perf_counter()
    started = _dt.datetime.now().astimezone()

    def log(msg: str) -> None:
        print(f"{time.perf_counter() - t_start:7.1f}s {msg}", file=sys.stderr, flush=True)

    info = machine_info()
    tl_reason = None if args.tl_python and os.path.exists(args.tl_python) else (
        f"no TransformerLens venv at {args.tl_python!r} (create one with benchmarks/tl_venv.sh)")
    tl_python = None if tl_reason else args.tl_python
    bench = Bench(cfg, work, tl_python, log)
    sections: list[tuple[str, str, str]] = []  # (title, table, meaning)
    try:
        # ---------------------------------------------------------------- extraction jobs
        log(f"[{cfg.mode}] extraction: ours, zarr alone, eager+npy, eager+h5, TransformerLens")
        R, H = cfg.reps, cfg.heavy_reps
        rep_of = lambda n: H if n >= 16384 else R  # noqa: E731
        jobs: list[tuple[str, int, int]] = []
        for n in sorted(set(cfg.mem_ns) | set(cfg.cmp_ns)):
            jobs.append(("ours", n, rep_of(n)))
            if n == cfg.tp_n:
                jobs.append(("zarr_alone", n, rep_of(n)))
            if n == cfg.pyr_n:
                jobs.append(("ours_nopyr", n, rep_of(n)))
        if cfg.read_n not in cfg.mem_ns + cfg.cmp_ns:
            jobs.append(("ours", cfg.read_n, 1))
        for n in cfg.cmp_ns:
            jobs.append(("eager_npy", n, R))
            jobs.append(("eager_h5", n, R))
            if tl_python:
                jobs.append(("tl", n, R))
        bench.run_jobs(jobs)
        tl_res = [r for n in cfg.cmp_ns for r in bench.get("tl", n)]
        if tl_python and tl_res and all("error" in r for r in tl_res):
            tl_reason, tl_python = f"it did not run here: {tl_res[0]['error']}", None
        if tl_python:
            info["transformer-lens (separate venv)"] = next(
                (r["versions"] for r in tl_res if "versions" in r), "?")
        else:
            info["transformer-lens"] = f"not used: {tl_reason}"
        # the largest N each reaches (one repetition each)
        singles: list[tuple[str, int, int]] = []
        eager_max = tl_max = 0
        if cfg.eager_budget:
            eager_max = largest_n(baselines.eager_need_bytes, cfg.eager_budget)
            singles.append(("eager_npy", eager_max, 1))
            if tl_python:
                tl_max = largest_n(baselines.tl_need_bytes, cfg.eager_budget)
                singles.append(("tl", tl_max, 1))
        for n in cfg.big_ours:
            singles.append(("ours", n, 1))
        if singles:
            log(f"[{cfg.mode}] largest N: {singles}")
            bench.run_jobs(singles)

        # ---------------------------------------------------------------- section 1 (issue 2)
        ours = {n: bench.get("ours", n) for n in cfg.mem_ns + cfg.cmp_ns}
        t, m = extraction.memory_table(cfg, ours, bench.get("eager_npy", cfg.eager_n), cfg.eager_n)
        sections.append(("1a. Extraction peak extra RSS, tiny random Llama (issue 2)", t, m))
        t, m = extraction.throughput_table(bench.get("ours", cfg.tp_n), bench.get("zarr_alone", cfg.tp_n), cfg.tp_n)
        sections.append(("1b. Extraction wall time vs writing the same bytes with zarr alone (issue 2)", t, m))
        log(f"[{cfg.mode}] compression cases: random, peaked, MiniLM")
        cases = [(f"random-weight Llama (causal)", bench.get("ours", n)[0]) for n in cfg.mem_ns
                 if bench.get("ours", n)]
        cases.append((f"peaked Llama (q/k ×{extraction.PEAKED_SCALE:g}, causal)",
                      run_worker("ours", dict(n=cfg.peaked_n, dir=f"{work}/peaked", model="llama_peaked"))))
        cases.append(("real MiniLM-L6 on the demo text (bidirectional, max 512 positions)",
                      run_worker("ours", dict(n=0, dir=f"{work}/minilm", model="minilm"))))
        t, m = extraction.compression_table(cases)
        sections.append(("1c. Bytes on disk vs raw dense fp16 (issue 2)", t, m))

        # ---------------------------------------------------------------- section 2/3 reads
        log(f"[{cfg.mode}] reading at N={cfg.read_n}: dumping .npy and HDF5 of the same values")
        store_dir = f"{work}/ours-{cfg.read_n}"
        npy, h5 = f"{work}/read.npy", f"{work}/read.h5"
        sizes = reading.dump_dense(store_dir, npy, h5)
        import zarr

        shape = tuple(zarr.open_group(store_dir, mode="r")["runs/r/attention"].shape)
        rres = reading.measure(store_dir, npy, h5, shape, max(3, R) if cfg.mode != "smoke" else 1)
        t, m = reading.issue3_table(rres, cfg.read_n)
        # pyramid overhead
        with_p, without = Stat([r["wall_s"] for r in bench.get("ours", cfg.pyr_n) if "error" not in r]), \
            Stat([r["wall_s"] for r in bench.get("ours_nopyr", cfg.pyr_n) if "error" not in r])
        over = with_p.median / without.median - 1 if without.samples else float("nan")
        t += "\n\n" + md_table(
            [f"extraction at N = {cfg.pyr_n}", "wall time median (min–max)", "overhead", "target"],
            [["pyramid=True", fmt_time(with_p), f"{over * 100:+.1f} %", "≤ +15 %"],
             ["pyramid=False", fmt_time(without), "", ""]])
        m += f" Writing the pyramid costs {over * 100:+.1f} % (target ≤ 15 %: {'met' if over <= 0.15 else 'NOT met'})."
        sections.append((f"2. Reading a N = {kn(cfg.read_n)} run: local and global views (issue 3)", t, m))

        # ---------------------------------------------------------------- section 3 (issue 6)
        rows = []
        labels = {"ours": "ours (`Store.extract`, fp16 + pyramid)", "eager_npy": "eager `output_attentions` + `np.save`",
                  "eager_h5": "eager `output_attentions` + HDF5 gzip-1+shuffle",
                  "tl": "TransformerLens `run_with_cache` + `np.save`"}
        all_ns = sorted({n for (k, n) in bench.results if k in labels})
        for n in all_ns:
            base = Stat([r["wall_s"] for r in bench.get("ours", n) if "error" not in r]).median
            for kind, label in labels.items():
                res = bench.get(kind, n)
                if not res:
                    continue
                err = extraction.first_error(res)
                wall = Stat([r["wall_s"] for r in res if "error" not in r])
                mem = Stat([r["extra_rss"] for r in res if "error" not in r])
                b = next((r.get("attn_bytes", r.get("bytes")) for r in res if "error" not in r), float("nan"))
                if kind == "ours":
                    b = next((r["run_bytes"] for r in res if "error" not in r), float("nan"))
                rows.append([kn(n), label, fmt_time(wall) if wall.samples else "—",
                             fmt_mem(mem) if mem.samples else "—", fmt_bytes(b), wall.n,
                             ratio(wall.median, base) if kind != "ours" else "×1", err or ""])
        for n in cfg.would_need:
            if n > max(all_ns + [0]) or (n not in all_ns):
                rows.append([kn(n), "eager `output_attentions` (not run)", "—",
                             f"would need ≈ {baselines.eager_need_bytes(n) / GiB:.0f} GiB", "—", 0, "", ""])
                if tl_python:
                    rows.append([kn(n), "TransformerLens (not run)", "—",
                                 f"would need ≈ {baselines.tl_need_bytes(n) / GiB:.0f} GiB", "—", 0, "", ""])
        t = md_table(["N", "contender", "wall time median (min–max)", "peak extra RSS median (min–max)",
                      "bytes on disk", "reps", "time / ours", "note"], rows)
        biggest_ours = max((n for (k, n), v in bench.results.items() if k == "ours" and v
                            and "error" not in v[0]), default=0)
        if cfg.eager_budget:
            reach = (f"eager and TransformerLens were run up to N = {kn(max([eager_max, tl_max]))}, the largest "
                     f"that fits a {cfg.eager_budget / GiB:.0f} GiB safe budget on this shared 24 GiB machine; ")
        else:
            reach = f"this mode runs no largest-N rows (see the full mode); "
        m = (f"ours reached N = {kn(biggest_ours)} here with the peak memory shown; " + reach
             + "beyond that they would need the memory listed (estimated, not run). "
             + ("" if tl_python else f"TransformerLens: {tl_reason}."))
        sections.append(("3a. Extraction vs what people use today (issue 6)", t, m))
        t, m = reading.issue6_table(rres, cfg.read_n, sizes, dir_bytes(f"{store_dir}/runs/r"))
        sections.append((f"3b. Reading the same answers: ours vs `.npy` (mmap) vs HDF5 (issue 6)", t, m))
        log(f"[{cfg.mode}] storage at N={cfg.storage_n}")
        kinds = ("llama",) if cfg.mode == "smoke" else ("llama", "llama_peaked")
        sres = [storage.measure(cfg.storage_n, kind, work) for kind in kinds]
        t, m = storage.table(sres)
        sections.append(("3c. Storage settings (issue 6)", t, m))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    total = time.perf_counter() - t_start
    cmd = "python " + " ".join([os.path.relpath(__file__, Path.cwd())] + (argv if argv is not None else sys.argv[1:]))
    body = render(cfg, info, cmd, started, total, sections)
    print(body)
    Path(out_path).write_text(body)
    log(f"wrote {out_path} ({total:.0f} s)")
    return 0


def render(cfg: Config, info: dict[str, str], cmd: str, started: _dt.datetime, total: float,
           sections: list[tuple[str, str, str]]) -> str:
    lines = [
        "# sharingan_store benchmarks",
        "",
        *(["**Smoke mode: a code-path check at N ≤ 512, measured in one process; these figures mean nothing.**",
           ""] if cfg.mode == "smoke" else []),
        f"Mode **{cfg.mode}**, {cfg.reps} repetitions after one warm-up ({cfg.heavy_reps} at N ≥ 16K, 1 for the "
        f"\"largest N\" rows), measured side by side and interleaved in one run. Figures are medians with "
        f"(min–max). Peak extra RSS = the kernel's high-water mark (reset just before the call) minus the RSS "
        f"before it, in a fresh subprocess per measurement. Date: {started:%Y-%m-%d %H:%M %Z}; total "
        f"{total / 60:.1f} min.",
        "",
        f"Command: `{cmd}`",
        "",
        "## Machine and versions",
        "",
        md_table(["", ""], [[k, v] for k, v in info.items()]),
        "",
        "Inputs: the tiny random Llama of issue 2 (2 layers, 4 heads, 2 kv heads, hidden 64, seed 0) on the same "
        "seeded random token ids for every contender; TransformerLens builds its own random `HookedTransformer` "
        "of the same shape (it cannot load our model's weights from a config). The machine is shared with other "
        "engineers' tests, so absolute times are noisy; ratios measured in the same run are the figures to read.",
        "",
    ]
    for title, table, meaning in sections:
        lines += [f"## {title}", "", table, "", f"**What this means:** {meaning}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
