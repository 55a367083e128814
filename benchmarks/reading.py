"""Reading benchmarks (issues 3 and 6), in the orchestrating process, on one kept run.

Every repetition opens its source anew (``open_store`` / ``np.load(mmap_mode="r")`` /
``h5py.File``) and the open is inside the timing. The OS page cache is not dropped (that
needs root over a shared machine): all contenders read from a warm page cache alike, after one
warm-up call each. Each answer is checked against the ``.npy`` answer (``max |Δ|``).

The ``.npy`` and HDF5 files hold the *same* float16 values as our run (dumped from it), so
every contender answers the same question from the same numbers.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from benchmarks._common import Stat, fmt_bytes, fmt_time, md_table, ratio, time_reps

GLOBAL_SIZE = 256
WINDOW = 64
ROW_BLOCK = 512


def dump_dense(store_dir: str, npy_path: str, h5_path: str) -> dict[str, int]:
    """Write our run ``r`` as a dense float16 ``.npy`` and an HDF5 file (gzip 1 + shuffle, auto chunks)."""
    import h5py
    import zarr

    from sharingan_store import schema

    src = zarr.open_group(store_dir, mode="r")[f"{schema.RUNS_GROUP}/r/{schema.ATTENTION}"]
    mm = np.lib.format.open_memmap(npy_path, mode="w+", dtype=np.float16, shape=src.shape)
    with h5py.File(h5_path, "w") as f:
        ds = f.create_dataset("attention", shape=src.shape, dtype=np.float16, chunks=True, compression="gzip",
                              compression_opts=1, shuffle=True)
        for layer in range(src.shape[0]):
            for h in range(src.shape[1]):
                block = np.asarray(src[layer, h])
                mm[layer, h] = block
                ds[layer, h] = block
    mm.flush()
    del mm
    return {"npy": os.path.getsize(npy_path), "h5": os.path.getsize(h5_path)}


# ------------------------------------------------------------------ dense reference answers
def _coarsen(a: np.ndarray, size: int) -> np.ndarray:
    n = a.shape[-1]
    c = -(-n // size)
    if n % c:
        raise ValueError("benchmark N must be a multiple of the cell size")
    return a.reshape(n // c, c, n // c, c).astype(np.float32).mean(axis=(1, 3))


def _entropy_rows(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(a > 0, a * np.log(a), 0.0)
    return -t.sum(axis=-1)


def dense_answers(get: Callable[[], Any], task: str, shape: tuple[int, ...], center: int) -> np.ndarray:
    """The answer of ``task`` from an array-like ``get()`` (npy memmap or h5 dataset) of ``shape``."""
    layers, heads, n, _ = shape
    src = get()
    lo, hi = max(0, center - WINDOW), min(n - 1, center + WINDOW) + 1
    if task == "local":
        return np.asarray(src[0, :, lo:hi, lo:hi]).astype(np.float32)
    if task == "layer":
        return np.asarray(src[0])
    if task == "head":
        return np.asarray(src[0, 0])
    if task == "global":
        out = np.empty((layers, heads, GLOBAL_SIZE, GLOBAL_SIZE), np.float32)
        for layer in range(layers):
            for h in range(heads):
                out[layer, h] = _coarsen(np.asarray(src[layer, h]), GLOBAL_SIZE)
        return out
    if task == "entropy":
        out = np.empty((heads, n), np.float32)
        for q0 in range(0, n, ROW_BLOCK):
            out[:, q0:q0 + ROW_BLOCK] = _entropy_rows(np.asarray(src[0, :, q0:q0 + ROW_BLOCK]))
        return out
    raise ValueError(task)


def ours_answer(store_dir: str, task: str, center: int) -> np.ndarray:
    """The same answer from our store, through the public API, opened anew."""
    import sharingan_store as ss

    run = ss.open_store(store_dir, mode="r").open("r")
    if task == "local":
        return run.sel(layer=run.layers[0]).local(center=center, window=WINDOW).values
    if task == "layer":
        return run.sel(layer=run.layers[0]).attention.values
    if task == "head":
        return run.isel(layer=0, head=0).attention.values
    if task == "global":
        return run.global_view(GLOBAL_SIZE).values
    if task == "global_scan":
        return run.global_view(GLOBAL_SIZE, use_pyramid=False).values
    if task == "entropy":
        return run.sel(layer=run.layers[0]).entropy().values
    if task == "open":
        return np.asarray(run.seq_len)
    raise ValueError(task)


def _maxdiff(a: Any, b: Any) -> float:
    a, b = np.squeeze(np.asarray(a, np.float32)), np.squeeze(np.asarray(b, np.float32))
    if a.shape != b.shape:
        return float("nan")
    return float(np.nanmax(np.abs(a - b))) if a.size else 0.0


def measure(store_dir: str, npy_path: str, h5_path: str, shape: tuple[int, ...], reps: int,
            tasks: tuple[str, ...] = ("open", "local", "layer", "head", "global", "global_scan", "entropy"),
            ) -> dict[str, dict[str, Any]]:
    """Time every task for ours, npy (mmap) and h5; returns ``{task: {contender: (Stat, maxdiff)}}``."""
    import h5py

    center = min(8000, shape[2] // 2) if shape[2] > 8000 else shape[2] // 2
    out: dict[str, dict[str, Any]] = {"_center": {"value": center}}

    def npy_get():
        return np.load(npy_path, mmap_mode="r")

    for task in tasks:
        row: dict[str, Any] = {}
        st, ans = time_reps(lambda: ours_answer(store_dir, task, center), reps)
        ref_task = "global" if task == "global_scan" else task
        ref = None
        if task != "open":
            st_n, ref = time_reps(lambda: dense_answers(npy_get, ref_task, shape, center), reps)
            row["npy"] = (st_n, 0.0)

            def h5_answer():
                with h5py.File(h5_path, "r") as f:
                    return dense_answers(lambda: f["attention"], ref_task, shape, center)

            st_h, ans_h = time_reps(h5_answer, reps)
            row["h5"] = (st_h, _maxdiff(ans_h, ref))
            del ans_h
        row["ours"] = (st, _maxdiff(ans, ref) if ref is not None else 0.0)
        out[task] = row
        del ans, ref
    return out


def issue3_table(res: dict[str, Any], n: int) -> tuple[str, str]:
    c = res["_center"]["value"]
    loc, lay = res["local"]["ours"][0], res["layer"]["ours"][0]
    gp, gs = res["global"]["ours"][0], res["global_scan"]["ours"][0]
    rows = [
        [f"`local(center={c}, window={WINDOW})`, layer 0", fmt_time(loc), ratio(lay.median, loc.median), "≥ ×100"],
        ["whole layer 0 (`sel(layer=0).attention.values`)", fmt_time(lay), "×1", ""],
        [f"`global_view({GLOBAL_SIZE})` from the pyramid (all layers, heads)", fmt_time(gp),
         ratio(gs.median, gp.median), "≥ ×20"],
        [f"`global_view({GLOBAL_SIZE}, use_pyramid=False)` full-scan coarsen", fmt_time(gs), "×1", ""],
        ["cold `open_store(...).open(run)` alone (included above)", fmt_time(res["open"]["ours"][0]), "", ""],
    ]
    table = md_table([f"read (N = {n}, cold open each rep, includes the open)", "time median (min–max)",
                      "speed-up", "target"], rows)
    r1, r2 = lay.median / loc.median, gs.median / gp.median
    meaning = (f"local view is ×{r1:.0f} faster than reading the layer (target ≥ ×100: "
               f"{'met' if r1 >= 100 else 'NOT met'}); pyramid global view is ×{r2:.0f} faster than the full "
               f"scan (target ≥ ×20: {'met' if r2 >= 20 else 'NOT met'}).")
    return table, meaning


def issue6_table(res: dict[str, Any], n: int, sizes: dict[str, int], store_bytes: int) -> tuple[str, str]:
    labels = {"local": f"local view (layer 0, ±{WINDOW})", "head": "one head, full read",
              "global": f"global view {GLOBAL_SIZE}² (all layers/heads)", "entropy": "entropy over layer 0"}
    rows = []
    worst = []
    for task, label in labels.items():
        r = res[task]
        o = r["ours"][0]
        for name, key in (("ours (sharingan_store)", "ours"), ("`.npy` memory-mapped", "npy"),
                          ("HDF5 gzip-1+shuffle", "h5")):
            s, d = r[key]
            rows.append([label, name, fmt_time(s), ratio(s.median, o.median) if key != "ours" else "×1",
                         f"{d:.2g}"])
        worst.append((label, r["npy"][0].median / o.median, r["h5"][0].median / o.median))
    rows.append(["bytes on disk", "ours (attention + pyramid + coords)", fmt_bytes(store_bytes), "", ""])
    rows.append(["bytes on disk", "`.npy`", fmt_bytes(sizes["npy"]), "", ""])
    rows.append(["bytes on disk", "HDF5 gzip-1+shuffle", fmt_bytes(sizes["h5"]), "", ""])
    table = md_table([f"task (N = {n})", "contender", "time median (min–max)", "their time / ours",
                      "max |Δ| vs npy"], rows)
    meaning = "; ".join(f"{lab}: npy ×{a:.2g}, h5 ×{b:.2g} our time" for lab, a, b in worst) + "."
    return table, meaning
