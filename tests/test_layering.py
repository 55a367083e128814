"""The package's one-way data flow: lower layers never import upper ones (also not lazily)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sharingan_store"

#: extract → write → store → query → metrics → facades → viz/cli. Equal ranks may import each other.
RANKS = {
    "schema": 0, "errors": 0, "testing": 0,
    "extract": 1,
    "write": 2,
    "store": 3,
    "query": 4,
    "metrics": 5,
    "run": 6, "accessor": 6, "api": 6, "distributed": 6,
    "viz": 7,
    "cli": 8, "demo": 8, "__init__": 8,
}


def _unit(module: str) -> str:
    """The layer of ``sharingan_store.<unit>.…`` (or of the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("sharingan_store")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sharingan_store"):
            if node.module == "sharingan_store":
                out += [f"sharingan_store.{a.name}" for a in node.names]
            else:
                out.append(node.module)
    return out


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_imports(path: Path) -> None:
    rel = path.relative_to(PACKAGE).with_suffix("")
    own = rel.parts[0] if len(rel.parts) > 1 else rel.parts[0]
    own_rank = RANKS[own]
    for target in _imports(path):
        unit = _unit(target)
        if unit not in RANKS:  # a name imported from the package root, e.g. __version__
            continue
        assert RANKS[unit] <= own_rank, f"{rel} (layer {own}) imports {target} (upper layer {unit})"


def test_every_unit_has_a_rank() -> None:
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()}
    assert units <= set(RANKS), f"give these a layer in RANKS: {sorted(units - set(RANKS))}"
