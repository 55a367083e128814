"""Helpers of the scale tests: eager reference attention and a fresh-process RSS probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from sharingan_store.testing import eager_attentions  # noqa: F401  (re-exported for the tests)


#: Inputs extracted into the shared S3 store of the ``s3_store`` fixture (run id -> token ids).
S3_INPUTS = {"s3-a": list(range(1, 41)), "s3-b": [(7 * i) % 127 + 1 for i in range(53)]}


def run_probe(code: str, timeout: float = 600) -> dict:
    """Run ``code`` in a fresh interpreter with ``rss_mib()``/``PeakRSS`` defined; it prints one JSON line last.

    A fresh process keeps the measurement free of this test session's memory.
    """
    prelude = textwrap.dedent('''
        import json, os, threading, time
        import psutil
        _proc = psutil.Process()
        def rss_mib():
            return _proc.memory_info().rss / 2**20
        class PeakRSS:
            """Sample RSS every 10 ms in a thread: peak of the with-block, in MiB."""
            def __enter__(self):
                self.peak = rss_mib(); self._stop = threading.Event()
                self._t = threading.Thread(target=self._run, daemon=True); self._t.start(); return self
            def _run(self):
                while not self._stop.wait(0.01):
                    self.peak = max(self.peak, rss_mib())
            def __exit__(self, *exc):
                self._stop.set(); self._t.join(); self.peak = max(self.peak, rss_mib())
    ''')
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"probe failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
