"""A run directory: ``results/runs/<run-id>/`` and the atomic writes that fill it.

Layout (written by ``python -m nas.search``)::

    settings.json        what was asked (budget, space, trials, seed, ...); marks a run directory
    study.db             the Optuna study (SQLite), unless --storage named another database
    candidates.csv       one row per distinct candidate and reference model (+ .parquet)
    specs/rank001-<id>.json ...   the top-k ArchSpecs, loadable by nas.profile and nas.paths
    report.md, report.html, plots/*.png

Every file is written to a temporary name in the same directory and renamed over the target, so
a reader (or a killed run) never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SETTINGS = "settings.json"
CANDIDATES = "candidates.csv"
RUNS_ROOT = Path("results") / "runs"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def atomic_savefig(fig, path: Path, **kwargs) -> None:
    """Save a matplotlib figure atomically (PNG)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **kwargs)
    atomic_write_bytes(path, buffer.getvalue())


def is_run_dir(path: Path) -> bool:
    try:
        return json.loads((path / SETTINGS).read_text()).get("kind") == "nas.search"
    except (OSError, ValueError, AttributeError):
        return False


def read_settings(path: Path) -> dict[str, Any]:
    return json.loads((path / SETTINGS).read_text())
