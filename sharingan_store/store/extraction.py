"""Extraction into a store: tokenise, plan, stream blocks into a :class:`RunWriter`, finish or fail.

Used by :meth:`sharingan_store.store.catalog.Catalog.extract`; see its docstring.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator, Sequence


from sharingan_store import schema
from sharingan_store.errors import FormatError, RunExistsError
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
from sharingan_store.store.provenance import check_run_id, new_run_id, run_attrs
from sharingan_store.store.transfer import remove_partial_writes
from sharingan_store.write import CodecSpec, RunWriter, choose_layout
from sharingan_store.write.codecs import validate_storage_dtype
from sharingan_store.write.pyramid import AUTO_PYRAMID_MIN_LEN

__all__ = ["create_run_writer", "extract_run"]


def _tokenizer_name(tokenizer: Any) -> str | None:
    if tokenizer is None:
        return None
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def extract_run(
    catalog: Any,
    model: Any,
    text: str | None,
    *,
    tokenizer: Any,
    input_ids: Any,
    run: str | None,
    layers: Sequence[int] | None,
    heads: Sequence[int] | None,
    dtype: str,
    device: Any,
    progress: bool,
    metadata: dict[str, Any] | None,
    overwrite: bool,
    resume: bool,
    max_block_bytes: int | None,
    chunk: int,
    shard: bool | None,
    pyramid: bool | None,
    keepbits: int | None,
) -> str:
    """Extract one run into ``catalog`` and return its id (status ``complete``)."""
    validate_storage_dtype(dtype)
    if overwrite and resume:
        raise ValueError("overwrite=True and resume=True contradict each other: choose one")
    if chunk < 16:
        raise ValueError(f"chunk must be >= 16 tokens, got {chunk}")
    budget = DEFAULT_MAX_BLOCK_BYTES if max_block_bytes is None else int(max_block_bytes)
    info = model_info(model)
    tok = prepare_input(text, tokenizer=tokenizer, input_ids=input_ids)
    n = tok.seq_len
    check_input_ids(model, tok.input_ids, info)
    layer_sel = resolve_indices(layers, info.num_layers, "layer")
    head_sel = resolve_indices(heads, info.num_heads, "head")
    resolve_device(device, model)  # fail fast, before anything is written
    run_id = check_run_id(run) if run is not None else new_run_id(info.name, tok.text_sha256)
    metadata = dict(metadata or {})
    fingerprint = weights_fingerprint(model)

    edge = min(chunk, n)
    plan = plan_blocks(info.num_heads, n, chunk=edge, max_block_bytes=budget)
    codec = CodecSpec(keepbits=keepbits)
    causal = info.kind != "bidirectional"
    exists = run_id in catalog.run_ids()

    if resume:
        if not exists:
            raise ValueError(f"cannot resume run {run_id!r}: it does not exist (omit resume=True to start it)")
        group = catalog.run_group(run_id)
        attrs = dict(group.attrs)
        if attrs.get(schema.STATUS) == schema.STATUS_COMPLETE:
            return run_id
        mismatches = [
            name for name, want in (
                ("weights_fingerprint", fingerprint), ("config_hash", info.config_hash),
                ("text_sha256", tok.text_sha256), ("seq_len", n), ("layers", layer_sel), ("heads", head_sel),
                ("dtype", dtype),
            ) if attrs.get(name) != want
        ]
        if mismatches:
            raise ValueError(
                f"cannot resume run {run_id!r}: {', '.join(mismatches)} differ from the interrupted extraction "
                "(same model, input, layers, heads and dtype are required)"
            )
        remove_partial_writes(catalog.root.store, schema.run_path(run_id) + "/")
        writer = RunWriter.resume(catalog.root, run_id)
        if max_block_bytes is None:  # reuse the interrupted run's query blocks, whatever today's default is
            budget = writer.layout.block_rows * n * 4
            plan = plan_blocks(info.num_heads, n, chunk=edge, max_block_bytes=budget)
        if writer.layout.block_rows != plan.q_block:
            writer.fail(None)
            raise FormatError(
                f"run {run_id!r} was written with query blocks of {writer.layout.block_rows} rows; omit "
                "max_block_bytes (or pass the interrupted extraction's) and use the same chunk to resume it"
            )
        skip = lambda lpos, q0: writer.is_written(lpos, slice(None), q0)  # noqa: E731
    else:
        if exists and not overwrite:
            raise RunExistsError(
                f"run {run_id!r} already exists in {catalog.url}; pass overwrite=True to replace it, "
                "resume=True to finish an interrupted one, or choose another run id"
            )
        writer = create_run_writer(
            catalog, run_id, tok, info=info, weights_fingerprint=fingerprint,
            tokenizer_name=_tokenizer_name(tokenizer), layers=layer_sel, heads=head_sel, dtype=dtype, codec=codec,
            q_block=plan.q_block, chunk=edge, shard=shard, pyramid=pyramid, causal=causal, metadata=metadata,
            overwrite=overwrite,
        )
        skip = None

    try:
        with _sigterm_as_keyboard_interrupt():
            run_extraction(
                model, tok.input_ids, writer.submit, layers=layer_sel, heads=head_sel, chunk=edge,
                max_block_bytes=budget, device=device, progress=progress, skip=skip, info=info,
            )
            writer.close()
    except BaseException as exc:  # KeyboardInterrupt too: the run is marked failed, never left half-good
        writer.fail(exc)
        raise
    return run_id


def create_run_writer(
    catalog: Any,
    run_id: str,
    tok: TokenizedInput,
    *,
    info: Any,
    weights_fingerprint: str,
    tokenizer_name: str | None,
    layers: list[int],
    heads: list[int],
    dtype: str,
    codec: CodecSpec,
    q_block: int,
    chunk: int,
    shard: bool | None,
    pyramid: bool | None,
    causal: bool,
    metadata: dict[str, Any] | None,
    overwrite: bool,
    num_threads: int = 2,
) -> RunWriter:
    """Lay out a new run for ``tok`` (chunks aligned with ``q_block``), record its provenance, start its writer.

    ``pyramid=None`` writes the pyramid for runs of at least ``AUTO_PYRAMID_MIN_LEN`` tokens.
    """
    n = tok.seq_len
    layout = choose_layout(n, q_block, chunk=chunk, shard=shard)
    attrs = run_attrs(
        info=info, weights_fingerprint=weights_fingerprint, tokenizer_name=tokenizer_name,
        text_sha256=tok.text_sha256, seq_len=n, layers=layers, heads=heads, storage_dtype=dtype,
        codec=codec.to_dict(), layout=layout.to_dict(), metadata=metadata,
    )
    return RunWriter.create(
        catalog.root, run_id, layers=layers, heads=heads, token_ids=tok.input_ids.numpy(),
        query_tokens=tok.tokens, char_start=tok.char_start, char_end=tok.char_end,
        sentence_id=tok.sentence_id, paragraph_id=tok.paragraph_id, layout=layout, causal=causal,
        attrs=attrs, storage_dtype=dtype, codec=codec, overwrite=overwrite, num_threads=num_threads,
        pyramid=n >= AUTO_PYRAMID_MIN_LEN if pyramid is None else pyramid,
    )


@contextlib.contextmanager
def _sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt during extraction (main thread only), so the run is marked failed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


