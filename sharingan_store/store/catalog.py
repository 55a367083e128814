"""The :class:`Catalog`: runs in one zarr v3 group, their provenance, status and data sets.

This is the storage layer below the query layer: it opens runs as plain ``xr.Dataset``s.
The public :class:`sharingan_store.Store` (in ``sharingan_store.api``) subclasses it and
wraps data sets in :class:`~sharingan_store.query.run.AttentionRun` handles.

Examples
--------
>>> import tempfile, torch
>>> from sharingan_store.testing import tiny_model
>>> catalog = Catalog(tempfile.mkdtemp() + "/attn-store")
>>> run_id = catalog.extract(tiny_model("llama"), input_ids=torch.arange(20), run="demo", progress=False)
>>> catalog.open_dataset("demo").sizes["query"], list(catalog.runs()["run"])
(20, ['demo'])
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import pandas as pd
import xarray as xr
import zarr

from sharingan_store import schema
from sharingan_store.errors import (
    FormatError,
    ReadOnlyError,
    RunExistsError,
    RunIncompleteError,
    RunNotFoundError,
)
from sharingan_store.store.backend import make_zarr_store, normalize_url

__all__ = ["RUN_COLUMNS", "Catalog"]

#: Columns of :meth:`Store.runs`, in order.
RUN_COLUMNS = (
    "run", "status", "model", "num_layers", "num_heads", "seq_len", "dtype", "created",
    "layers", "heads", "attention_kind", "text_sha256", "tokenizer", "config_hash", "metadata",
)


class Catalog:
    """Runs as ``runs/<run_id>`` groups under one zarr v3 root. See :func:`sharingan_store.open_store`."""

    def __init__(self, url: str | os.PathLike[str], mode: str = "a", *, storage_options: dict[str, Any] | None = None):
        self.url = normalize_url(url)
        self.mode = mode
        self.storage_options = dict(storage_options or {})
        self._zstore = make_zarr_store(self.url, mode, self.storage_options)
        self.root = self._open_root()

    # ---------------------------------------------------------------- opening
    def _open_root(self) -> zarr.Group:
        if self.mode == "w":
            root = zarr.open_group(self._zstore, mode="w", zarr_format=3)
            root.attrs[schema.ROOT_ATTR] = {"format_version": schema.FORMAT_VERSION}
            root.require_group(schema.RUNS_GROUP)
            return root
        try:
            root = zarr.open_group(self._zstore, mode="r", zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError if hasattr(zarr.errors, "GroupNotFoundError")
                else FileNotFoundError):
            root = None
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"{self.url} is not a sharingan store (not a zarr v3 group: {exc})") from exc
        if root is None:
            if self.mode in ("r", "r+"):
                raise FileNotFoundError(f"no sharingan store at {self.url} (mode={self.mode!r} does not create one)")
            if self._has_foreign_content():
                raise FormatError(f"{self.url} exists and is not a sharingan store (no zarr.json at its root)")
            root = zarr.open_group(self._zstore, mode="a", zarr_format=3)
            root.attrs[schema.ROOT_ATTR] = {"format_version": schema.FORMAT_VERSION}
            root.require_group(schema.RUNS_GROUP)
            return root
        marker = root.attrs.get(schema.ROOT_ATTR)
        if not isinstance(marker, dict) or "format_version" not in marker:
            raise FormatError(f"{self.url} is a zarr group but not a sharingan store (no {schema.ROOT_ATTR!r} attribute)")
        version = marker["format_version"]
        if not isinstance(version, int) or version > schema.FORMAT_VERSION:
            raise FormatError(
                f"{self.url} has format version {version!r}; this sharingan_store reads versions "
                f"<= {schema.FORMAT_VERSION}: upgrade the library"
            )
        if self.mode == "r":
            return root
        return zarr.open_group(self._zstore, mode="r+", zarr_format=3)

    def _has_foreign_content(self) -> bool:
        if "://" in self.url or self.url.endswith(".zip"):
            return False
        return os.path.isdir(self.url) and any(os.scandir(self.url))

    def _require_writable(self, what: str) -> None:
        if self.mode == "r":
            raise ReadOnlyError(f"cannot {what}: the store {self.url} was opened with mode='r'")

    def __repr__(self) -> str:
        return f"<sharingan_store.{type(self).__name__} {self.url!r} mode={self.mode!r} runs={len(self.run_ids())}>"

    def close(self) -> None:
        """Release the underlying store (needed for zip archives)."""
        close = getattr(self._zstore, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- catalog
    def _runs_group(self) -> zarr.Group | None:
        try:
            group = self.root[schema.RUNS_GROUP]
        except KeyError:
            return None
        return group if isinstance(group, zarr.Group) else None

    def run_ids(self) -> list[str]:
        """Sorted ids of the runs in the store."""
        group = self._runs_group()
        if group is None:
            return []
        return sorted(name for name, _ in group.groups())

    def run_group(self, run: str) -> zarr.Group:
        """The zarr group of ``run``; :class:`RunNotFoundError` naming the available runs if absent."""
        if not isinstance(run, str):
            raise TypeError(f"run ids are strings, got {type(run).__name__}")
        group = self._runs_group()
        try:
            node = group[run] if group is not None else None
        except KeyError:
            node = None
        if not isinstance(node, zarr.Group):
            available = self.run_ids()
            shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
            raise RunNotFoundError(
                f"no run {run!r} in {self.url}; available runs: {shown or '(none)'}"
            )
        return node

    def __contains__(self, run: object) -> bool:
        return isinstance(run, str) and run in self.run_ids()

    def runs(self, **filters: Any) -> pd.DataFrame:
        """One row per run with its provenance and status.

        Keyword filters keep the rows whose column equals the value, e.g.
        ``store.runs(status="complete", model="gpt2")``.
        """
        rows = []
        for run_id in self.run_ids():
            attrs = dict(self.run_group(run_id).attrs)
            row = {col: attrs.get(col) for col in RUN_COLUMNS}
            row["run"] = run_id
            rows.append(row)
        frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
        for column, value in filters.items():
            if column not in frame.columns:
                raise ValueError(f"cannot filter on {column!r}; columns are {list(frame.columns)}")
            frame = frame[frame[column] == value]
        return frame.reset_index(drop=True)

    def check_complete(self, run: str, allow_incomplete: bool = False) -> zarr.Group:
        """The run's group, or :class:`RunIncompleteError` if its status is not ``complete``."""
        group = self.run_group(run)
        status = group.attrs.get(schema.STATUS)
        if status != schema.STATUS_COMPLETE and not allow_incomplete:
            raise RunIncompleteError(
                f"run {run!r} has status {status!r}, not {schema.STATUS_COMPLETE!r}: it was interrupted or is still "
                "being written. Pass allow_incomplete=True to read what is there, or extract it again with resume=True"
            )
        return group

    def open_dataset(self, run: str, *, allow_incomplete: bool = False, chunks: Any = "auto") -> xr.Dataset:
        """The run as a lazy ``xr.Dataset`` (bfloat16 decoded to float32, token coordinates attached).

        Raises
        ------
        RunNotFoundError
            No such run (the message lists the available ones).
        RunIncompleteError
            Its status is not ``complete`` and ``allow_incomplete`` is False.
        FormatError
            The run lacks arrays that format v1 requires.
        """
        from sharingan_store.store.reading import open_run_dataset

        self.check_complete(run, allow_incomplete)
        return open_run_dataset(self._zstore, schema.run_path(run), chunks=chunks, name=run)

    def delete(self, run: str) -> None:
        """Remove a run and all its data."""
        self._require_writable(f"delete run {run!r}")
        self.run_group(run)
        runs = self._runs_group()
        assert runs is not None
        del runs[run]

    # ---------------------------------------------------------------- extraction
    def extract(
        self,
        model: Any,
        text: str | None = None,
        *,
        tokenizer: Any = None,
        input_ids: Any = None,
        run: str | None = None,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        dtype: str = "float16",
        device: Any = None,
        progress: bool = True,
        metadata: dict[str, Any] | None = None,
        overwrite: bool = False,
        resume: bool = False,
        max_block_bytes: int | None = None,
        chunk: int = 512,
        shard: bool | None = None,
        pyramid: bool = True,
        keepbits: int | None = None,
    ) -> str:
        """Extract exact attention of ``model`` on one sequence into a new run; returns the run id.

        Parameters
        ----------
        model
            A ``transformers`` model whose attention routes through ``AttentionInterface``.
        text, tokenizer, input_ids
            Either ``text`` with its ``tokenizer`` (character offsets and token strings are
            stored), or ``input_ids`` (a tokenizer, if given, names the tokens).
        run
            Run id; ``None`` makes one from the model name, the time and the text hash.
        layers, heads
            Model indices to store (``None``: all); selections keep these indices.
        dtype
            Storage dtype: ``"float16"`` (default), ``"float32"`` or ``"bfloat16"``.
        device
            ``"cpu"``, ``"cuda"``…; ``None`` computes where the model is.
        progress
            tqdm progress bar.
        metadata
            JSON-serialisable user metadata stored with the run.
        overwrite
            Replace an existing run of the same id.
        resume
            Continue an interrupted extraction of ``run`` (same model and input).
        max_block_bytes
            Budget of one float32 score block (default 128 MiB); peak extra memory is a few blocks.
        chunk
            Chunk edge along query and key (default 512, or N when shorter).
        shard
            Use zarr sharding (one shard = one query block × all keys); ``None``: when N ≥ 8192.
        pyramid
            Also write the multiscale pyramid used by ``global_view``.
        keepbits
            Lossy BitRound mantissa bits (``None``: lossless).
        """
        from sharingan_store.store.extraction import extract_run

        self._require_writable("extract")
        return extract_run(
            self, model, text, tokenizer=tokenizer, input_ids=input_ids, run=run, layers=layers, heads=heads,
            dtype=dtype, device=device, progress=progress, metadata=metadata, overwrite=overwrite, resume=resume,
            max_block_bytes=max_block_bytes, chunk=chunk, shard=shard, pyramid=pyramid, keepbits=keepbits,
        )
