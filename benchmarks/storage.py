"""Storage benchmarks (issue 6): bytes on disk per storage setting, with the measured error.

One model and input (the tiny random Llama on the shared ids, and the same with peaked
attention), extracted once per setting through ``Store.extract``; the error of each setting
is measured against a ``dtype="float32"`` extraction of the same input (exact to ≤ 1e-5 of
eager), layer by layer through the public API. Bytes are those of the ``attention`` array.
The HDF5 reference holds the same float16 values, gzip level 1 + shuffle, auto chunks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np

from benchmarks._common import dir_bytes, fmt_bytes, md_table

SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("float32 lossless", dict(dtype="float32")),
    ("float16 lossless (default)", dict(dtype="float16")),
    ("bfloat16 lossless", dict(dtype="bfloat16")),
    ("float16 + BitRound keepbits=7", dict(dtype="float16", keepbits=7)),
    ("float16 + BitRound keepbits=5", dict(dtype="float16", keepbits=5)),
    ("float16 + BitRound keepbits=3", dict(dtype="float16", keepbits=3)),
)


def measure(n: int, model_kind: str, workdir: str) -> dict[str, Any]:
    """Extract every setting at ``n``; returns bytes and max abs error per setting, and the h5 size."""
    import h5py

    import sharingan_store as ss
    from benchmarks.extraction import make_ids, make_model
    from sharingan_store import schema

    model, ids = make_model(model_kind), make_ids(n)
    d = tempfile.mkdtemp(dir=workdir)
    store = ss.open_store(os.path.join(d, "store"), mode="w")
    out: dict[str, Any] = {"n": n, "model": model_kind, "settings": []}
    runs = []
    for i, (label, kw) in enumerate(SETTINGS):
        rid = f"s{i}"
        store.extract(model, input_ids=ids, run=rid, progress=False, pyramid=False, **kw)
        runs.append((label, rid))
    ref = store.open("s0")
    layers, heads = len(ref.layers), len(ref.heads)
    out["dense_fp16"] = layers * heads * n * n * 2
    h5_path = os.path.join(d, "ref.h5")
    f16 = store.open("s1")
    with h5py.File(h5_path, "w") as f:
        ds = f.create_dataset("attention", shape=(layers, heads, n, n), dtype=np.float16, chunks=True,
                              compression="gzip", compression_opts=1, shuffle=True)
        for layer in range(layers):
            ds[layer] = f16.isel(layer=layer).attention.values.astype(np.float16)
    out["h5"] = os.path.getsize(h5_path)
    for label, rid in runs:
        err = 0.0
        run = store.open(rid)
        for layer in range(layers):
            a = np.asarray(run.isel(layer=layer).attention.values, np.float32)
            b = np.asarray(ref.isel(layer=layer).attention.values, np.float32)
            err = max(err, float(np.abs(a - b).max()))
        path = os.path.join(d, "store", schema.RUNS_GROUP, rid, schema.ATTENTION)
        out["settings"].append({"label": label, "bytes": dir_bytes(path), "max_abs_err": err})
    shutil.rmtree(d, ignore_errors=True)
    return out


def table(results: list[dict[str, Any]]) -> tuple[str, str]:
    rows = []
    notes = []
    for res in results:
        raw = res["dense_fp16"]
        tag = f"{res['model']}, N = {res['n']}"
        rows.append([tag, "raw dense float16 (`.npy` size)", fmt_bytes(raw), "×1", "0 (vs fp16)"])
        rows.append([tag, "raw dense float32", fmt_bytes(2 * raw), "×0.5", "0"])
        rows.append([tag, "HDF5 gzip-1+shuffle of float16", fmt_bytes(res["h5"]), f"×{raw / res['h5']:.2f}",
                     "as float16"])
        for s in res["settings"]:
            rows.append([tag, f"ours: {s['label']}", fmt_bytes(s["bytes"]), f"×{raw / s['bytes']:.2f}",
                         f"{s['max_abs_err']:.2g}"])
        f16 = next(s for s in res["settings"] if s["label"].startswith("float16 lossless"))
        notes.append(f"{tag}: fp16 lossless ×{raw / f16['bytes']:.2f} vs raw fp16 and "
                     f"×{res['h5'] / f16['bytes']:.2f} smaller than gzip HDF5")
    t = md_table(["case", "storage", "bytes on disk", "smaller than raw fp16 by", "max abs error vs float32"], rows)
    return t, "; ".join(notes) + " (lossy BitRound trades the listed max error for size)."
