"""A trained network's folder, what a user takes away from a run: ``spec.json`` (the network as
trained: its input size, channels, classes, widths and padding), ``model.pt`` (its weights, a
state dict that loads with ``weights_only=True`` into ``nas.build_model(spec)``) and
``metrics.json`` (what its training gave: status, epochs, top-1, top-5, whether it is the
baseline); ``model.packed.pt`` once packed (:mod:`nas.pack`).

A search run keeps one folder per trained network in ``RUN_DIR/models/<its spec file's stem>/``
(``rank021-<arch id>``, ``ref-bireal_resnet18-<arch id>``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

MODELS = "models"  # a run directory's folder of trained networks
SPEC, WEIGHTS, METRICS, PACKED = "spec.json", "model.pt", "metrics.json", "model.packed.pt"


def is_model_dir(path: Path) -> bool:
    return (path / SPEC).is_file() and (path / WEIGHTS).is_file()


def read_metrics(folder: Path) -> dict:
    """``metrics.json`` of a model folder ({} where it is missing or unreadable)."""
    try:
        metrics = json.loads((folder / METRICS).read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def best_model_dir(run_dir: Path) -> Path | None:
    """The folder of the run's best trained candidate: fully trained (not stopped by successive
    halving), not the baseline, the highest top-1; None where the run trained none."""
    best, best_top1 = None, -math.inf
    folders = sorted((run_dir / MODELS).iterdir()) if (run_dir / MODELS).is_dir() else []
    for folder in folders:
        metrics = read_metrics(folder)
        top1 = metrics.get("top1")
        if (
            not is_model_dir(folder)
            or metrics.get("baseline")
            or metrics.get("status") != "trained"
        ):
            continue
        if isinstance(top1, (int, float)) and top1 > best_top1:
            best, best_top1 = folder, top1
    return best
