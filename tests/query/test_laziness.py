"""Building views computes nothing; ``local`` reads only the chunks it needs."""

from __future__ import annotations

import itertools

import dask.array as dsa
import numpy as np
import pytest

import sharingan_store  # noqa: F401  (registers da.attn)
from sharingan_store.query.views import global_view, local, segments
from sharingan_store.testing import synthetic_attention


class RecordingArray:
    """Array-like handed to ``dask.array.from_array``: records every region read."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.shape, self.dtype, self.ndim = values.shape, values.dtype, values.ndim
        self.reads: list[tuple] = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.values[key]


def recorded_run(n: int = 96, chunk: int = 16):
    base = synthetic_attention(2, 2, n, seed=1)
    rec = RecordingArray(np.asarray(base.values))
    data = dsa.from_array(rec, chunks=(1, 1, chunk, chunk), asarray=False, meta=np.empty((0,) * 4, base.dtype))
    return base.copy(data=data), rec


def touched_chunks(reads, chunk: int) -> set[tuple[int, ...]]:
    out = set()
    for key in reads:
        ranges = []
        for s in key:
            if isinstance(s, slice):
                ranges.append(range(s.start // chunk if len(ranges) >= 2 else s.start,
                                    (s.stop - 1) // chunk + 1 if len(ranges) >= 2 else s.stop))
            else:
                ranges.append([int(s)])
        out.update(itertools.product(*ranges))
    return out


def test_local_reads_only_needed_chunks():
    n, chunk = 96, 16
    da, rec = recorded_run(n, chunk)
    view = local(da, center=40, window=5)  # positions 35..45 -> chunks 2 of 6 per axis
    assert rec.reads == []
    expected = np.asarray(synthetic_attention(2, 2, n, seed=1).values)[..., 35:46, 35:46]
    np.testing.assert_array_equal(view.compute(scheduler="sync").values, expected)
    touched = touched_chunks(rec.reads, chunk)
    assert touched == {(l, h, i, j) for l in range(2) for h in range(2) for i in (2,) for j in (2,)}
    total_chunks = 2 * 2 * (n // chunk) ** 2
    assert len(touched) < total_chunks / 10


def test_local_keys_all_reads_one_row_of_chunks():
    n, chunk = 96, 16
    da, rec = recorded_run(n, chunk)
    local(da, center=50, window=3, keys="all").compute(scheduler="sync")
    touched = touched_chunks(rec.reads, chunk)
    assert {t[2] for t in touched} == {2, 3}  # queries 47..53 straddle chunks 2 and 3
    assert len(touched) <= 2 * 2 * 2 * (n // chunk)


def test_local_graph_has_few_tasks():
    da = synthetic_attention(1, 1, 512).chunk({"query": 64, "key": 64})
    view = local(da, 100, 10)
    whole = len(dict(da.data.__dask_graph__()))
    mine = len(dict(view.data.__dask_graph__()))
    assert whole == 64
    # culled at compute time: the window touches 2 x 2 source chunks
    from dask import optimize
    (opt,) = optimize(view.data)
    assert len(dict(opt.__dask_graph__())) <= 2 * 2 * 2
    assert mine >= 1


BUILDERS = {
    "local": lambda da: local(da, 50, 8),
    "local_all": lambda da: local(da, 50, 8, keys="all"),
    "global_mean": lambda da: global_view(da, 10, "mean"),
    "global_max": lambda da: global_view(da, 10, "max"),
    "global_sample": lambda da: global_view(da, 10, "sample"),
    "segments_size": lambda da: segments(da, size=17),
    "segments_offsets": lambda da: segments(da, boundaries=[10, 40, 41]),
    "accessor_global": lambda da: da.attn.global_view(8),
    "accessor_segments": lambda da: da.attn.segments(size=9),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_building_views_computes_nothing(name, counting):
    da = synthetic_attention(2, 2, 100).chunk({"query": 16, "key": 16})
    out = BUILDERS[name](da)
    assert counting.calls == 0
    assert out.chunks is not None
    out.compute()
    assert counting.calls >= 1


def test_building_views_on_float16_computes_nothing(counting):
    da = synthetic_attention(1, 1, 100).astype("float16").chunk({"query": 32, "key": 32})
    global_view(da, 10)
    segments(da, size=10)
    assert counting.calls == 0
