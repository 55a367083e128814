"""Property tests of the block planner."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharingan_store.extract import DEFAULT_MAX_BLOCK_BYTES, BlockPlan, plan_blocks

plans = st.fixed_dictionaries(
    {
        "num_heads": st.integers(1, 64),
        "seq_len": st.integers(1, 5000),
        "chunk": st.sampled_from([1, 3, 16, 64, 100, 512]),
        "max_block_bytes": st.one_of(st.integers(1, 2**16), st.integers(1, 2**30)),
        "batch": st.integers(1, 4),
    }
)


def _plan(p: dict) -> BlockPlan:
    return plan_blocks(p["num_heads"], p["seq_len"], chunk=p["chunk"], max_block_bytes=p["max_block_bytes"],
                       batch=p["batch"])


@settings(max_examples=300, deadline=None)
@given(plans)
def test_plan_properties(p):
    plan = _plan(p)
    n, chunk, budget, batch = p["seq_len"], p["chunk"], p["max_block_bytes"], p["batch"]
    assert (plan.seq_len, plan.chunk) == (n, chunk)

    # heads
    assert 1 <= plan.head_block <= p["num_heads"]

    # rows: whole chunks, or the whole (short) sequence
    if n <= chunk:
        assert plan.q_block == n
    else:
        assert plan.q_block % chunk == 0 and plan.q_block >= chunk
    assert plan.q_block <= max(n, chunk) + chunk  # never more than needed to cover the sequence

    # memory: within budget unless it is the minimum (one head, one chunk of rows)
    block_bytes = batch * plan.head_block * plan.q_block * n * 4
    assert plan.block_bytes * batch == block_bytes
    minimum = plan.head_block == 1 and plan.q_block == min(chunk, n)
    assert block_bytes <= budget or minimum
    # and the budget is used: when a larger block of whole chunks would fit, it is taken
    if plan.head_block == 1 and plan.q_block < n:
        assert batch * (plan.q_block + chunk) * n * 4 > budget

    # query blocks cover [0, n) exactly once, in order
    blocks = plan.query_blocks()
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    for (a0, a1), (b0, b1) in zip(blocks, blocks[1:]):
        assert a1 == b0
    assert all(0 <= q0 < q1 <= n and q1 - q0 <= plan.q_block for q0, q1 in blocks)
    assert all(q0 % plan.q_block == 0 for q0, _ in blocks)
    assert sum(q1 - q0 for q0, q1 in blocks) == n


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 32), st.integers(1, 300), st.integers(1, 64))
def test_huge_budget_one_block(heads, n, chunk):
    plan = plan_blocks(heads, n, chunk=chunk, max_block_bytes=2**40)
    assert plan.head_block == heads
    assert len(plan.query_blocks()) == 1


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 32), st.integers(2, 3000), st.integers(1, 64))
def test_tiny_budget_minimum_block(heads, n, chunk):
    plan = plan_blocks(heads, n, chunk=chunk, max_block_bytes=1)
    assert plan.head_block == 1
    assert plan.q_block == min(chunk, n)


def test_doc_examples():
    plan = plan_blocks(num_heads=32, seq_len=32768, chunk=512, max_block_bytes=128 * 2**20)
    assert (plan.head_block, plan.q_block) == (1, 1024)
    assert plan_blocks(num_heads=4, seq_len=100, chunk=100).q_block == 100
    assert DEFAULT_MAX_BLOCK_BYTES == 32 * 2**20  # peak extra memory is a few blocks: keep it well under 1 GiB


@pytest.mark.parametrize(
    "args",
    [dict(num_heads=0, seq_len=4, chunk=2), dict(num_heads=1, seq_len=0, chunk=2),
     dict(num_heads=1, seq_len=4, chunk=0), dict(num_heads=1, seq_len=4, chunk=2, max_block_bytes=0)],
)
def test_invalid_arguments(args):
    with pytest.raises(ValueError):
        plan_blocks(**args)
