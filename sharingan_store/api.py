"""The public entry points: :func:`open_store`, :class:`Store`, :func:`open_run`.

:class:`Store` is the storage :class:`~sharingan_store.store.catalog.Catalog` plus the
methods that hand out query handles (:meth:`Store.open` → :class:`AttentionRun`) and
compare runs, so the storage layer never imports the query or metrics layers.

Examples
--------
>>> import tempfile, torch
>>> import sharingan_store as ss
>>> from sharingan_store.testing import tiny_model
>>> store = ss.open_store(tempfile.mkdtemp() + "/attn-store")
>>> run = store.extract(tiny_model("llama"), input_ids=torch.arange(20), run="demo", progress=False)
>>> run.attention.dims
('layer', 'head', 'query', 'key')
>>> list(store.runs()["run"])
['demo']
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from sharingan_store import schema
from sharingan_store.metrics.compare import compare as compare_attention
from sharingan_store.query.pyramid import open_pyramid
from sharingan_store.run import AttentionRun
from sharingan_store.store.catalog import Catalog
from sharingan_store.store.reading import checked_dataset

__all__ = ["Store", "open_run", "open_store"]


class Store(Catalog):
    """A store of attention runs. Open one with :func:`open_store`.

    Beyond the catalog (``runs``, ``run_ids``, ``extract``, ``delete``…), it opens runs as
    :class:`~sharingan_store.run.AttentionRun` handles.
    """

    def open(self, run: str, *, allow_incomplete: bool = False, chunks: Any = "auto") -> AttentionRun:
        """Open ``run`` lazily as an :class:`AttentionRun` (only metadata is read).

        Raises
        ------
        RunNotFoundError
            No such run; the message lists the available ones.
        RunIncompleteError
            The run's status is not ``complete`` and ``allow_incomplete`` is False.
        """
        ds = self.open_dataset(run, allow_incomplete=allow_incomplete, chunks=chunks)
        token = f"{ds.attrs.get('created')}-{ds.attrs.get(schema.STATUS)}"

        def pyramid() -> dict[int, xr.Dataset]:
            if ds.attrs.get(schema.STATUS) != schema.STATUS_COMPLETE:
                return {}
            return {
                factor: checked_dataset(level, self._zstore,
                                        f"{schema.run_path(run)}/{schema.PYRAMID_GROUP}/f{factor}", run=run, token=token)
                for factor, level in _pyramid_levels(self._zstore, run).items()
            }

        return AttentionRun(ds, run_id=run, pyramid=pyramid, url=self.url)

    def compare(self, a: str | AttentionRun, b: str | AttentionRun, metric: str = "js",
                align: str = "exact") -> xr.DataArray:
        """Per ``(layer, head)`` comparison of two runs, lazy (``.compute()`` reads chunk by chunk).

        Parameters
        ----------
        a, b
            Run ids of this store, or opened :class:`AttentionRun` (selections too, e.g. of
            another store).
        metric
            ``"js"``: mean Jensen–Shannon divergence of matching rows (nats, 0 for identical
            runs, at most ln 2); ``"cosine"``: mean cosine similarity (1 for identical runs).
        align
            ``"exact"``: the runs must hold the same token ids; ``"truncate"``: compare the first
            ``min(N_a, N_b)`` tokens, each row renormalised over the kept keys.

        Layers and heads are matched by model index (their intersection; ``ValueError`` if
        none). See :mod:`sharingan_store.metrics.compare`.

        Examples
        --------
        >>> store.compare("llama-a", "llama-b").sel(layer=0).values  # doctest: +SKIP
        """
        ra = a if isinstance(a, AttentionRun) else self.open(a)
        rb = b if isinstance(b, AttentionRun) else self.open(b)
        return compare_attention(ra.attention, rb.attention, metric=metric, align=align)

    def extract(self, model: Any, text: str | None = None, **kwargs: Any) -> AttentionRun:  # type: ignore[override]
        """Extract ``model``'s exact attention on ``text`` into a new run and open it.

        Same parameters as :meth:`sharingan_store.store.catalog.Catalog.extract`
        (``tokenizer``, ``input_ids``, ``run``, ``layers``, ``heads``, ``dtype``, ``device``,
        ``progress``, ``metadata``, ``overwrite``, ``resume``, ``max_block_bytes``…).
        """
        return self.open(super().extract(model, text, **kwargs))


def _pyramid_levels(zstore: Any, run: str) -> dict[int, xr.Dataset]:
    try:
        return open_pyramid(zstore, run)
    except ValueError:  # a writable zip archive cannot be reopened read-only: use the full-scan views
        return {}


def open_store(url: str | os.PathLike[str], mode: str = "a", *,
               storage_options: dict[str, Any] | None = None) -> Store:
    """Open (or create) a store at a local path, an fsspec URL (``s3://…``) or a ``.zip`` archive.

    Parameters
    ----------
    url
        Where the store lives.
    mode
        ``"a"`` (default) read/write, created when missing; ``"r"`` read only (never
        writes); ``"r+"`` read/write, must exist; ``"w"`` create, erasing what is there.
    storage_options
        fsspec options for remote URLs (``{"endpoint_url": ..., "key": ...}``).

    Raises
    ------
    FormatError
        The location holds something that is not a sharingan store, or a newer format.
    FileNotFoundError
        ``mode="r"``/``"r+"`` and there is no store.
    """
    return Store(url, mode=mode, storage_options=storage_options)


def open_run(url: str | os.PathLike[str], *, allow_incomplete: bool = False,
             storage_options: dict[str, Any] | None = None) -> AttentionRun:
    """Open one run from its URL, ``<store>/runs/<run_id>``, read only.

    >>> open_run("attn-store/runs/demo")  # doctest: +SKIP
    """
    text = os.fspath(url).rstrip("/")
    marker = f"/{schema.RUNS_GROUP}/"
    if marker not in text:
        raise ValueError(f"a run URL looks like '<store>/{schema.RUNS_GROUP}/<run_id>', got {text!r}")
    store_url, run_id = text.rsplit(marker, 1)
    return open_store(store_url, mode="r", storage_options=storage_options).open(run_id,
                                                                                 allow_incomplete=allow_incomplete)
