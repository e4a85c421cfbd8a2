"""Dispatch to training: the training flags checked before the search starts (as
:class:`runners.options.TrainingOptions`), and the training of the top candidates through Ray Tune
once the search has ranked them (docs/design.md section 7).

This module imports torch (through the datasets); the search imports it only when it trains."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from nas.core.atomic import atomic_write_text
from nas.core.names import printable
from pipeline.ranking import training_pool
from pipeline.settings import Settings, SettingsError
from pipeline.storage import open_storage
from results.report import build_report, closing_lines, model_name, one_row_per_arch, read_curves
from results.run import CANDIDATES, REPORT, spec_files
from runners.backend import run_training
from runners.datasets import DATASETS, DataError, DataNotFound, load_dataset
from runners.options import TrainingOptions
from search_spaces import get_space

DEFAULTS = TrainingOptions()


def training_options(given: Mapping[str, Any], spaces: list[str]) -> dict[str, Any]:
    """The training options ``given`` (fields of :class:`TrainingOptions`; the rest keep their
    defaults) as a dict for settings.json, checked before the search starts: the dataset must
    load, the baseline must be a reference model of ``spaces`` (``none``: no baseline; the
    default one is dropped where the spaces lack it)."""
    if given["dataset"] not in DATASETS:
        raise SettingsError(f"unknown dataset {given['dataset']!r}; known: {', '.join(DATASETS)}")
    try:
        load_dataset(given["dataset"], given.get("data_dir"))
    except (DataNotFound, DataError) as e:
        raise SettingsError(str(e)) from None
    references = sorted({r for n in spaces for r in get_space(n).references()})
    baseline = given.get("baseline", DEFAULTS.baseline)
    if baseline not in (*references, "none"):
        if baseline != DEFAULTS.baseline:
            raise SettingsError(
                f"--baseline {baseline!r} is not a reference model of the searched space; "
                f"choose one of {', '.join(references)} or none"
            )
        baseline = "none"
    options = {**given, "baseline": "" if baseline == "none" else baseline}
    options["train_subset"] = options.get("train_subset") or None  # 0: the whole train split
    return TrainingOptions.from_dict(options).to_dict()


def record_in_optuna(
    settings: Settings, run_dir: Path, table: pd.DataFrame, trained: pd.DataFrame
) -> str:
    """Write what training measured to the run's Optuna storage, for Optuna's own tools
    (``optuna-dashboard``): a study ``<run>-training`` with one trial per trained model (its
    final test top-1 as the value, each epoch's as intermediate values, its arch id, name, rank,
    status and metrics as user attributes; stopped early by successive halving: pruned; failed:
    fail), and on the search's study a user attribute ``trained_top1`` (arch id -> top-1). A
    resumed run adds only the models not recorded yet. Returns the training study's name."""
    storage = open_storage(settings.study_url(run_dir))
    name = f"{settings.study_name}-training"
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True
    )
    recorded = {t.user_attrs.get("arch_id") for t in study.get_trials(deepcopy=False)}
    curves = read_curves(run_dir)
    rows = one_row_per_arch(table).set_index("arch_id")
    state = {
        "trained": optuna.trial.TrialState.COMPLETE,
        "stopped": optuna.trial.TrialState.PRUNED,
        "failed": optuna.trial.TrialState.FAIL,
    }
    for row in trained.itertuples():
        if row.arch_id in recorded or row.status not in state:
            continue
        info = rows.loc[row.arch_id]
        curve = curves[curves["arch_id"] == row.arch_id]
        attrs = {
            "arch_id": row.arch_id,
            "model": model_name(info["rank"], info["reference"] or ""),
            "rank": int(info["rank"]),
            "space": info["space"],
            "status": row.status,
            "epochs": None if pd.isna(row.epoch) else int(row.epoch),
            **{c: _plain(info[c]) for c in COLUMNS_SHOWN},
        }
        if row.status == "failed":
            attrs["error"] = str(row.error)
        started, ended = _when(row)
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=0,  # numbered by the study
                trial_id=0,
                state=state[row.status],
                value=None if row.status != "trained" else float(row.top1),
                values=None,
                datetime_start=started,
                datetime_complete=ended,
                params={},
                distributions={},
                user_attrs=attrs,
                system_attrs={},
                intermediate_values={
                    int(e): float(t) for e, t in zip(curve["epoch"], curve["top1"], strict=True)
                },
            )
        )
    search = optuna.load_study(study_name=settings.study_name, storage=storage)
    search.set_user_attr(
        "trained_top1",
        {
            r.arch_id: float(r.top1)
            for r in trained.itertuples()
            if r.status != "failed" and pd.notna(r.top1)
        },
    )
    return name


def _when(row) -> tuple[datetime, datetime]:
    """When a trained model's trial began and ended (trained.csv's Unix seconds; now for a row
    of an older run without them), so that Optuna's timeline shows the training."""
    started, ended = getattr(row, "started", None), getattr(row, "ended", None)
    if started is None or pd.isna(started) or ended is None or pd.isna(ended):
        now = datetime.now()
        return now, now
    return datetime.fromtimestamp(started), datetime.fromtimestamp(ended)


# what a training trial shows in optuna-dashboard beside its name, status and epochs (the
# dashboard lists a few attributes: the rest of a candidate is in the search study and
# candidates.csv)
COLUMNS_SHOWN = ("key", "depth", "width", "storage_mbit")


def _plain(value: Any) -> Any:
    """A table value as JSON for Optuna (numpy numbers to Python, NaN to None)."""
    if isinstance(value, str) or value is None:
        return value
    try:
        return None if pd.isna(value) else value.item() if hasattr(value, "item") else value
    except (TypeError, ValueError):
        return str(value)


def train_top(settings: Settings, run_dir: Path, table: pd.DataFrame) -> int:
    """Train the top candidates through Ray Tune and join their results to candidates.csv; returns
    the exit status: 1 when every trained candidate failed (the last line says why)."""
    options = TrainingOptions.from_dict(settings.training)
    recipe, data = options.recipe, options.data
    top = training_pool(table, options.top)
    specs = spec_files(run_dir)
    candidates = [(aid, specs[aid]) for aid in top["arch_id"]]
    baseline = table[(table["reference"] == options.baseline) & (table["reference"] != "")]
    if len(baseline):  # first: it trains every epoch, so it starts at once beside the pool
        candidates.insert(0, (baseline["arch_id"].iloc[0], specs[baseline["arch_id"].iloc[0]]))
    print(
        f"training a pool of {len(top)} candidates (the best of each space in turn, by "
        f"{settings.scorer}; one epoch each, then the best third of them on to {recipe.epochs})"
        + (f" and {options.baseline} (the baseline, every epoch)" if len(baseline) else "")
        + f" on {data.dataset} "
        f"({recipe.epochs} epochs, width x{data.width_mult}, stem stride "
        f"{data.stem_stride}, {'with' if recipe.augment else 'no'} augmentation, "
        f"{recipe.train_subset or 'all'} training images per epoch)",
        file=sys.stderr,
    )
    rows = one_row_per_arch(table).set_index("arch_id")
    trained = run_training(
        run_dir,
        candidates,
        options,
        baseline=baseline["arch_id"].iloc[0] if len(baseline) else "",
        names={a: model_name(rows.at[a, "rank"], rows.at[a, "reference"]) for a, _ in candidates},
    )
    joined = table.drop(columns=[c for c in table.columns if c.startswith("trained_")])
    extra = trained.rename(columns={c: f"trained_{c}" for c in trained.columns if c != "arch_id"})
    joined = joined.merge(extra, on="arch_id", how="left")
    atomic_write_text(run_dir / CANDIDATES, joined.to_csv(index=False))
    record_in_optuna(settings, run_dir, joined, trained)
    build_report(run_dir)
    print("\n".join(closing_lines(run_dir)))
    ours = trained[trained["arch_id"].isin(set(top["arch_id"]))]
    if len(ours) and (ours["status"] == "failed").all():
        print(
            f"nas.search: error: every trained candidate failed ({len(ours)} of {len(ours)}; the "
            f"first: {printable(str(ours['error'].iloc[0]))}); the ranking is in "
            f"{run_dir / REPORT}; fix the cause and continue with --resume {run_dir}",
            file=sys.stderr,
        )
        return 1
    return 0
