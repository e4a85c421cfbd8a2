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
# The bit-packed binary conv kernels (C, OpenMP; gcc). Without a compiler: a warning, and the
# PyTorch reference path is used.
"$PY" -m nas.kernels.build
# The default dataset, Fashion-MNIST, from Debian's package (IDX files, MIT licence).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
    else
        echo "note: install Fashion-MNIST with 'sudo apt-get install dataset-fashion-mnist'," \
             "or pass --data-dir with its four IDX files" >&2
    fi
fi
