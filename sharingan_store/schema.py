"""Names of the on-disk format v1: the only place they are spelled.

Every module that reads or writes a store takes dimension, variable, attribute and
status names from here, so the format (DESIGN.md §3, normative) lives in one file.

Examples
--------
>>> from sharingan_store import schema
>>> schema.DIMS
('layer', 'head', 'query', 'key')
>>> schema.run_path("demo")
'runs/demo'
"""

from __future__ import annotations

from typing import Final

FORMAT_VERSION: Final = 1

#: Root group attribute holding ``{"format_version": 1}``.
ROOT_ATTR: Final = "sharingan_store"
#: Group under the root that holds one sub-group per run.
RUNS_GROUP: Final = "runs"

# Dimensions ----------------------------------------------------------------------
LAYER: Final = "layer"
HEAD: Final = "head"
QUERY: Final = "query"
KEY: Final = "key"
DIMS: Final = (LAYER, HEAD, QUERY, KEY)

# Variables -----------------------------------------------------------------------
ATTENTION: Final = "attention"
TOKEN_ID: Final = "token_id"
QUERY_TOKEN: Final = "query_token"
KEY_TOKEN: Final = "key_token"
CHAR_START: Final = "char_start"
CHAR_END: Final = "char_end"
PYRAMID_GROUP: Final = "pyramid"

# Run attributes ------------------------------------------------------------------
STATUS: Final = "status"
STATUS_WRITING: Final = "writing"
STATUS_COMPLETE: Final = "complete"
STATUS_FAILED: Final = "failed"
STATUSES: Final = (STATUS_WRITING, STATUS_COMPLETE, STATUS_FAILED)

#: Attribute on the ``attention`` array naming the logical storage dtype. bfloat16 has no
#: numpy/zarr dtype, so it is stored as its raw ``uint16`` bit pattern and decoded on read.
STORAGE_DTYPE_ATTR: Final = "sharingan_dtype"
STORAGE_DTYPES: Final = ("float16", "float32", "bfloat16")

ATTENTION_KINDS: Final = ("causal", "bidirectional", "sliding")


def run_path(run_id: str) -> str:
    """Path of a run's group relative to the store root."""
    return f"{RUNS_GROUP}/{run_id}"

# Per-token coordinates derived from the source text at extraction time, so segment
# views by sentence/paragraph need only the store (ids count boundaries before the token).
SENTENCE_ID: Final = "sentence_id"
PARAGRAPH_ID: Final = "paragraph_id"

# Dimensions of derived views and metrics -------------------------------------------
QUERY_SEGMENT: Final = "query_segment"
KEY_SEGMENT: Final = "key_segment"
QUERY_SEGMENT_END: Final = "query_segment_end"
KEY_SEGMENT_END: Final = "key_segment_end"
TARGET: Final = "target"

#: Run attribute naming the attention pattern (one of :data:`ATTENTION_KINDS`).
ATTENTION_KIND_ATTR: Final = "attention_kind"

# Write-side bookkeeping ------------------------------------------------------------
#: Attribute on ``attention``: ``{"layout": ..., "codec": ..., "causal": bool}`` — what
#: ``build_pyramid`` and ``resume`` need to know about how the run was written.
WRITE_ATTR: Final = "sharingan_write"
#: Sub-group of a run holding the progress array (not an xarray variable of the run).
PROGRESS_GROUP: Final = "_progress"
#: uint8 array ``(layer, head, q_block)`` in :data:`PROGRESS_GROUP`: 1 once that block is on disk.
PROGRESS_ARRAY: Final = "written"
#: OME-Zarr-style multiscale metadata key on the pyramid group.
MULTISCALES_ATTR: Final = "multiscales"
#: Pyramid reductions, in the order they are stored (level groups are named ``f{factor}``).
PYRAMID_METHODS: Final = ("mean", "max")
#: Dimension indexing the runs in results over many runs (``map_runs``).
RUN: Final = "run"
