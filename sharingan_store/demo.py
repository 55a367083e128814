"""The demo: the real all-MiniLM-L6-v2 on an embedded public-domain text, offline.

``sharingan-store demo`` (the README's first command) extracts every layer and head into
``./demo-store``, prints a summary and writes a heatmap of one head with token labels.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEMO_TEXT", "DemoResult", "run_demo"]

#: The opening of Jane Austen's *Pride and Prejudice* (1813), public domain.
DEMO_TEXT = """It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in \
want of a wife.

However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth \
is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one \
or other of their daughters.

"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?"

Mr. Bennet replied that he had not.

"But it is," returned she; "for Mrs. Long has just been here, and she told me all about it."

Mr. Bennet made no answer.

"Do you not want to know who has taken it?" cried his wife impatiently.

"You want to tell me, and I have no objection to hearing it."

This was invitation enough.

"Why, my dear, you must know, Mrs. Long says that Netherfield is taken by a young man of large fortune from the \
north of England; that he came down on Monday in a chaise and four to see the place, and was so much delighted with \
it, that he agreed with Mr. Morris immediately; that he is to take possession before Michaelmas, and some of his \
servants are to be in the house by the end of next week."
"""


@dataclass(frozen=True)
class DemoResult:
    """What the demo did."""

    store: str
    run: str
    num_layers: int
    num_heads: int
    num_tokens: int
    bytes_on_disk: int
    bytes_raw: int
    seconds: float
    heatmap: str


def _du(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def run_demo(store_url: str = "demo-store", heatmap_path: str = "demo-heatmap.png", *, layer: int = 2,
             head: int = 0, progress: bool = True) -> DemoResult:
    """Extract MiniLM's attention on :data:`DEMO_TEXT` into ``store_url`` and plot one head.

    The run is replaced if it exists, so the demo can be run again.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sharingan_store.api import open_store
    from sharingan_store.testing import load_minilm
    from sharingan_store.viz import heatmap, save

    model, tokenizer = load_minilm()
    store = open_store(store_url)
    start = time.perf_counter()
    run = store.extract(model, DEMO_TEXT, tokenizer=tokenizer, run="minilm-pride-and-prejudice", dtype="float16",
                        overwrite=True, progress=progress, metadata={"source": "Pride and Prejudice, ch. 1"})
    seconds = time.perf_counter() - start
    att = run.attention
    n = att.sizes["query"]
    raw = att.sizes["layer"] * att.sizes["head"] * n * n * 2
    view = run.sel(layer=layer, head=head).local(center=n // 4, window=24)
    first, last = int(view["query"][0]), int(view["query"][-1])
    fig = heatmap(view, title=f"MiniLM layer {layer} head {head}: tokens {first}-{last}")
    save(fig, heatmap_path)
    return DemoResult(
        store=store.url, run=run.run_id, num_layers=att.sizes["layer"], num_heads=att.sizes["head"], num_tokens=n,
        bytes_on_disk=_du(os.path.join(store.url, "runs", run.run_id)), bytes_raw=raw, seconds=seconds,
        heatmap=os.path.abspath(heatmap_path),
    )
