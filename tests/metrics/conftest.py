"""Fixtures of the metric tests (shared with the view tests)."""

from tests.synthetic_fixtures import build, causal, chunked, counting  # noqa: F401
