#!/usr/bin/env bash
# A separate venv for the TransformerLens baseline (never touches the project's venv).
# TransformerLens 4.x removed HookedTransformer, so the baseline uses the last 2.x line,
# with pins that keep its transitive imports working (datasets 2.x needs pyarrow < 18).
# Then: python benchmarks/run.py --tl-python /tmp/tlvenv2/bin/python (the default).
set -euo pipefail
VENV="${1:-/tmp/tlvenv2}"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.13.0 "transformer-lens<3" "datasets<3" "pyarrow<18" "fsspec<=2024.6.1"
"$VENV/bin/python" -c "from transformer_lens import HookedTransformer; print('ok')"
