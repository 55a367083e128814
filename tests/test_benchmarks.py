"""The benchmark entry point runs end to end (a smoke run at N <= 512); no figure is checked.

Benchmarks are not pass/fail tests: this only proves that every code path of
``benchmarks/run.py`` works and prints its tables, without touching ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_benchmarks_smoke_runs_and_prints_tables(tmp_path):
    results = REPO / "benchmarks" / "RESULTS.md"
    before = results.read_bytes() if results.exists() else None
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--smoke", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for title in ("1a.", "1b.", "1c.", "2.", "3a.", "3b.", "3c."):
        assert f"## {title}" in proc.stdout, f"section {title} missing"
    assert "| contender |" in proc.stdout and "What this means" in proc.stdout
    text = out.read_text()
    assert "## Machine and versions" in text and "Command:" in text
    assert (results.read_bytes() if results.exists() else None) == before, "smoke run overwrote RESULTS.md"
