#!/usr/bin/env bash
# Sets up the project in the active Python environment (a virtualenv, or the system Python).
# torch: if none is importable, the 2.13.0 build is installed (on the project's reference machine that
# is a CPU build from local disk); a torch you already have (for example a CUDA build) is kept.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[dev]"
