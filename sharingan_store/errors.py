"""The ``SharinganError`` tree.

Every error a user can provoke is one of these, and each subclasses the stdlib type
callers already catch (``KeyError`` for missing runs, ``ValueError`` for bad data).

Examples
--------
>>> from sharingan_store.errors import RunNotFoundError, SharinganError
>>> issubclass(RunNotFoundError, KeyError) and issubclass(RunNotFoundError, SharinganError)
True
"""

from __future__ import annotations


class SharinganError(Exception):
    """Base class of every error raised on purpose by sharingan_store."""


class RunNotFoundError(SharinganError, KeyError):
    """A run id that is not in the store. The message names the available runs."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class RunExistsError(SharinganError, FileExistsError):
    """Extracting into a run id that already exists without ``overwrite=True``."""


class RunIncompleteError(SharinganError):
    """Opening a run whose status is not ``complete`` without ``allow_incomplete=True``."""


class UnsupportedModelError(SharinganError, TypeError):
    """A model whose attention does not route through ``transformers.AttentionInterface``."""


class FormatError(SharinganError, ValueError):
    """A path that is not a store, a newer format version, or a malformed run."""


class IntegrityError(SharinganError, OSError):
    """A chunk whose checksum or shape does not match: corrupted data is never returned."""


class ReadOnlyError(SharinganError, PermissionError):
    """A write to a store opened with ``mode="r"``."""


__all__ = [
    "FormatError",
    "IntegrityError",
    "ReadOnlyError",
    "RunExistsError",
    "RunIncompleteError",
    "RunNotFoundError",
    "SharinganError",
    "UnsupportedModelError",
]


class SelectionError(SharinganError, IndexError, KeyError):
    """A layer/head/position selection outside the run; the message names the valid range."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


__all__ += ["SelectionError"]
