"""Block planning: how many heads and query rows one extraction block covers.

A block is ``[batch, head_block, q_block, seq_len]`` float32 scores; peak extra memory is
a few blocks, so the plan keeps ``batch·head_block·q_block·seq_len·4 ≤ max_block_bytes``.
``q_block`` is a multiple of the storage chunk so every block covers whole chunks and no
chunk is ever written twice.

Examples
--------
>>> plan = plan_blocks(num_heads=32, seq_len=32768, chunk=512, max_block_bytes=128 * 2**20)
>>> plan.head_block, plan.q_block
(1, 1024)
>>> plan_blocks(num_heads=32, seq_len=32768, chunk=512).q_block  # default budget 32 MiB: one chunk of rows
512
>>> plan_blocks(num_heads=4, seq_len=100, chunk=100).q_block
100
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_BLOCK_BYTES", "BlockPlan", "plan_blocks"]

#: Default budget for one float32 score block (peak extra memory is a few of these).
DEFAULT_MAX_BLOCK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class BlockPlan:
    """Sizes of one extraction block.

    Attributes
    ----------
    head_block
        Heads per block.
    q_block
        Query rows per block: a multiple of ``chunk`` (or the whole sequence).
    chunk
        The storage chunk edge the plan is aligned to.
    seq_len
        Sequence length the plan was made for.
    """

    head_block: int
    q_block: int
    chunk: int
    seq_len: int

    @property
    def block_bytes(self) -> int:
        """Bytes of one float32 score block for batch size 1."""
        return self.head_block * self.q_block * self.seq_len * 4

    def query_blocks(self) -> list[tuple[int, int]]:
        """``(q0, q1)`` row ranges covering the sequence."""
        return [(q0, min(q0 + self.q_block, self.seq_len)) for q0 in range(0, self.seq_len, self.q_block)]


def plan_blocks(
    num_heads: int,
    seq_len: int,
    *,
    chunk: int,
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
    batch: int = 1,
) -> BlockPlan:
    """Choose ``(head_block, q_block)`` from a memory budget.

    Rows come first (one head, as many whole chunks of rows as fit, at least one chunk);
    when a whole head fits, several heads share a block.

    Parameters
    ----------
    num_heads, seq_len
        Query heads of the model and tokens in the sequence.
    chunk
        Storage chunk edge; ``q_block`` is a multiple of it.
    max_block_bytes
        Budget for one ``[batch, heads, rows, seq_len]`` float32 block. A budget smaller
        than one chunk of rows is raised to one chunk of rows (the minimum).
    batch
        Sequences per forward pass.
    """
    if num_heads < 1 or seq_len < 1 or chunk < 1:
        raise ValueError(f"num_heads, seq_len and chunk must be >= 1, got {num_heads}, {seq_len}, {chunk}")
    if max_block_bytes < 1:
        raise ValueError(f"max_block_bytes must be positive, got {max_block_bytes}")
    row_bytes = batch * seq_len * 4
    rows = max(chunk, (max_block_bytes // row_bytes) // chunk * chunk)
    q_block = min(rows, -(-seq_len // chunk) * chunk)
    if q_block >= seq_len:
        q_block = seq_len if seq_len <= chunk else -(-seq_len // chunk) * chunk
        head_block = max(1, min(num_heads, max_block_bytes // max(1, batch * q_block * seq_len * 4)))
    else:
        head_block = 1
    return BlockPlan(head_block=head_block, q_block=q_block, chunk=chunk, seq_len=seq_len)
