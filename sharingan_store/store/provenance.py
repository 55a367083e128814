"""Run provenance: the attributes recorded with every run (DESIGN.md §3).

Examples
--------
>>> new_run_id("org/My Model v2", "ab" * 32)[:12]
'my-model-v2-'
>>> check_run_id("llama-32k")
'llama-32k'
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import re
from typing import Any, Mapping

from sharingan_store import schema

__all__ = ["check_run_id", "library_versions", "new_run_id", "run_attrs", "utc_now"]

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LIBS = ("sharingan-store", "torch", "transformers", "zarr", "numcodecs", "xarray", "dask", "numpy")


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_run_id(run_id: str) -> str:
    """Validate a run id: 1–128 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: use 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return run_id


def new_run_id(model_name: str, text_sha256: str) -> str:
    """An automatic run id: ``<model-slug>-<UTC yyyymmddThhmmss>-<text hash prefix>``."""
    base = model_name.rstrip("/").rsplit("/", 1)[-1] or model_name
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:48] or "run"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")[:-3]
    return f"{slug}-{stamp}-{text_sha256[:8]}"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape what is stored."""
    out = {}
    for name in _LIBS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            out[name] = "unknown"
    return out


def run_attrs(
    *,
    info: Any,
    weights_fingerprint: str,
    tokenizer_name: str | None,
    text_sha256: str,
    seq_len: int,
    layers: list[int],
    heads: list[int],
    storage_dtype: str,
    codec: Mapping[str, Any],
    layout: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The attribute dict of a new run (status is set by the writer)."""
    return {
        "format_version": schema.FORMAT_VERSION,
        "model": info.name,
        "model_class": info.model_class,
        "model_revision": info.revision,
        "config_hash": info.config_hash,
        "weights_fingerprint": weights_fingerprint,
        "num_layers": info.num_layers,
        "num_heads": info.num_heads,
        "num_kv_heads": info.num_kv_heads,
        "layers": list(layers),
        "heads": list(heads),
        "attention_kind": info.kind,
        "sliding_window": info.sliding_window,
        "tokenizer": tokenizer_name,
        "text_sha256": text_sha256,
        "seq_len": seq_len,
        "dtype": storage_dtype,
        "codec": dict(codec),
        "layout": dict(layout),
        "created": utc_now(),
        "library_versions": library_versions(),
        "metadata": dict(metadata or {}),
    }
