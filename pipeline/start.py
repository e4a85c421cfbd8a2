"""Starting a search: a new run claims its directory (:func:`new_run`), a killed or finished run
is continued in its own (:func:`resume_run`). The run directory itself -- its layout, its lock,
its safety checks and the validation of its files -- is :mod:`results.run`.

A new run checks that candidates exist in the band, claims the directory (``--out`` never writes
into a directory that holds something else), creates the study and writes settings.json, and
holds the run's lock for the whole run, training and report included; ``--resume`` refuses
flags that contradict the run's settings (``--trials`` may grow, to extend a run), and the study
is found relative to the directory, so a moved or copied run resumes into its own database.

It takes :class:`Settings` (and, to resume, the flags given), never the command line, and says
what is wrong with :class:`SettingsError`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nas.core.atomic import atomic_write_json
from nas.core.budget import format_flops, parse_budget
from nas.core.names import printable
from nas.core.scorers import fitted_model
from pipeline.settings import Settings, SettingsError
from pipeline.storage import StudyError, open_study, tagged
from results.run import (
    LOCK,
    RUNS_ROOT,
    SETTINGS,
    STUDY_DB,
    RunFileError,
    RunRefused,
    is_run_dir,
    lock_run_dir,
    read_settings,
)
from runners.options import TrainingOptions
from search_spaces import get_space


def _new_run_dir(out: str | None, settings: Settings) -> Path:
    if out:
        return Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = RUNS_ROOT / f"{stamp}-{format_flops(settings.budget)}-{settings.space}-s{settings.seed}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


# What --resume lets change: --trials may grow (the run goes on to the new count); the rest is the
# run's and must be left out or given as it was.
RESUME_MAY_CHANGE = ("trials", "no_progress", "workers")


def _stored_value(stored: dict[str, Any], dest: str) -> tuple[bool, Any]:
    training = stored.get("training") or {}
    if dest in stored:
        return True, stored[dest]
    if dest in training:
        return True, training[dest]
    return False, None


def _check_resume_flags(given: Mapping[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """Refuse flags that contradict the run's settings, naming the difference; returns the
    settings to resume with (``--trials`` may grow)."""
    for dest in sorted(set(given) - {"resume", *RESUME_MAY_CHANGE}):
        flag = "--" + dest.replace("_", "-")
        value = given[dest]
        known, before = _stored_value(stored, dest)
        if dest == "budget":
            try:
                same = parse_budget(value) == stored["budget"]
            except ValueError:
                same = False
            before = stored["budget_text"]
        elif dest == "train_subset":
            same = (value or None) == before
        elif dest == "baseline":
            same = (value if value != "none" else "") == before
        elif dest == "storage":
            same = value == before or (not before and value == stored.get("_url"))
        else:
            same = known and value == before
        if not known:
            raise SettingsError(
                f"{flag} cannot be given with --resume: the run keeps its own settings "
                f"(only {', '.join('--' + d.replace('_', '-') for d in RESUME_MAY_CHANGE)} "
                "may change)"
            )
        if not same:
            raise SettingsError(
                f"--resume keeps the run's settings: {flag} {value} differs from the run's "
                f"{before if before not in (None, '') else 'default'} (only --trials may change, "
                "to extend the run; start a new run for other settings)"
            )
    trials = given.get("trials", stored["trials"])
    if trials != stored["trials"]:
        if trials < stored["trials"]:
            raise SettingsError(
                f"--trials {trials} is fewer than the run's {stored['trials']}: a run can "
                "be extended, not shortened"
            )
        print(f"extending the run from {stored['trials']} to {trials} trials", file=sys.stderr)
        return {**stored, "trials": trials}
    return stored


def resume_run(run_dir: Path, given: Mapping[str, Any]) -> tuple[Settings, Path, int]:
    """The run of ``--resume RUN_DIR``, locked, with its settings (``--trials`` may have grown);
    every other flag ``given`` (by option dest, as written on the command line) must agree with
    the run's."""
    if not is_run_dir(run_dir):
        raise SettingsError(
            f"{run_dir} is not a search run directory (no {SETTINGS} written by nas.search)"
        )
    try:
        lock = lock_run_dir(run_dir)
    except RunRefused as e:
        raise SettingsError(str(e)) from None
    except OSError as e:
        raise SettingsError(f"cannot lock the run directory {run_dir}: {e.strerror}") from None
    try:
        stored = read_settings(run_dir)
        fields = {f for f in Settings.__dataclass_fields__}
        if stored.get("training") and "padding" not in stored["training"]:
            stored["training"]["padding"] = "zero"  # a run that names no padding trained so
        settings = Settings(**{k: v for k, v in stored.items() if k in fields})
        if settings.training:
            try:
                TrainingOptions.from_dict(settings.training)
            except (TypeError, ValueError) as e:
                raise RunFileError(
                    f"{run_dir / SETTINGS}: training {e}; restore it from a copy"
                ) from None
    except RunFileError as e:
        raise SettingsError(str(e)) from None
    except (OSError, ValueError, TypeError, RecursionError) as e:
        raise SettingsError(
            f"{run_dir / SETTINGS} cannot be read ({type(e).__name__}); restore it from a copy"
        ) from None
    database = run_dir / STUDY_DB
    if not settings.storage and not (database.is_file() and database.stat().st_size):
        what = "is empty" if database.is_file() else "is missing"
        raise SettingsError(
            f"{database} {what}: the study of this run is not in it; restore it from a copy, "
            "or start a new run"
        )
    if settings.scorer_model is not None and settings.scorer_model != fitted_model(settings.scorer):
        raise SettingsError(
            f"the run ranks by {settings.scorer} with the weights of its start, and "
            "nas/core/ranking_choice.json holds other weights now (refitted since): resume it from "
            "the commit it started at, or start a new run"
        )
    stored = {**asdict(settings), "_url": settings.study_url(run_dir)}
    updated = _check_resume_flags(given, stored)
    updated.pop("_url")
    if updated["trials"] != settings.trials:
        settings = Settings(**updated)
        atomic_write_json(run_dir / SETTINGS, asdict(settings), private=settings.has_secret)
    return settings, run_dir, lock


def resume_hint(run_dir: Path) -> str:
    """How an interrupted search goes on (printed after "interrupted: ")."""
    return f"resume with python -m nas.search --resume {printable(str(run_dir))}"


def new_run(settings: Settings, out: str | None) -> tuple[Settings, Path, int]:
    """A new run of ``settings`` in ``out`` (default: a new folder under results/runs): checks
    that candidates exist in the budget's band, then claims the run directory (its lock), creates
    the study and writes settings.json, in that order (a run directory always has its study).
    A ``study_name`` in ``settings`` joins that shared study; without one the study is named
    after the run directory. Returns the settings as written."""
    budget, space = settings.budget, settings.space
    ranges = [
        get_space(n).flops_range(settings.input_size, settings.classes) for n in settings.spaces
    ]
    smallest, largest = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if budget < smallest:
        raise SettingsError(
            f"the budget {format_flops(budget)} is below every candidate: the smallest feasible "
            f"is {format_flops(smallest)} ({smallest:.4g} FLOPs) in space {space!r}"
        )
    if settings.band[0] > largest:
        raise SettingsError(
            f"the budget {format_flops(budget)} is above every candidate: the largest is "
            f"{format_flops(largest)} in space {space!r}"
        )
    run_dir = _new_run_dir(out, settings)
    if is_run_dir(run_dir):
        raise SettingsError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose --out"
        )
    if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
        raise SettingsError(
            f"--out {run_dir} is a directory that holds other files; give a new or empty directory"
        )
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_run_dir(run_dir)
    except RunRefused as e:
        raise SettingsError(str(e)) from None
    except OSError as e:
        raise SettingsError(f"cannot write the output directory {run_dir}: {e.strerror}") from None
    if is_run_dir(run_dir):  # another process made it a run between our check and the lock
        raise SettingsError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose --out"
        )
    name = run_dir.resolve().name
    settings = dataclasses.replace(
        settings,
        study_name=settings.study_name or name,
        run_tag=name if settings.study_name else "",
    )
    try:
        study = open_study(
            settings.study_url(run_dir),
            settings.study_name,
            settings.directions,
            where=settings.study_where(run_dir),
            fix=settings.study_fix,
            join=settings.identity() if settings.run_tag else None,
        )
        if settings.run_tag and tagged(study, settings.run_tag):
            raise StudyError(
                f"a run named {settings.run_tag!r} has joined the study {settings.study_name!r} "
                "already; give this run another --out name (or continue that one with --resume)"
            )
    except StudyError:  # leave the directory as it was found
        for name in (STUDY_DB, f"{STUDY_DB}-wal", f"{STUDY_DB}-shm", LOCK):
            if not settings.storage or name == LOCK:
                (run_dir / name).unlink(missing_ok=True)
        if created:
            run_dir.rmdir()
        raise
    atomic_write_json(run_dir / SETTINGS, asdict(settings), private=settings.has_secret)
    return settings, run_dir, lock
