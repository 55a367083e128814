"""Shared helpers of the benchmarks: timing statistics, peak-RSS in fresh subprocesses, tables.

Only the standard library and numpy are imported at module level, so the worker side of
this module also runs under a foreign interpreter (the TransformerLens venv).

Peak memory protocol (one fresh subprocess per measurement, see :func:`run_worker`): the
child builds its inputs, warms up once on a tiny input, ``gc.collect()``s, reads its
``VmRSS`` as the baseline, resets the kernel's high-water mark (``echo 5 >
/proc/self/clear_refs``), runs the measured call, then reads ``VmHWM``: *peak extra RSS* =
``VmHWM - baseline``. The parent also polls the child's RSS with psutil every few
milliseconds as a cross-check (it can only under-estimate short spikes).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
RESULT_TAG = "@@RESULT "
MiB = 2**20
GiB = 2**30


# ----------------------------------------------------------------------------- statistics
@dataclass
class Stat:
    """Median with min–max of a list of samples (seconds, bytes, …)."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def lo(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def hi(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    @property
    def n(self) -> int:
        return len(self.samples)

    def fmt(self, unit: str = "s", scale: float = 1.0, digits: int = 3) -> str:
        """``median (min–max)`` in ``unit`` after dividing by ``scale``."""
        if not self.samples:
            return "—"
        m, lo, hi = self.median / scale, self.lo / scale, self.hi / scale
        if len(self.samples) == 1:
            return f"{_num(m, digits)} {unit}".strip()
        return f"{_num(m, digits)} ({_num(lo, digits)}–{_num(hi, digits)}) {unit}".strip()


def _num(x: float, digits: int = 3) -> str:
    if x != x:  # nan
        return "nan"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_time(s: Stat) -> str:
    """Pick ms or s for a timing stat."""
    return s.fmt("ms", 1e-3) if s.median < 1 else s.fmt("s")


def ratio(a: float, b: float, digits: int = 3) -> str:
    """``a / b`` as ``×r``."""
    if not b or a != a or b != b:
        return "—"
    return f"×{_num(a / b, digits)}"


def time_reps(fn: Callable[[], Any], reps: int, *, warmup: bool = True,
              setup: Callable[[], Any] | None = None) -> tuple[Stat, Any]:
    """Call ``fn`` once to warm up, then ``reps`` timed times; ``setup`` runs untimed before each."""
    out = None
    if warmup:
        if setup is not None:
            setup()
        out = fn()
    st = Stat()
    for _ in range(reps):
        if setup is not None:
            setup()
        gc.collect()
        t = time.perf_counter()
        out = fn()
        st.samples.append(time.perf_counter() - t)
    return st, out


# ----------------------------------------------------------------------------- memory (child side)
def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def rss_bytes() -> int:
    """Current resident set size of this process."""
    return _status_kib("VmRSS")


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to the current RSS; False if the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_call(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` once, measured: wall time, baseline RSS, peak extra RSS (see module doc)."""
    gc.collect()
    base = rss_bytes()
    ok = reset_peak()
    t = time.perf_counter()
    extra = fn()
    wall = time.perf_counter() - t
    peak = _status_kib("VmHWM")
    out = {"wall_s": wall, "base_rss": base, "peak_rss": peak, "extra_rss": max(0, peak - base),
           "hwm_reset": ok}
    if isinstance(extra, dict):
        out.update(extra)
    return out


def emit_result(result: dict[str, Any]) -> None:
    """Child → parent: the one tagged JSON line on stdout."""
    sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- memory (parent side)
#: Set by ``run.py --smoke``: run tasks in this process (only a code-path check; the memory
#: figures are then not from fresh processes). Tasks needing another interpreter still fork.
INPROCESS = False


def run_worker(task: str, params: dict[str, Any], *, python: str | None = None,
               timeout: float = 1800) -> dict[str, Any]:
    """Run ``benchmarks._worker`` task ``task`` in a fresh subprocess and return its result dict.

    The parent polls the child's RSS (psutil, 5 ms) as a cross-check (``polled_peak_rss``).
    A failing child returns ``{"error": ...}`` rather than raising.
    """
    import psutil

    if INPROCESS and python is None:
        import importlib

        from benchmarks._worker import TASKS

        module, name = TASKS[task]
        try:
            return getattr(importlib.import_module(module), name)(params)
        except Exception as exc:  # noqa: BLE001
            return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}

    cmd = [python or sys.executable, "-m", "benchmarks._worker", task, json.dumps(params)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TQDM_DISABLE", "1")
    proc = subprocess.Popen(cmd, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    polled = 0
    try:
        ps = psutil.Process(proc.pid)
        start = time.monotonic()
        while proc.poll() is None:
            try:
                polled = max(polled, ps.memory_info().rss)
            except psutil.Error:
                break
            if time.monotonic() - start > timeout:
                proc.kill()
                break
            time.sleep(0.005)
    finally:
        stdout, stderr = proc.communicate()
    for line in stdout.splitlines()[::-1]:
        if line.startswith(RESULT_TAG):
            res = json.loads(line[len(RESULT_TAG):])
            res["polled_peak_rss"] = polled
            return res
    tail = (stderr or stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


# ----------------------------------------------------------------------------- files
def dir_bytes(path: str | os.PathLike[str]) -> int:
    """Apparent bytes of every file under ``path`` (a file: its size)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _, files in os.walk(p):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total


# ----------------------------------------------------------------------------- tables
def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def fmt_bytes(b: float) -> str:
    if b != b:
        return "—"
    for unit, s in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if b >= s:
            return f"{b / s:.3g} {unit}" if b / s < 100 else f"{b / s:,.0f} {unit}"
    return f"{b:.0f} B"


def fmt_mem(s: Stat) -> str:
    """A memory stat in MiB (GiB above 4 GiB)."""
    if s.median >= 4 * GiB:
        return s.fmt("GiB", GiB)
    return s.fmt("MiB", MiB)


def kn(n: int) -> str:
    """1024 → '1K'."""
    return f"{n // 1024}K" if n % 1024 == 0 and n >= 1024 else str(n)


# ----------------------------------------------------------------------------- machine
def machine_info() -> dict[str, str]:
    """Cores, RAM, CPU model, OS, Python and library versions."""
    info: dict[str, str] = {}
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["CPU"] = cpu
    info["cores"] = str(os.cpu_count())
    try:
        import psutil

        info["RAM"] = f"{psutil.virtual_memory().total / GiB:.1f} GiB"
        info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except Exception:  # noqa: BLE001
        pass
    info["OS"] = f"{platform.system()} {platform.release()} ({platform.platform()})"
    info["Python"] = platform.python_version()
    import importlib.metadata as md

    for pkg in ("sharingan-store", "torch", "transformers", "zarr", "numcodecs", "numpy", "xarray", "dask",
                "h5py", "psutil"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = "not installed"
    return info
