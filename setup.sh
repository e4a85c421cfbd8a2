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
# Debian packages: installed where apt-get exists and this runs as root (a failed install stops
# the set-up); elsewhere a note says how.
can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }
apt_install() {
    apt-get install -y -qq "$1" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$1" >/dev/null; }
}
# A C compiler (gcc; cc will do) for the bit-packed binary conv kernels (nas.nn.kernels) and the
# fused binary conv's loops (nas.nn.binary). Without one both warn and run PyTorch instead (slower),
# and the tests of the compiled code skip (under CI, CI=1, they fail).
if ! command -v gcc >/dev/null 2>&1 && ! command -v cc >/dev/null 2>&1; then
    if can_apt; then
        apt_install gcc
    else
        echo "note: no C compiler: the binary conv kernels fall back to PyTorch (slower);" \
             "install gcc ('sudo apt-get install gcc') and run ./setup.sh again" >&2
    fi
fi
# The bit-packed binary conv kernels (C, OpenMP; gcc). Without a compiler: a warning, and the
# PyTorch reference path is used.
"$PY" -m nas.nn.kernels.build
# The default dataset, Fashion-MNIST, from Debian's package (IDX files, MIT licence).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if can_apt; then
        apt_install dataset-fashion-mnist
    else
        echo "note: install Fashion-MNIST with 'sudo apt-get install dataset-fashion-mnist'," \
             "or pass --data-dir with its four IDX files" >&2
    fi
fi
# PostgreSQL, for the test of searches sharing one study (--storage postgresql://...,
# --study-name); the test skips without it (under CI it fails).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if can_apt; then
        apt_install postgresql
    else
        echo "note: the shared-study test needs PostgreSQL: 'sudo apt-get install postgresql'" >&2
    fi
fi
# Chromium, for the tests that open report.html and the Ray dashboard as a user does (headless,
# driven by Playwright); they skip without it (under CI they fail).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if can_apt; then
        apt_install chromium
    else
        echo "note: the browser tests need Chromium: 'sudo apt-get install chromium'" >&2
    fi
fi
# strace, for the loopback check (python3 -m runners.check_loopback) and its tests, which skip
# without it (under CI they fail).
if ! command -v strace >/dev/null 2>&1; then
    if can_apt; then
        apt_install strace
    else
        echo "note: the loopback check needs strace: 'sudo apt-get install strace'" >&2
    fi
fi
