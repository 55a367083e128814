"""What people use today (issue 6), as worker tasks on the same inputs as ours.

- ``eager``: ``model(ids, output_attentions=True)`` with the eager attention implementation,
  every layer's ``[heads, N, N]`` cast to float16 (the dtype we store) into one array, then
  ``fmt="npy"``: ``np.save``; ``fmt="h5"``: h5py ``gzip`` level 1 + shuffle, auto chunks;
  ``fmt="none"``: nothing saved.
- ``tl``: TransformerLens ``HookedTransformer.run_with_cache`` (only the ``hook_pattern``
  activations cached) on a ``HookedTransformer`` built from a config of the same shape as the
  tiny Llama (2 layers, 4 heads, 2 kv heads, d_model 64, rotary, RMSNorm, gated SiLU MLP; its
  own random weights), then ``np.save`` of float16 patterns. It runs under a separate
  interpreter (its own venv), so nothing here imports ``sharingan_store`` at module level.

Memory needed by eager is estimated before running (:func:`eager_need_bytes`); a size that
would exceed the safe budget is recorded as "would need X GiB" and never run.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from benchmarks._common import _status_kib, dir_bytes, measure_call

NUM_LAYERS, NUM_HEADS, NUM_KV, HIDDEN, VOCAB, SEED = 2, 4, 2, 64, 128, 0


def eager_need_bytes(n: int, layers: int = NUM_LAYERS, heads: int = NUM_HEADS) -> int:
    """Rough peak of eager + save: fp32 outputs of all layers, scores+softmax transients of one
    layer, the float mask, and the float16 copy: ``(4LH + 8H + 4 + 2LH) N²`` bytes."""
    return (4 * layers * heads + 8 * heads + 4 + 2 * layers * heads) * n * n


def tl_need_bytes(n: int, layers: int = NUM_LAYERS, heads: int = NUM_HEADS) -> int:
    """As :func:`eager_need_bytes` plus TransformerLens' extra score copies and per-layer bool masks."""
    return (4 * layers * heads + 12 * heads + layers + 2 * layers * heads) * n * n


def _ids(n: int):
    import torch

    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(SEED))


def _save(arr: Any, path: str, fmt: str) -> None:
    import numpy as np

    if fmt == "npy":
        np.save(path, arr)
    elif fmt == "h5":
        import h5py

        with h5py.File(path, "w") as f:
            f.create_dataset("attention", data=arr, chunks=True, compression="gzip", compression_opts=1,
                             shuffle=True)
    elif fmt != "none":
        raise ValueError(fmt)


def task_eager(p: dict[str, Any]) -> dict[str, Any]:
    """Eager ``output_attentions=True`` then save (``p["fmt"]``) to ``p["path"]``."""
    import numpy as np
    import torch

    from benchmarks.extraction import make_model

    model = make_model("llama")
    model.set_attn_implementation("eager")
    n, path, fmt = p["n"], p["path"], p["fmt"]
    ids = _ids(n)
    marks: dict[str, int] = {}

    def go(ids: Any, path: str) -> None:
        with torch.inference_mode():
            out = model(ids[None], output_attentions=True, use_cache=False)
            marks["fwd_peak"] = _status_kib("VmHWM")
            att = out.attentions
            arr = np.empty((len(att), att[0].shape[1], ids.shape[0], ids.shape[0]), dtype=np.float16)
            for i, a in enumerate(att):
                arr[i] = a[0].to(torch.float16).numpy()
            del out, att, a
        _save(arr, path, fmt)

    go(ids[: min(256, n)], path + ".warm")
    if os.path.exists(path + ".warm"):
        os.remove(path + ".warm")
    res = measure_call(lambda: go(ids, path))
    res["fwd_extra_rss"] = max(0, marks["fwd_peak"] - res["base_rss"])
    res["bytes"] = dir_bytes(path) if os.path.exists(path) else 0
    if not p.get("keep") and os.path.exists(path):
        os.remove(path)
    return res


def task_tl(p: dict[str, Any]) -> dict[str, Any]:
    """TransformerLens ``run_with_cache`` (patterns only) then ``np.save`` float16."""
    import numpy as np
    import torch

    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError as exc:
        return {"error": f"transformer_lens has no HookedTransformer here: {exc}"}
    import importlib.metadata as md

    n, path = p["n"], p["path"]
    torch.manual_seed(SEED)
    cfg = HookedTransformerConfig(
        n_layers=NUM_LAYERS, d_model=HIDDEN, n_ctx=n, d_head=HIDDEN // NUM_HEADS, n_heads=NUM_HEADS,
        n_key_value_heads=NUM_KV, d_mlp=2 * HIDDEN, d_vocab=VOCAB, act_fn="silu", gated_mlp=True,
        normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=HIDDEN // NUM_HEADS,
        device="cpu", seed=SEED,
    )
    model = HookedTransformer(cfg).eval()
    ids = _ids(n)

    def go(ids: Any, path: str) -> None:
        with torch.inference_mode():
            _, cache = model.run_with_cache(ids[None], names_filter=lambda name: name.endswith("hook_pattern"))
            pats = [cache[f"blocks.{i}.attn.hook_pattern"] for i in range(NUM_LAYERS)]
            arr = np.empty((NUM_LAYERS, NUM_HEADS, ids.shape[0], ids.shape[0]), dtype=np.float16)
            for i, a in enumerate(pats):
                arr[i] = a[0].to(torch.float16).numpy()
            del cache, pats
        np.save(path, arr)

    go(ids[: min(256, n)], path + ".warm.npy")
    os.remove(path + ".warm.npy")
    res = measure_call(lambda: go(ids, path))
    res["bytes"] = dir_bytes(path)
    res["versions"] = (f"transformer-lens {md.version('transformer-lens')} with transformers "
                       f"{md.version('transformers')}, torch {md.version('torch')} ({sys.executable})")
    os.remove(path)
    return res


def tl_probe(python: str | None) -> str | None:
    """``None`` if ``python`` can import TransformerLens' ``HookedTransformer``, else why not."""
    import subprocess

    if not python:
        return "no TransformerLens interpreter given (--tl-python)"
    if not os.path.exists(python):
        return f"TransformerLens venv not found at {python} (create it with benchmarks/tl_venv.sh)"
    code = ("import importlib.metadata as m; from transformer_lens import HookedTransformer, "
            "HookedTransformerConfig; print(m.version('transformer-lens'), m.version('torch'))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "importing transformer_lens timed out"
    if out.returncode != 0:
        return "cannot import HookedTransformer: " + (out.stderr.strip().splitlines() or ["?"])[-1][:300]
    return None
