from __future__ import annotations

import pytest

from tests.store.helpers import make_store


@pytest.fixture(scope="session")
def cli_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "store"
    make_store(path, runs={"a": {"seed": 0, "metadata": {"note": "hello"}}, "b": {"seed": 1}})
    return str(path)
