"""The benchmark of trained binary CNNs, as a table: evaluate a new proxy without training.

``load_benchmark()`` gives one row per architecture x recipe x seed of the study that
``python -m runners.study`` trains (committed in ``results/study``): the architecture's name,
space, role (``sample`` or ``reference``: a zoo model at its own FLOPs), structure, spec (JSON at
224 px and 1000 classes), every training-free metric (costs, depth, width, gradient-path
components N and L at network, stage and block scope, every scorer's key, the zero-cost proxies)
what training measured (final and best test top-1, top-5, losses, images per second, the
learning curve as JSON lists), and the study ``part`` the job belongs to: ``short`` (the sample
and the zoo, seed 0), ``seeds`` (seeds 1 and 2), ``long`` (the long recipe) or ``prospective``
(architectures drawn from a default search after the ranking was frozen; role ``prospective``).
As NAS-Bench users do::

    from results.trained_benchmark import load_benchmark

    bench = load_benchmark()
    short = bench[bench.recipe == "short"]
    short.groupby("arch_id").top1.mean()
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

STUDY_DIR = Path(__file__).parent / "study"
FROZEN = "prospective.json"  # the rankings frozen before the prospective sample was drawn


def load_archs(folder: str | Path = STUDY_DIR) -> pd.DataFrame:
    """One row per architecture of the study in ``folder``: its spec and every metric."""
    return pd.read_csv(Path(folder) / "archs.csv", dtype={"arch_id": str})


def load_benchmark(folder: str | Path = STUDY_DIR) -> pd.DataFrame:
    """One row per finished job (architecture x recipe x seed) of the study in ``folder``, with
    the architecture's columns joined. Raises FileNotFoundError where the study has no
    results yet."""
    folder = Path(folder)
    runs = pd.read_csv(folder / "runs.csv", dtype={"arch_id": str})
    jobs = json.loads((folder / "study.json").read_text())["jobs"]
    part = {j["job"]: j.get("part") for j in jobs}
    parts = [part.get(j) or r for j, r in zip(runs["job"], runs["recipe"], strict=True)]
    runs.insert(1, "part", parts)
    return runs.merge(load_archs(folder), on="arch_id", how="left", validate="many_to_one")


def load_frozen(folder: str | Path = STUDY_DIR) -> dict[str, Any] | None:
    """The prospective test's frozen rankings and draw (``prospective.json``), None before it is
    planned."""
    path = Path(folder) / FROZEN
    return json.loads(path.read_text()) if path.is_file() else None
