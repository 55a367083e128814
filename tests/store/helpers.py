"""Shared helpers of the store tests: tiny runs, file hashing, byte flipping."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch

import sharingan_store as ss
from sharingan_store.testing import tiny_model

N = 64
CHUNK = 16


def ids(n: int = N, offset: int = 0) -> torch.Tensor:
    return (torch.arange(n) + offset) % 128


def make_store(path: str | os.PathLike[str], *, runs: dict[str, dict] | None = None) -> ss.Store:
    """A store with run "a" (seed 0) and "b" (seed 1, same input) unless ``runs`` says otherwise."""
    store = ss.open_store(path)
    runs = runs if runs is not None else {"a": {"seed": 0}, "b": {"seed": 1}}
    for run, spec in runs.items():
        model = tiny_model("llama", seed=spec.get("seed", 0), num_layers=spec.get("num_layers", 2))
        store.extract(model, input_ids=ids(spec.get("n", N), spec.get("offset", 0)), run=run, progress=False,
                      chunk=CHUNK, metadata=spec.get("metadata"), layers=spec.get("layers"))
    return store


def clone(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> str:
    shutil.copytree(src, dst)
    return os.fspath(dst)


def file_hashes(root: str | os.PathLike[str], *, mtimes: bool = False) -> dict[str, object]:
    out: dict[str, object] = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            out[os.path.relpath(p, root)] = (digest, os.stat(p).st_mtime_ns) if mtimes else digest
    return out


def flip_byte(path: str | os.PathLike[str]) -> None:
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(path).write_bytes(bytes(data))
