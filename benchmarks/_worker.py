"""Child side of a measurement: ``python -m benchmarks._worker TASK PARAMS_JSON``.

Runs one task in this fresh process and prints its result as one tagged JSON line
(see :func:`benchmarks._common.run_worker`). Task modules are imported lazily, so the
TransformerLens task runs under an interpreter without ``sharingan_store``.
"""

from __future__ import annotations

import json
import sys
import traceback

from benchmarks._common import emit_result

TASKS = {
    "ours": ("benchmarks.extraction", "task_ours"),
    "zarr_alone": ("benchmarks.extraction", "task_zarr_alone"),
    "eager": ("benchmarks.baselines", "task_eager"),
    "tl": ("benchmarks.baselines", "task_tl"),
}


def main(argv: list[str]) -> int:
    task, params = argv[0], json.loads(argv[1])
    module, name = TASKS[task]
    try:
        import importlib

        result = getattr(importlib.import_module(module), name)(params)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a result
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    emit_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
