"""Many short inputs: padded batches through the model, one run per sequence, padding stripped.

:func:`extract_batch` tokenises every text (offsets and sentence ids as for a single run),
sorts them by length so batches carry little padding, and runs each batch of
``batch_size`` sequences through the model in **one** forward pass with an attention mask.
The batched blocks ``[B, h, q, K]`` are routed to one :class:`~sharingan_store.write.RunWriter`
per sequence with the padding stripped: only the sequence's own query rows and keys are
kept (with left padding the real tokens are the *last* ones of the row), and rows are
re-blocked to each run's own block grid, so every run is byte-for-byte what a single
extraction of that sequence writes (up to float rounding of batched matmuls).

Padding: ``"right"`` for bidirectional models (always); causal models take ``"left"`` or
``"right"`` (default: the tokenizer's ``padding_side``). Left-padded batches pass
``position_ids`` computed from the mask, so absolute position embeddings see the same
positions as an unpadded run.

Examples
--------
>>> import tempfile, torch
>>> from sharingan_store.store.catalog import Catalog
>>> from sharingan_store.testing import tiny_model
>>> catalog = Catalog(tempfile.mkdtemp() + "/s")
>>> ids = [torch.arange(1, 9), torch.arange(1, 20), torch.arange(3, 7)]
>>> extract_batch(catalog, tiny_model("llama"), input_ids=ids, runs=["a", "b", "c"], batch_size=2,
...               progress=False)
['a', 'b', 'c']
>>> [catalog.open_dataset(r).sizes["query"] for r in ("a", "b", "c")]
[8, 19, 4]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from sharingan_store.errors import RunExistsError
from sharingan_store.extract import (
    DEFAULT_MAX_BLOCK_BYTES,
    TokenizedInput,
    check_input_ids,
    model_info,
    plan_blocks,
    prepare_input,
    resolve_device,
    resolve_indices,
    run_extraction,
)
from sharingan_store.extract.model import weights_fingerprint
from sharingan_store.store.extraction import _tokenizer_name, create_run_writer
from sharingan_store.store.provenance import check_run_id, new_run_id
from sharingan_store.write import CodecSpec, RunWriter
from sharingan_store.write.codecs import validate_storage_dtype

__all__ = ["BatchRouter", "extract_batch"]


class BatchRouter:
    """Route batched blocks to one writer per sequence, padding stripped and rows re-blocked.

    Parameters
    ----------
    writers
        One :class:`RunWriter` per batch element (``submit(layer_pos, head_pos, q0, q1, block)``).
    offsets, lengths
        Where each sequence's real tokens lie in the padded row: ``[offset, offset + length)``
        (``offset = 0`` for right padding, ``padded_len - length`` for left padding).

    Blocks of the padded batch cover query rows ``[q0, q1)`` of the padded sequence (and all
    keys, or for plain causal attention without padding only the first ``W >= q1`` keys: the
    others are exact zeros, see :data:`~sharingan_store.extract.pipeline.BlockConsumer`); a
    sequence's writer wants whole blocks of *its* grid (``writer.layout.block_rows``). A
    piece that is a whole block is submitted directly; otherwise rows are gathered into a
    buffer of one block (on the block's device) and submitted when complete. Rows arrive in
    order per (layer, head block), so at most one buffer per sequence and head block lives
    at a time.
    """

    def __init__(self, writers: Sequence[Any], offsets: Sequence[int], lengths: Sequence[int]):
        if not len(writers) == len(offsets) == len(lengths):
            raise ValueError("writers, offsets and lengths must have the same length")
        self.writers = list(writers)
        self.offsets = [int(o) for o in offsets]
        self.lengths = [int(n) for n in lengths]
        self._buffers: dict[tuple[int, int, int, int], list[Any]] = {}

    def __call__(self, layer_pos: int, head_pos: slice, q0: int, q1: int, probs: torch.Tensor) -> None:
        if probs.ndim == 3:
            probs = probs[None]
        if probs.shape[0] != len(self.writers):
            raise ValueError(f"a block of batch {probs.shape[0]} for {len(self.writers)} writers")
        for i, writer in enumerate(self.writers):
            off, n = self.offsets[i], self.lengths[i]
            r0, r1 = max(q0, off), min(q1, off + n)
            if r0 >= r1:
                continue  # rows of padding only
            rows = probs[i, :, r0 - q0:r1 - q0, off:off + n]
            self._feed(i, writer, layer_pos, head_pos, r0 - off, r1 - off, rows)

    def _feed(self, i: int, writer: Any, layer_pos: int, head_pos: slice, a: int, b: int,
              rows: torch.Tensor) -> None:
        n = self.lengths[i]
        step = writer.layout.block_rows
        base = a
        while a < b:
            blk0 = a // step * step
            blk1 = min(blk0 + step, n)
            take = min(b, blk1)
            piece = rows[:, a - base:take - base]
            key = (i, layer_pos, head_pos.start, head_pos.stop)
            if a == blk0 and take == blk1 and key not in self._buffers:
                writer.submit(layer_pos, head_pos, blk0, blk1, piece)
            else:
                entry = self._buffers.get(key)
                if entry is None:
                    # zeros: a narrow causal piece (plain causal attention emits only the keys
                    # visible to the block) leaves the keys after it at their exact value, 0
                    buf = torch.zeros((rows.shape[0], blk1 - blk0, n), dtype=rows.dtype, device=rows.device)
                    entry = self._buffers[key] = [buf, blk0, 0]
                buf, start, filled = entry
                if start != blk0:
                    raise RuntimeError(f"rows of sequence {i} arrived out of order (block {start} unfinished)")
                buf[:, a - blk0:take - blk0, :piece.shape[-1]] = piece
                entry[2] = filled + (take - a)
                if entry[2] == blk1 - blk0:
                    del self._buffers[key]
                    writer.submit(layer_pos, head_pos, blk0, blk1, buf)
            a = take

    def check_done(self) -> None:
        """Raise if some block was only partly received (a bug upstream)."""
        if self._buffers:
            raise RuntimeError(f"incomplete blocks left in the batch router: {sorted(self._buffers)[:5]}")


def _as_metadata_list(metadata: Any, count: int) -> list[dict[str, Any]]:
    if metadata is None:
        return [{} for _ in range(count)]
    if isinstance(metadata, Mapping):
        return [dict(metadata) for _ in range(count)]
    items = list(metadata)
    if len(items) != count:
        raise ValueError(f"metadata is a list of {len(items)} dicts for {count} inputs")
    return [dict(m or {}) for m in items]


def _padding_side(requested: str | None, tokenizer: Any, causal: bool) -> str:
    side = requested
    if side is None:
        side = getattr(tokenizer, "padding_side", "right") if causal else "right"
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
    if side == "left" and not causal:
        raise ValueError("bidirectional models are extracted with right padding; left padding would shift "
                         "their positions (pass padding_side='right' or None)")
    return side


def extract_batch(
    catalog: Any,
    model: Any,
    texts: Sequence[str] | None = None,
    *,
    tokenizer: Any = None,
    input_ids: Sequence[Any] | None = None,
    runs: Sequence[str] | None = None,
    batch_size: int = 8,
    dtype: str = "float16",
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    device: Any = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    padding_side: str | None = None,
    overwrite: bool = False,
    max_block_bytes: int | None = None,
    chunk: int = 512,
    shard: bool | None = None,
    pyramid: bool | None = None,
    keepbits: int | None = None,
    sort_by_length: bool = True,
    writer_threads: int = 1,
) -> list[str]:
    """Extract exact attention for many sequences, batched, one run per sequence.

    Parameters
    ----------
    catalog
        The store (a :class:`~sharingan_store.store.catalog.Catalog` / ``Store``).
    model
        A ``transformers`` model whose attention routes through ``AttentionInterface``.
    texts, tokenizer
        The sequences as text with their tokenizer; or
    input_ids
        the sequences as token ids (a list of ``(N_i,)`` sequences; a tokenizer, if given,
        names the tokens).
    runs
        Run ids, one per sequence; ``None`` makes ``<model>-<time>-<hash>-<index>`` ids.
    batch_size
        Sequences per forward pass.
    dtype, layers, heads, device, max_block_bytes, chunk, shard, pyramid, keepbits
        As for :meth:`Catalog.extract` (``pyramid=None``: per run, only when it is long enough
        to need one); the block budget covers the whole batch.
    progress
        A tqdm bar over the sequences.
    metadata
        User metadata: one dict for every run, or a list of one dict per sequence.
    padding_side
        ``"left"`` or ``"right"``; ``None``: the tokenizer's side for causal models, right
        for bidirectional ones (left is refused for them).
    overwrite
        Replace existing runs of the same ids (otherwise :class:`RunExistsError` before
        anything is computed).
    sort_by_length
        Batch sequences of similar length together (less padding); results keep the input order.
    writer_threads
        Compression threads per run writer (a batch has ``batch_size`` writers).

    Returns
    -------
    list of str
        The run ids, in the order of the inputs. Runs of batches that completed stay
        ``complete`` if a later batch fails; the failing batch's runs are ``failed``.
    """
    validate_storage_dtype(dtype)
    if (texts is None) == (input_ids is None):
        raise ValueError("give exactly one of `texts` and `input_ids`")
    if isinstance(texts, str):
        raise TypeError("`texts` is a list of strings; for one text use Store.extract")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if chunk < 16:
        raise ValueError(f"chunk must be >= 16 tokens, got {chunk}")
    if catalog.mode == "r":
        catalog._require_writable("extract a batch")
    budget = DEFAULT_MAX_BLOCK_BYTES if max_block_bytes is None else int(max_block_bytes)
    info = model_info(model)
    causal = info.kind != "bidirectional"
    side = _padding_side(padding_side, tokenizer, causal)
    inputs: list[TokenizedInput]
    if texts is not None:
        inputs = [prepare_input(t, tokenizer=tokenizer) for t in texts]
    else:
        inputs = [prepare_input(input_ids=ids, tokenizer=tokenizer) for ids in input_ids]  # type: ignore[union-attr]
    count = len(inputs)
    if count == 0:
        return []
    for tok in inputs:
        check_input_ids(model, tok.input_ids, info)
    layer_sel = resolve_indices(layers, info.num_layers, "layer")
    head_sel = resolve_indices(heads, info.num_heads, "head")
    resolve_device(device, model)  # fail fast, before anything is written
    metas = _as_metadata_list(metadata, count)
    if runs is None:
        run_ids = [f"{new_run_id(info.name, tok.text_sha256)}-{i:05d}" for i, tok in enumerate(inputs)]
    else:
        run_ids = [check_run_id(r) for r in runs]
        if len(run_ids) != count:
            raise ValueError(f"{len(run_ids)} run ids for {count} inputs")
    dupes = sorted({r for r in run_ids if run_ids.count(r) > 1})
    if dupes:
        raise ValueError(f"run ids must be unique; repeated: {dupes}")
    existing = set(catalog.run_ids())
    clash = [r for r in run_ids if r in existing]
    if clash and not overwrite:
        raise RunExistsError(f"run(s) {clash[:10]} already exist in {catalog.url}; pass overwrite=True to replace them")

    fingerprint = weights_fingerprint(model)
    tokenizer_name = _tokenizer_name(tokenizer)
    codec = CodecSpec(keepbits=keepbits)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        pad_id = 0
    order = sorted(range(count), key=lambda i: inputs[i].seq_len) if sort_by_length else list(range(count))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=count, unit="run", desc="extracting batches", leave=False)
    try:
        for start in range(0, count, batch_size):
            members = order[start:start + batch_size]
            _extract_one_batch(
                catalog, model, [inputs[i] for i in members], [run_ids[i] for i in members],
                [metas[i] for i in members], info=info, causal=causal, side=side, pad_id=int(pad_id),
                layer_sel=layer_sel, head_sel=head_sel, dtype=dtype, device=device, budget=budget, chunk=chunk,
                shard=shard, pyramid=pyramid, codec=codec, fingerprint=fingerprint, tokenizer_name=tokenizer_name,
                overwrite=overwrite, batch_size=len(members), writer_threads=writer_threads,
            )
            if bar is not None:
                bar.update(len(members))
    finally:
        if bar is not None:
            bar.close()
    return run_ids


def _extract_one_batch(catalog: Any, model: Any, inputs: list[TokenizedInput], run_ids: list[str],
                       metas: list[dict[str, Any]], *, info: Any, causal: bool, side: str, pad_id: int,
                       layer_sel: list[int], head_sel: list[int], dtype: str, device: Any, budget: int, chunk: int,
                       shard: bool | None, pyramid: bool | None, codec: CodecSpec, fingerprint: str,
                       tokenizer_name: str | None, overwrite: bool, batch_size: int, writer_threads: int) -> None:
    lengths = [tok.seq_len for tok in inputs]
    width = max(lengths)
    bsz = len(inputs)
    ids = torch.full((bsz, width), pad_id, dtype=torch.long)
    mask = torch.zeros((bsz, width), dtype=torch.long)
    offsets = []
    for row, tok in enumerate(inputs):
        off = width - tok.seq_len if side == "left" else 0
        ids[row, off:off + tok.seq_len] = tok.input_ids
        mask[row, off:off + tok.seq_len] = 1
        offsets.append(off)
    padded = any(n != width for n in lengths)
    position_ids = None
    if side == "left" and padded:
        position_ids = (mask.cumsum(-1) - 1).clamp_(min=0)

    writers: list[RunWriter] = []
    closed = 0
    try:
        for tok, run_id, meta in zip(inputs, run_ids, metas):
            n = tok.seq_len
            edge = min(chunk, n)
            plan = plan_blocks(info.num_heads, n, chunk=edge, max_block_bytes=budget)
            writers.append(create_run_writer(
                catalog, run_id, tok, info=info, weights_fingerprint=fingerprint, tokenizer_name=tokenizer_name,
                layers=layer_sel, heads=head_sel, dtype=dtype, codec=codec, q_block=plan.q_block, chunk=edge,
                shard=shard, pyramid=pyramid, causal=causal,
                metadata={**meta, "batch": {"size": batch_size, "padding_side": side}},
                overwrite=overwrite, num_threads=writer_threads,
            ))
        router = BatchRouter(writers, offsets, lengths)
        run_extraction(
            model, ids, router, layers=layer_sel, heads=head_sel, attention_mask=mask if padded else None,
            position_ids=position_ids, chunk=min(chunk, width), max_block_bytes=budget, device=device,
            progress=False, info=info,
        )
        router.check_done()
        for w in writers:
            w.close()
            closed += 1
    except BaseException as exc:
        for w in writers[closed:]:
            try:
                w.fail(exc)
            except Exception:  # noqa: BLE001 - keep failing the others
                pass
        raise
