"""Extraction benchmarks (issue 2): our extraction's memory, throughput and compression.

Worker tasks (run in fresh subprocesses by :func:`benchmarks._common.run_worker`):

- ``ours``: ``Store.extract`` of a model on the shared inputs into a fresh store;
- ``zarr_alone``: the same fp16 bytes written block by block into a zarr array with the
  same chunks, shards and codecs (read from one of our runs beforehand, untimed), with the
  same two writer threads and the same causal skipping — the "codec alone" floor.

Inputs are the same for every contender: ``make_ids(n)`` (seeded random token ids) and the
tiny random Llama of issue 2 (``tiny_model("llama", num_layers=2, num_heads=4,
num_kv_heads=2, hidden_size=64)``).
"""

from __future__ import annotations

import math
import os
import shutil
from typing import Any

from benchmarks._common import (
    Stat,
    dir_bytes,
    fmt_bytes,
    fmt_mem,
    fmt_time,
    kn,
    md_table,
    measure_call,
    ratio,
)

LLAMA = dict(num_layers=2, num_heads=4, num_kv_heads=2, hidden_size=64)
NUM_LAYERS, NUM_HEADS = LLAMA["num_layers"], LLAMA["num_heads"]
VOCAB = 128
SEED = 0
WARMUP_N = 256
PEAKED_SCALE = 16.0  # q and k projections scaled by this: logits ×256, sharp rows (median row max ≈ 0.65 at 1K)


def make_ids(n: int):
    """The shared input: ``n`` seeded random token ids in ``[0, 128)``."""
    import torch

    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(SEED))


def make_model(kind: str = "llama"):
    """``"llama"``: the tiny random Llama; ``"llama_peaked"``: the same with q/k scaled (peaked rows)."""
    import torch

    from sharingan_store.testing import tiny_model

    model = tiny_model("llama", **LLAMA)
    if kind == "llama_peaked":
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.weight.mul_(PEAKED_SCALE)
                layer.self_attn.k_proj.weight.mul_(PEAKED_SCALE)
    elif kind != "llama":
        raise ValueError(kind)
    return model


def written_bytes(layout: dict[str, Any], causal: bool, layers: int, heads: int, itemsize: int) -> int:
    """Uncompressed bytes handed to the codec: the written (causal: lower-triangle chunk) region."""
    n, chunk, rows = layout["seq_len"], layout["chunk"], layout["q_block"]
    rows = min(math.ceil(rows / chunk) * chunk, math.ceil(n / chunk) * chunk)
    total = 0
    for q0 in range(0, n, rows):
        q1 = min(q0 + rows, n)
        kend = min(n, math.ceil(q1 / chunk) * chunk) if causal else n
        total += (q1 - q0) * kend
    return total * layers * heads * itemsize


# ----------------------------------------------------------------------------- worker tasks
def task_ours(p: dict[str, Any]) -> dict[str, Any]:
    """Extract into ``p["dir"]`` (a new store); returns time, memory and bytes."""
    import sharingan_store as ss
    from sharingan_store import schema

    kw = dict(progress=False, pyramid=p.get("pyramid", True), dtype=p.get("dtype", "float16"),
              keepbits=p.get("keepbits"))
    if p.get("model") == "minilm":
        from sharingan_store.demo import DEMO_TEXT
        from sharingan_store.testing import load_minilm

        model, tok = load_minilm()
        args: dict[str, Any] = dict(text=DEMO_TEXT, tokenizer=tok)
        warm = dict(text=DEMO_TEXT[:200], tokenizer=tok)
    else:
        model = make_model(p.get("model", "llama"))
        ids = make_ids(p["n"])
        args, warm = dict(input_ids=ids), dict(input_ids=ids[:min(WARMUP_N, p["n"])])
    store = ss.open_store(p["dir"], mode="w")
    store.extract(model, run="warmup", **warm, **kw)
    store.delete("warmup") if hasattr(store, "delete") else None
    res = measure_call(lambda: store.extract(model, run="r", **args, **kw) and None)
    run_dir = os.path.join(p["dir"], schema.RUNS_GROUP, "r")
    arr = store.root[f"{schema.RUNS_GROUP}/r/{schema.ATTENTION}"]
    info = dict(arr.attrs)[schema.WRITE_ATTR]
    layers, heads, n = arr.shape[0], arr.shape[1], arr.shape[2]
    res.update(
        n=n, layers=layers, heads=heads, causal=info["causal"], layout=info["layout"],
        attn_bytes=dir_bytes(os.path.join(run_dir, schema.ATTENTION)), run_bytes=dir_bytes(run_dir),
        dense_fp16_bytes=layers * heads * n * n * 2,
        written_bytes=written_bytes(info["layout"], info["causal"], layers, heads, arr.dtype.itemsize),
    )
    if not p.get("keep"):
        shutil.rmtree(p["dir"], ignore_errors=True)
    return res


def task_zarr_alone(p: dict[str, Any]) -> dict[str, Any]:
    """Write the blocks of run ``r`` of store ``p["src"]`` into a new array with the same codecs."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import zarr

    from sharingan_store import schema

    src = zarr.open_group(p["src"], mode="r")[f"{schema.RUNS_GROUP}/r/{schema.ATTENTION}"]
    info = dict(src.attrs)[schema.WRITE_ATTR]
    layout, causal = info["layout"], info["causal"]
    n, chunk = layout["seq_len"], layout["chunk"]
    rows = min(math.ceil(layout["q_block"] / chunk) * chunk, math.ceil(n / chunk) * chunk)
    blocks = []  # read untimed: only the write is measured
    for layer in range(src.shape[0]):
        for q0 in range(0, n, rows):
            q1 = min(q0 + rows, n)
            kend = min(n, math.ceil(q1 / chunk) * chunk) if causal else n
            blocks.append((layer, q0, q1, kend, np.ascontiguousarray(src[layer, :, q0:q1, :kend])))

    def make(path: str):
        return zarr.create_array(
            store=path, shape=src.shape, dtype=src.dtype, chunks=src.chunks, shards=src.shards,
            filters=src.filters, compressors=src.compressors, serializer=src.serializer, fill_value=0,
            config={"write_empty_chunks": True}, overwrite=True,
        )

    def write_all(path: str) -> None:
        dst = make(path)
        with ThreadPoolExecutor(2) as pool:  # the RunWriter's two writer threads
            futs = [pool.submit(dst.__setitem__, (layer, slice(None), slice(q0, q1), slice(0, kend)), data)
                    for layer, q0, q1, kend, data in blocks]
            for f in futs:
                f.result()

    write_all(p["dst"] + "-warm")
    shutil.rmtree(p["dst"] + "-warm", ignore_errors=True)
    res = measure_call(lambda: write_all(p["dst"]))
    res["bytes"] = dir_bytes(p["dst"])
    res["written_bytes"] = sum(b[-1].nbytes for b in blocks)
    shutil.rmtree(p["dst"], ignore_errors=True)
    return res


# ----------------------------------------------------------------------------- orchestration
def stat_of(results: list[dict[str, Any]], key: str) -> Stat:
    return Stat([r[key] for r in results if key in r and "error" not in r])


def first_error(results: list[dict[str, Any]]) -> str | None:
    for r in results:
        if "error" in r:
            return r["error"]
    return None


def memory_table(cfg: Any, ours: dict[int, list[dict]], eager: list[dict], eager_n: int) -> tuple[str, str]:
    """Peak extra RSS of ours at ``cfg.mem_ns`` and of eager ``output_attentions`` at ``eager_n``."""
    rows = []
    ns = cfg.mem_ns
    base = stat_of(ours[ns[0]], "extra_rss").median
    for n in ns:
        s = stat_of(ours[n], "extra_rss")
        rows.append([f"ours (`Store.extract`)", kn(n), fmt_mem(s), s.n, ratio(n, ns[0]), ratio(s.median, base),
                     first_error(ours[n]) or ""])
    e_fwd = stat_of(eager, "fwd_extra_rss")
    rows.append(["eager `output_attentions=True` (forward only)", kn(eager_n), fmt_mem(e_fwd), e_fwd.n, "", "",
                 first_error(eager) or ""])
    table = md_table(["contender", "N", "peak extra RSS median (min–max)", "reps", "N ratio", "memory ratio", "note"],
                     rows)
    growth = stat_of(ours[ns[-1]], "extra_rss").median / base if base else float("nan")
    ours_at = stat_of(ours[eager_n], "extra_rss").median if eager_n in ours else float("nan")
    frac = ours_at / e_fwd.median if e_fwd.samples else float("nan")
    meaning = (
        f"×{ns[-1] // ns[0]} N costs ×{growth:.2f} memory (target ≤ ×5: {'met' if growth <= 5 else 'NOT met'}); "
        f"at N = {kn(eager_n)} ours uses {frac:.3f} of eager's peak (target ≤ 1/10: "
        f"{'met' if frac <= 0.1 else 'NOT met'})."
    )
    return table, meaning


def throughput_table(ours: list[dict], alone: list[dict], n: int) -> tuple[str, str]:
    o, a = stat_of(ours, "wall_s"), stat_of(alone, "wall_s")
    wb = ours[0].get("written_bytes", float("nan")) if ours and "error" not in ours[0] else float("nan")
    mbps_o = Stat([wb / 1e6 / x for x in o.samples])
    mbps_a = Stat([wb / 1e6 / x for x in a.samples])
    rows = [
        ["ours: forward + exact blocks + cast + pyramid + zarr write", kn(n), fmt_time(o), mbps_o.fmt("MB/s"),
         ratio(o.median, a.median)],
        ["zarr alone: same bytes, chunks, shards, codecs, 2 threads", kn(n), fmt_time(a), mbps_a.fmt("MB/s"), "×1"],
    ]
    table = md_table(["what", "N", "wall time median (min–max)", "throughput (uncompressed fp16 written)",
                      "ratio to zarr alone"], rows)
    r = o.median / a.median if a.samples and o.samples else float("nan")
    meaning = (f"extraction costs ×{r:.2f} the zarr-alone write of the same {fmt_bytes(wb)} "
               f"(target ≤ ×2: {'met' if r <= 2 else 'NOT met'}).")
    return table, meaning


def compression_table(cases: list[tuple[str, dict]]) -> tuple[str, str]:
    rows, verdicts = [], []
    for label, r in cases:
        if "error" in r:
            rows.append([label, "", "", "", "", r["error"]])
            continue
        rat = r["dense_fp16_bytes"] / r["attn_bytes"]
        target = 2.2 if label.startswith("random") else 5.0
        ok = rat >= target
        verdicts.append(f"{label}: ×{rat:.2f} ({'met' if ok else 'NOT met'} ≥ ×{target})")
        rows.append([label, kn(r["n"]) + (" (bidirectional)" if not r["causal"] else " (causal)"),
                     fmt_bytes(r["dense_fp16_bytes"]), fmt_bytes(r["attn_bytes"]), f"×{rat:.2f}",
                     f"≥ ×{target}"])
    table = md_table(["case", "N", "raw dense fp16", "on disk (attention array)", "ratio", "target"], rows)
    return table, "; ".join(verdicts) + "."
