"""What a search run was asked to do: :class:`Settings`, written to the run's ``settings.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from nas.core.budget import band as budget_band
from nas.core.scorers import PAPER_SCORER
from results.run import STUDY_DB, study_url
from search_spaces import list_spaces

# stream samplers (pipeline.draws) first, then Optuna's model-based ones (pipeline.loop)
SAMPLERS = ("random", "qmc", "exhaustive", "tpe", "nsga2")
DEFAULT_SAMPLER = "qmc"


class SettingsError(ValueError):
    """Settings a run cannot start or go on with, in one sentence (the command line prints it as
    a usage error)."""


@dataclass(frozen=True)
class Settings:
    """What a run was asked to do (``settings.json``)."""

    budget: float
    budget_text: str
    space: str
    trials: int
    seed: int
    tolerance: float
    top: int
    train_top: int
    sampler: str
    storage: str  # an Optuna storage URL given by --storage; "" for study.db in the run directory
    study_name: str
    input_size: int
    classes: int
    scorer: str = PAPER_SCORER  # what a run that names no scorer ranked by
    # Equal keys are ordered by this column of the candidates table (nas/core/ranking_choice.json at
    # the run's start; a run written before it existed ordered them by storage, smaller first).
    tie_break: str = "storage_mbit"
    tie_break_larger_first: bool = False
    # The fitted scorer's weights at the run's start (nas.core.scorers.fitted_model); None for a
    # scorer without weights, or a run written before they were recorded.
    scorer_model: dict[str, Any] | None = None
    min_width: int | None = None  # the smallest base width or growth rate (None: the space's)
    # A run that joined a shared study (--study-name with --storage) tags its trials with this
    # name (its run directory's, when it started); "" when the study is the run's alone.
    run_tag: str = ""
    training: dict[str, Any] | None = None  # runners.options.TrainingOptions, when train_top > 0
    kind: str = "nas.search"

    @property
    def spaces(self) -> list[str]:
        return list_spaces() if self.space == "all" else [self.space]

    @property
    def band(self) -> tuple[float, float]:
        return budget_band(self.budget, self.tolerance)

    @property
    def directions(self) -> list[str]:
        return ["minimize", "minimize"] if self.sampler == "nsga2" else ["minimize"]

    def study_url(self, run_dir: Path) -> str:
        return study_url(self.storage, run_dir)

    def identity(self) -> dict[str, Any]:
        """What runs sharing one study must agree on: their candidates are then comparable."""
        keys = ("budget", "tolerance", "space", "input_size", "classes", "scorer", "min_width")
        if self.scorer_model is not None:  # the weights too: one ranking for the whole study
            keys += ("scorer_model",)
        return {k: getattr(self, k) for k in keys} | {"directions": self.directions}

    @property
    def has_secret(self) -> bool:
        """Whether the --storage URL holds a password (settings.json is then private)."""
        try:
            return bool(self.storage) and make_url(self.storage).password is not None
        except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: keep it private
            return bool(self.storage)

    @property
    def study_fix(self) -> str:
        """What to do when the study's database cannot be opened."""
        if not self.storage:
            return "restore it from a copy, or start a new run"
        return (
            "check --storage: an SQLAlchemy URL (postgresql://user:password@host/db) of a "
            "reachable database whose driver is installed"
        )

    def study_where(self, run_dir: Path) -> str:
        """The study's database as messages name it (never a password of a --storage URL)."""
        if not self.storage:
            return str(run_dir / STUDY_DB)
        try:
            return make_url(self.storage).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: name the scheme alone
            return self.storage.split(":", 1)[0] + " storage"
