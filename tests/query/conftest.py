"""Fixtures of the view tests (shared with the metric tests)."""

from tests.synthetic_fixtures import build, causal, chunked, counting  # noqa: F401
