"""The training seam: what the search, the final training and the study ask of a training
backend, and where the backends are found.

A backend trains :class:`Candidate` networks with :class:`runners.options.TrainingOptions` and
returns what they did: one row per candidate (``arch_id``, ``status`` -- trained, stopped by
successive halving, failed or not started --, ``epoch``, ``top1``, ``top5``, the losses, images
per second, ``started``/``ended``: :data:`results.run.TRAINED_COLUMNS`) and their learning
curves (one row per candidate and epoch: :data:`results.run.CURVE_COLUMNS`). With ``stop_early``
it runs synchronous successive halving over the candidates
(:func:`runners.halving.promoted`), the ``baseline`` exempt; it keeps its own state under a
storage folder, so that a killed run restores its finished trials. ``session`` holds the compute
(a local Ray, a cluster) for the duration of a block.

The one backend is Ray Tune (:class:`runners.tune.RayTune`); another registers in
:data:`BACKENDS` by module and class name, and is loaded only when asked for.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from nas.core.atomic import atomic_write_text
from nas.core.model_dir import MODELS
from results.run import CURVE_COLUMNS, CURVES, RAY_HOME, TRAINED, TRAINED_COLUMNS, TUNE
from runners.options import TrainingOptions

# A backend's name -> "module:Class", imported when the backend is first used (Ray loads
# seconds of modules, and must not be imported before its loopback environment is set)
BACKENDS: dict[str, str] = {"ray": "runners.tune:RayTune"}
DEFAULT_BACKEND = "ray"


@dataclass(frozen=True)
class Candidate:
    """A network to train: its arch id, its spec (JSON text, so that a moved run directory
    trains the same networks), what the progress lines and the dashboards call it, and the
    folder its trained network is exported to (None: not exported)."""

    arch_id: str
    spec: str
    name: str = ""
    export: Path | None = None


class TrainingBackend(Protocol):
    def session(
        self, home: Path, options: TrainingOptions
    ) -> contextlib.AbstractContextManager[str | None]:
        """The compute, for the duration of the block; yields a dashboard URL, if any. ``home``:
        a folder the backend may keep its session's files in."""
        ...

    def train(
        self,
        storage: Path,
        candidates: Sequence[Candidate],
        options: TrainingOptions,
        *,
        stop_early: bool = True,
        baseline: str = "",
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Train ``candidates`` (in a session); the rows and the learning curves."""
        ...


def get_backend(name: str = DEFAULT_BACKEND) -> TrainingBackend:
    if name not in BACKENDS:
        raise KeyError(f"unknown training backend {name!r}; known: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def run_training(
    run_dir: Path,
    candidates: list[tuple[str, Path]],
    options: TrainingOptions,
    baseline: str = "",
    names: dict[str, str] | None = None,
    backend: TrainingBackend | None = None,
) -> pd.DataFrame:
    """Train a search run's ``candidates`` ((arch id, spec file) pairs) in a session of their
    own; returns one row per candidate and writes ``trained.csv`` and ``curves.csv`` in
    ``run_dir``, and each trained network in ``models/<its spec file's stem>/``. ``baseline``:
    the arch id that successive halving never stops; ``names``: what each is called (by arch
    id; default ``candidate-<arch id>``)."""
    backend = backend or get_backend()
    with backend.session(run_dir / RAY_HOME, options):
        trained, curves = backend.train(
            run_dir / TUNE,
            [
                Candidate(
                    aid,
                    Path(spec).read_text(),
                    (names or {}).get(aid, ""),
                    run_dir / MODELS / Path(spec).stem,
                )
                for aid, spec in candidates
            ],
            options,
            baseline=baseline,
        )
    return write_tables(run_dir, trained, curves)


def write_tables(folder: Path, trained: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """``trained.csv`` and ``curves.csv`` in ``folder``, their columns those of the run
    directory's schema (:data:`results.run.TRAINED_COLUMNS`, then any a backend adds; a column
    a backend left out is empty); returns the trained table as written."""
    extra = [c for c in trained.columns if c not in TRAINED_COLUMNS]
    trained = trained.reindex(columns=[*TRAINED_COLUMNS, *extra])
    atomic_write_text(folder / TRAINED, trained.to_csv(index=False))
    atomic_write_text(
        folder / CURVES, curves.reindex(columns=list(CURVE_COLUMNS)).to_csv(index=False)
    )
    return trained
