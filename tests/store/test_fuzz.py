"""Hypothesis fuzzing of selection and view arguments: only the documented errors escape."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sharingan_store as ss

DOCUMENTED = (ss.SelectionError, IndexError, ValueError, TypeError)

scalars = st.one_of(st.integers(-200, 200), st.none(), st.floats(allow_nan=True), st.text(max_size=3),
                    st.booleans())
selectors = st.one_of(scalars, st.lists(st.integers(-100, 100), max_size=4),
                      st.builds(slice, st.one_of(st.none(), st.integers(-100, 100)),
                                st.one_of(st.none(), st.integers(-100, 100))))
dims = st.sampled_from(["layer", "head", "query", "key", "bogus"])


@pytest.fixture(scope="module")
def run(base_store):
    return ss.open_store(base_store, mode="r").open("a")


def _touch(obj):
    if isinstance(obj, ss.AttentionRun):
        obj = obj.attention
    return np.asarray(obj.isel({d: slice(0, 3) for d in obj.dims}).values)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(["sel", "isel"]), args=st.dictionaries(dims, selectors, max_size=3))
def test_sel_isel(run, how, args):
    try:
        _touch(getattr(run, how)(**args))
    except DOCUMENTED:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(center=scalars, window=scalars, keys=st.one_of(st.sampled_from(["window", "all", "causal"]), st.text(max_size=3)))
def test_local(run, center, window, keys):
    try:
        _touch(run.sel(layer=0, head=1).local(center=center, window=window, keys=keys))
    except DOCUMENTED:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=scalars, method=st.one_of(st.sampled_from(["mean", "max", "sample"]), st.text(max_size=4)),
       pyr=st.booleans())
def test_global_view(run, size, method, pyr):
    try:
        _touch(run.isel(layer=0).global_view(size=size, method=method, use_pyramid=pyr))
    except DOCUMENTED:
        pass
