"""Chunk and shard layout of a run's ``attention`` array.

Inner chunks are ``(1, 1, chunk, chunk)`` with ``chunk = min(512, seq_len)``. Long runs
(``seq_len >= shard_threshold``) use zarr v3 sharding with one shard per head × query
block × all keys, ``(1, 1, q_block, ceil(seq_len / chunk) * chunk)``, so a 32K run is
thousands of files rather than millions, and one extraction block writes exactly one
shard per head (no two writes ever touch the same shard).

Examples
--------
>>> lay = choose_layout(32768, 1024)
>>> lay.shard, lay.chunks, lay.shards
(True, (1, 1, 512, 512), (1, 1, 1024, 32768))
>>> choose_layout(100, 100).chunks
(1, 1, 100, 100)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DEFAULT_CHUNK", "RunLayout", "choose_layout"]

DEFAULT_CHUNK = 512


@dataclass(frozen=True)
class RunLayout:
    """The chunk grid of one run.

    Parameters
    ----------
    seq_len
        Sequence length ``N`` (query and key extent).
    q_block
        Query rows per extraction block: a multiple of ``chunk``, or ``>= seq_len``
        (one block covers every row).
    chunk
        Inner chunk edge (``<= seq_len``).
    shard
        Whether the attention array is sharded (one shard = one head × one query block × all keys).

    Examples
    --------
    >>> RunLayout(1000, 512, 512, False).num_q_blocks
    2
    >>> RunLayout(1000, 300, 512, False)
    Traceback (most recent call last):
    ...
    ValueError: q_block (300) must be a multiple of chunk (512) or >= seq_len (1000)
    """

    seq_len: int
    q_block: int
    chunk: int
    shard: bool

    def __post_init__(self) -> None:
        for name in ("seq_len", "q_block", "chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.chunk > self.seq_len:
            raise ValueError(f"chunk ({self.chunk}) must be <= seq_len ({self.seq_len})")
        if self.q_block % self.chunk and self.q_block < self.seq_len:
            raise ValueError(
                f"q_block ({self.q_block}) must be a multiple of chunk ({self.chunk}) "
                f"or >= seq_len ({self.seq_len})"
            )

    @property
    def chunks(self) -> tuple[int, int, int, int]:
        """Inner chunk shape ``(1, 1, chunk, chunk)``."""
        return (1, 1, self.chunk, self.chunk)

    @property
    def padded_len(self) -> int:
        """``seq_len`` rounded up to a multiple of ``chunk``."""
        return math.ceil(self.seq_len / self.chunk) * self.chunk

    @property
    def block_rows(self) -> int:
        """Rows of one write block: ``q_block`` capped at the padded sequence, chunk-aligned."""
        return min(math.ceil(self.q_block / self.chunk) * self.chunk, self.padded_len)

    @property
    def shards(self) -> tuple[int, int, int, int] | None:
        """Shard shape ``(1, 1, block_rows, padded_len)``, or ``None`` when not sharded."""
        return (1, 1, self.block_rows, self.padded_len) if self.shard else None

    @property
    def num_q_blocks(self) -> int:
        """Number of query blocks ``ceil(seq_len / block_rows)``."""
        return math.ceil(self.seq_len / self.block_rows)

    def q_blocks(self) -> list[tuple[int, int]]:
        """The ``(q0, q1)`` row ranges of the blocks, in order.

        Examples
        --------
        >>> RunLayout(10, 4, 2, False).q_blocks()
        [(0, 4), (4, 8), (8, 10)]
        """
        b = self.block_rows
        return [(q0, min(q0 + b, self.seq_len)) for q0 in range(0, self.seq_len, b)]

    def key_end(self, q1: int, causal: bool) -> int:
        """Keys ``[0, kend)`` written for rows ending at ``q1``: the last chunk touching the diagonal.

        Examples
        --------
        >>> RunLayout(2048, 512, 512, False).key_end(512, causal=True)
        512
        >>> RunLayout(2048, 512, 512, False).key_end(512, causal=False)
        2048
        """
        if not causal:
            return self.seq_len
        return min(self.seq_len, math.ceil(q1 / self.chunk) * self.chunk)

    def row_key_end(self, row_chunk: int, causal: bool) -> int:
        """Keys ``[0, kend)`` stored for chunk row ``row_chunk`` of a run.

        Unsharded causal runs store each chunk row up to its own diagonal chunk; a sharded
        run writes a shard (one query block) whole, so its rows go up to the block's diagonal.

        Examples
        --------
        >>> RunLayout(2048, 1024, 512, False).row_key_end(0, causal=True)
        512
        >>> RunLayout(2048, 1024, 512, True).row_key_end(0, causal=True)
        1024
        """
        r1 = min((row_chunk + 1) * self.chunk, self.seq_len)
        if self.shard:
            r1 = min(math.ceil(r1 / self.block_rows) * self.block_rows, self.seq_len)
        return self.key_end(r1, causal)

    def check_block(self, q0: int, q1: int) -> None:
        """Raise ``ValueError`` unless ``[q0, q1)`` is one whole block of :meth:`q_blocks`.

        Whole blocks keep every chunk/shard single-writer and make progress tracking exact.

        Examples
        --------
        >>> RunLayout(10, 4, 2, False).check_block(4, 6)
        Traceback (most recent call last):
        ...
        ValueError: query range [4, 6) is not a block of this layout; blocks are [i*4, min((i+1)*4, 10))
        """
        b = self.block_rows
        if not (0 <= q0 < self.seq_len and q0 % b == 0 and q1 == min(q0 + b, self.seq_len)):
            raise ValueError(
                f"query range [{q0}, {q1}) is not a block of this layout; "
                f"blocks are [i*{b}, min((i+1)*{b}, {self.seq_len}))"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (stored in the attention array's attrs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunLayout:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def choose_layout(
    seq_len: int,
    q_block: int,
    *,
    chunk: int = DEFAULT_CHUNK,
    shard: bool | None = None,
    shard_threshold: int = 8192,
) -> RunLayout:
    """Pick the layout of a run of ``seq_len`` tokens extracted in blocks of ``q_block`` rows.

    Parameters
    ----------
    seq_len
        Sequence length.
    q_block
        Query rows per extraction block (chosen by the extractor from its memory budget);
        must be a multiple of ``min(chunk, seq_len)`` or ``>= seq_len``.
    chunk
        Wanted inner chunk edge; capped at ``seq_len``.
    shard
        Force sharding on/off; ``None`` shards when ``seq_len >= shard_threshold``.
    shard_threshold
        Sequence length from which sharding is automatic.

    Examples
    --------
    >>> choose_layout(4096, 1024)
    RunLayout(seq_len=4096, q_block=1024, chunk=512, shard=False)
    """
    c = min(chunk, seq_len)
    if shard is None:
        shard = seq_len >= shard_threshold
    return RunLayout(seq_len=seq_len, q_block=q_block, chunk=c, shard=bool(shard))
