"""map_runs: one lazy dask graph over many runs; a real multi-process LocalCluster reads the store itself."""

from __future__ import annotations

import pickle

import dask
import distributed
import numpy as np
import pytest
import torch
import xarray as xr

import sharingan_store as ss
from sharingan_store.distributed import map_runs

N_RUNS = 6
LENGTHS = [256 + 29 * i for i in range(N_RUNS)]


@pytest.fixture(scope="module")
def runs_store(tmp_path_factory, llama):
    store = ss.open_store(tmp_path_factory.mktemp("dist") / "store")
    gen = torch.Generator().manual_seed(7)
    for i, n in enumerate(LENGTHS):
        store.extract(llama, input_ids=torch.randint(1, 128, (n,), generator=gen), run=f"run-{i:02d}",
                      progress=False)
    return store


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  memory_limit="2GiB", silence_logs=50) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def _graph(obj) -> dict:
    data = obj.data if isinstance(obj, xr.DataArray) else obj.to_array().data
    return dict(data.__dask_graph__())


def _arrays_in(obj, out: list, depth: int = 0) -> None:
    """Every numpy array reachable through tuples/lists/dicts/dask tasks (what the graph would ship)."""
    if depth > 12:
        return
    if isinstance(obj, np.ndarray):
        out.append(obj)
    elif isinstance(obj, (tuple, list, set, frozenset)):
        for o in obj:
            _arrays_in(o, out, depth + 1)
    elif isinstance(obj, dict):
        for o in obj.values():
            _arrays_in(o, out, depth + 1)
    else:
        for attr in ("args", "kwargs", "value"):  # dask._task_spec.Task / DataNode
            if hasattr(obj, attr) and not callable(getattr(obj, attr)):
                _arrays_in(getattr(obj, attr), out, depth + 1)


def test_map_runs_is_lazy_and_indexed_by_run(runs_store):
    calls = []

    def count(dsk, keys, **kw):
        calls.append(1)
        return dask.get(dsk, keys, **kw)

    with dask.config.set(scheduler=count):
        out = map_runs(runs_store, lambda r: r.entropy().mean("query"))
        assert not calls  # building the graph computed nothing
    assert out.dims == ("run", "layer", "head")
    assert list(out["run"].values) == [f"run-{i:02d}" for i in range(N_RUNS)]
    assert out.chunks is not None
    # equal to the per-run computation
    with dask.config.set(scheduler="synchronous"):
        got = out.compute()
        for i in (0, N_RUNS - 1):
            want = runs_store.open(f"run-{i:02d}").entropy().mean("query").compute()
            np.testing.assert_allclose(got.isel(run=i).values, want.values, rtol=1e-6)


def test_map_runs_from_url_subset_and_ragged(runs_store):
    out = map_runs(runs_store.url, lambda r: r.entropy(), runs=["run-00", "run-03"])
    assert out.sizes["query"] == LENGTHS[3]  # outer join of different lengths
    vals = out.compute()
    assert np.isnan(vals.sel(run="run-00").isel(query=-1)).all()
    assert not np.isnan(vals.sel(run="run-03")).any()
    assert out["query_token"].dims == ("run", "query")  # per-run token coords kept
    ds = map_runs(runs_store, lambda r: xr.Dataset({"h": r.entropy().mean("query"),
                                                    "d": r.attention_distance()}))
    assert set(ds.data_vars) == {"h", "d"} and ds.sizes["run"] == N_RUNS
    with pytest.raises(ValueError, match="xarray"):
        map_runs(runs_store, lambda r: 1.0)
    with pytest.raises(ss.RunNotFoundError):
        map_runs(runs_store, lambda r: r.entropy(), runs=["nope"])


def test_graph_holds_paths_not_data(runs_store):
    out = map_runs(runs_store, lambda r: r.entropy().mean("query"))
    graph = _graph(out)
    size = len(pickle.dumps(graph))
    raw = sum(2 * 4 * n * n * 2 for n in LENGTHS)  # float16 attention bytes of the runs
    assert size < raw / 20, (size, raw)
    assert size / N_RUNS < 64 * 1024
    arrays = []
    for task in graph.values():
        _arrays_in(task, arrays)
    assert max((a.nbytes for a in arrays), default=0) <= 4096  # no chunk of data travels in the graph


def test_local_cluster_equals_local_scheduler(runs_store, client):
    fn = lambda r: r.entropy().mean("query")  # noqa: E731
    with dask.config.set(scheduler="threads"):
        want = map_runs(runs_store, fn).compute()
    lazy = map_runs(runs_store, fn)
    with distributed.get_task_stream(client) as stream:
        got = client.compute(lazy).result()
    xr.testing.assert_allclose(got, want, rtol=1e-6)
    # both worker processes computed tasks: each read its chunks from the store itself
    assert len({t["worker"] for t in stream.data}) == 2


def test_local_cluster_reads_object_storage(s3, s3_store, client):
    url = s3_store.url
    lazy = map_runs(url, lambda r: r.entropy().mean("query"), storage_options=s3.storage_options)
    with dask.config.set(scheduler="synchronous"):
        want = lazy.compute()
    got = client.compute(lazy).result()
    xr.testing.assert_allclose(got, want, rtol=1e-6)
