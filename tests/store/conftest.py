from __future__ import annotations

import pytest

from tests.store.helpers import make_store


@pytest.fixture(scope="session")
def base_store(tmp_path_factory):
    """A read-only-by-convention store with runs "a" and "b" (different weights, same input). Clone before mutating."""
    path = tmp_path_factory.mktemp("base") / "store"
    make_store(path)
    return str(path)
