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
import warnings
from typing import Any, Sequence

import pandas as pd
import xarray as xr
import zarr

from sharingan_store import schema
from sharingan_store.errors import (
    FormatError,
    ReadOnlyError,
    RunIncompleteError,
    RunNotFoundError,
)
from sharingan_store.store.backend import make_zarr_store, normalize_url, read_mode
from sharingan_store.store.integrity import VerifyReport

__all__ = ["RUN_COLUMNS", "Catalog"]

#: Columns of :meth:`Store.runs`, in order.
RUN_COLUMNS = (
    "run", "status", "model", "num_layers", "num_heads", "seq_len", "dtype", "created",
    "layers", "heads", "attention_kind", "text_sha256", "tokenizer", "config_hash", "metadata",
    "size", "model_revision", "weights_fingerprint", "num_kv_heads", "sliding_window", "codec",
    "library_versions",
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
            root = zarr.open_group(self._zstore, mode="w", zarr_format=3,
                                   attributes={schema.ROOT_ATTR: {"format_version": schema.FORMAT_VERSION}})
            root.require_group(schema.RUNS_GROUP)
            return root
        if not self.url.endswith(".zip") and "://" not in self.url and os.path.isfile(self.url):
            raise FormatError(f"{self.url} is a file, not a sharingan store (a store is a directory, a URL or a .zip)")
        try:
            # probe without writing; writable stores (zip) cannot be reopened read-only by zarr
            probe_mode = "r" if self._zstore.read_only else "r+"
            root = zarr.open_group(self._zstore, mode=probe_mode, zarr_format=3)
        except (FileNotFoundError, zarr.errors.NodeNotFoundError):
            root = None
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"{self.url} is not a sharingan store (not a zarr v3 group: {exc})") from exc
        if root is None:
            if self.mode in ("r", "r+"):
                raise FileNotFoundError(f"no sharingan store at {self.url} (mode={self.mode!r} does not create one)")
            if self._has_foreign_content():
                raise FormatError(f"{self.url} exists and is not a sharingan store (no zarr.json at its root)")
            root = zarr.open_group(self._zstore, mode="a", zarr_format=3,
                                   attributes={schema.ROOT_ATTR: {"format_version": schema.FORMAT_VERSION}})
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
        # always read fresh from the store (never the root's consolidated index, which can be stale
        # while another process writes): statuses must be current for readers to trust them
        try:
            group = zarr.open_group(self._zstore, path=schema.RUNS_GROUP, mode=read_mode(self._zstore),
                                    use_consolidated=False, zarr_format=3)
        except (FileNotFoundError, KeyError, ValueError):  # zarr's not-found errors are ValueErrors
            return None
        return group

    def run_ids(self) -> list[str]:
        """Sorted ids of the runs in the store (a run whose deletion began is not listed)."""
        group = self._runs_group()
        if group is None:
            return []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Object at .* is not recognized")  # half-deleted leftovers
            return sorted(group.group_keys())

    def run_group(self, run: str) -> zarr.Group:
        """The zarr group of ``run`` (read fresh from the store); :class:`RunNotFoundError` if absent.

        The error message names the available runs.
        """
        if not isinstance(run, str):
            raise TypeError(f"run ids are strings, got {type(run).__name__}")
        node = None
        if run and "/" not in run and run not in (".", ".."):
            try:
                node = zarr.open_group(self._zstore, path=schema.run_path(run), mode=read_mode(self._zstore),
                                       use_consolidated=False, zarr_format=3)
            except (FileNotFoundError, KeyError, ValueError, TypeError):
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

    def run_size(self, run: str) -> int:
        """Bytes the run occupies in the store (compressed, as stored; 0 when unknown)."""
        from sharingan_store.store.transfer import stored_bytes

        self.run_group(run)
        return stored_bytes(self._zstore, schema.run_path(run) + "/")

    def runs(self, *, size: bool = True, **filters: Any) -> pd.DataFrame:
        """One row per run with its provenance, status and size on disk.

        Parameters
        ----------
        size
            Fill the ``size`` column (bytes stored; lists the run's files, so ``False`` is faster
            on remote stores).
        **filters
            Keep the rows whose column equals the value, e.g. ``store.runs(status="complete",
            model="gpt2")``; a list/tuple/set value keeps rows equal to any of its items.

        Examples
        --------
        >>> Catalog(__import__("tempfile").mkdtemp() + "/s").runs(status="complete").empty
        True
        """
        for column in filters:
            if column not in RUN_COLUMNS:
                raise ValueError(f"cannot filter on {column!r}; columns are {list(RUN_COLUMNS)}")
        rows = []
        for run_id in self.run_ids():
            try:
                attrs = dict(self.run_group(run_id).attrs)
            except RunNotFoundError:  # deleted meanwhile
                continue
            row = {col: attrs.get(col) for col in RUN_COLUMNS}
            row["run"] = run_id
            row["size"] = self.run_size(run_id) if size else None
            rows.append(row)
        frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
        for column, value in filters.items():
            if isinstance(value, (list, tuple, set, frozenset)) and column not in ("layers", "heads"):
                mask = frame[column].isin(list(value))
            else:
                mask = frame[column].map(lambda v, want=value: _equal(v, want)).astype(bool)
            frame = frame[mask]
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

        group = self.check_complete(run, allow_incomplete)
        token = f"{group.attrs.get('created')}-{group.attrs.get(schema.STATUS)}-{group.attrs.get('weights_fingerprint')}"
        complete = group.attrs.get(schema.STATUS) == schema.STATUS_COMPLETE
        ds = open_run_dataset(self._zstore, schema.run_path(run), chunks=chunks, name=run, token=token,
                              consolidated=None if complete else False)
        ds.attrs.update(dict(group.attrs))  # fresh from the run's own zarr.json (the root index may lag)
        return ds

    def delete(self, run: str) -> None:
        """Remove a run and all its data, atomically from the catalog's point of view.

        The run's group marker (``runs/<id>/zarr.json``) is removed first, in one store
        operation, so from that moment the run is no longer listed or openable; then the root
        index is refreshed and its chunks are removed. An interruption leaves only unlisted
        leftovers (reclaimed when a run of the same id is written again), never a run that
        looks ``complete`` with data missing.
        """
        from sharingan_store.store.transfer import delete_prefix, refresh_index

        self._require_writable(f"delete run {run!r}")
        self.run_group(run)
        if not getattr(self._zstore, "supports_deletes", True):
            raise ReadOnlyError(f"cannot delete run {run!r}: {self.url} is a zip archive (append-only); "
                                "copy the runs to keep into a new archive instead")
        path = schema.run_path(run)
        _sync(self._zstore.delete(f"{path}/zarr.json"))
        refresh_index(self._zstore)
        delete_prefix(self._zstore, path + "/")

    # ---------------------------------------------------------------- integrity, copy
    def build_pyramid(self, run: str, **kwargs: Any) -> list[int]:
        """Build (or rebuild) the multiscale pyramid of a stored run, chunk by chunk; returns its factors.

        For runs extracted with ``pyramid=False`` (or by an older version). Keyword arguments
        go to :func:`sharingan_store.write.pyramid.build_pyramid` (``max_level_size``,
        ``min_level_size``, ``factors``, ``device``).
        """
        from sharingan_store.write.pyramid import build_pyramid

        self._require_writable(f"build the pyramid of run {run!r}")
        self.check_complete(run)
        return build_pyramid(self.run_group(run), **kwargs)

    def verify(self, run: str | Sequence[str] | None = None, *, scheduler: Any = "threads",
               allow_incomplete: bool = False) -> VerifyReport:
        """Read every chunk of every array of ``run`` (``None``: every run) and check it.

        Checks each chunk's crc32c (zarr raises on a mismatch) and decoded shape, that the
        attention holds no NaN/inf, and that a complete run has every chunk its layout
        promises. Runs chunk-parallel: one dask task per stored chunk (per shard when
        sharded), on ``scheduler`` (``"threads"`` by default; a ``distributed.Client`` works).
        Incomplete runs are checked only when named explicitly or with ``allow_incomplete``
        (their missing chunks are not reported).

        Returns
        -------
        VerifyReport
            ``.ok``, ``.bad_chunks`` (``(run, array, chunk key, reason)``), ``.checked`` counts.

        Examples
        --------
        >>> Catalog(__import__("tempfile").mkdtemp() + "/s").verify().ok
        True
        """
        from sharingan_store.store.integrity import merge_reports, verify_arrays

        if run is None:
            names = [r for r in self.run_ids()
                     if allow_incomplete or self.run_group(r).attrs.get(schema.STATUS) == schema.STATUS_COMPLETE]
        else:
            names = [run] if isinstance(run, str) else list(run)
        reports = []
        for name in names:
            status = self.run_group(name).attrs.get(schema.STATUS)
            reports.append(verify_arrays(self._zstore, schema.run_path(name), name, scheduler=scheduler,
                                         check_missing=status == schema.STATUS_COMPLETE))
        return merge_reports(reports)

    def copy(self, run: str, dest: str | os.PathLike[str] | Catalog, *, dest_run: str | None = None,
             overwrite: bool = False, storage_options: dict[str, Any] | None = None) -> str:
        """Copy a complete run to another store; returns the destination URL of the store.

        Parameters
        ----------
        run
            The run to copy (must be ``complete``).
        dest
            A store path, an fsspec URL, a path ending in ``.zip`` (a zarr zip archive, created
            or appended to), or an open :class:`Catalog`. The destination store is created
            (with the format attrs) when missing.
        dest_run
            Id in the destination (default: the same id).
        overwrite
            Replace a run of that id in the destination (not possible in a zip archive).
        storage_options
            fsspec options for a remote ``dest``.

        The stored objects are copied key by key, unchanged (same codecs, checksums and chunk
        files), so memory stays bounded by one stored chunk/shard. The destination run's
        group marker is written last: an interrupted copy never shows up as a run.

        Examples
        --------
        >>> import tempfile, torch
        >>> from sharingan_store.testing import tiny_model
        >>> d = tempfile.mkdtemp()
        >>> src = Catalog(d + "/s")
        >>> _ = src.extract(tiny_model("llama"), input_ids=torch.arange(16), run="r", progress=False)
        >>> _ = src.copy("r", d + "/archive.zip")
        >>> with Catalog(d + "/archive.zip", mode="r") as arc:
        ...     arc.run_ids()
        ['r']
        """
        from sharingan_store.store.provenance import check_run_id
        from sharingan_store.store.transfer import copy_run

        self.check_complete(run)
        target = check_run_id(dest_run if dest_run is not None else run)
        return copy_run(self, run, dest, target, overwrite=overwrite, storage_options=storage_options)

    # ---------------------------------------------------------------- extraction
    def extract_batch(self, model: Any, texts: Sequence[str] | None = None, **kwargs: Any) -> list[str]:
        """Extract many short inputs in padded batches, one run per input; returns the run ids.

        See :func:`sharingan_store.store.batch.extract_batch` for the parameters
        (``tokenizer``, ``input_ids``, ``runs``, ``batch_size``, ``dtype``, ``layers``, ``heads``…).
        """
        from sharingan_store.store.batch import extract_batch

        self._require_writable("extract a batch")
        return extract_batch(self, model, texts, **kwargs)

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
        pyramid: bool | None = None,
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
            Budget of one float32 score block (default 32 MiB); peak extra memory is a few blocks.
        chunk
            Chunk edge along query and key (default 512, or N when shorter).
        shard
            Use zarr sharding (one shard = one query block × all keys); ``None``: when N ≥ 8192.
        pyramid
            Also write the multiscale pyramid used by ``global_view``; ``None`` (default):
            for runs of at least 2048 tokens.
        keepbits
            Lossy BitRound mantissa bits (``None``: lossless).
        """
        from sharingan_store.store.extraction import extract_run

        self._require_writable("extract")
        if not getattr(self._zstore, "supports_deletes", True):
            raise ReadOnlyError(f"cannot extract into {self.url}: zip archives are written once; extract into a "
                                "directory store and `copy` the run into the archive")
        return extract_run(
            self, model, text, tokenizer=tokenizer, input_ids=input_ids, run=run, layers=layers, heads=heads,
            dtype=dtype, device=device, progress=progress, metadata=metadata, overwrite=overwrite, resume=resume,
            max_block_bytes=max_block_bytes, chunk=chunk, shard=shard, pyramid=pyramid, keepbits=keepbits,
        )


def _equal(value: Any, want: Any) -> bool:
    try:
        return bool(value == want)
    except (TypeError, ValueError):
        return False


def _sync(coro: Any) -> Any:
    from zarr.core.sync import sync

    return sync(coro)
