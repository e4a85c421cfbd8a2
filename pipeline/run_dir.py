"""A search's run directory: a new run claims one (:func:`new_run`), a killed or finished run is
continued in its own (:func:`resume_run`).

A run directory protects itself: one process at a time works on it (an exclusive lock held for
the whole run, training and report included), ``--out`` never writes into a directory that holds
something else, ``--resume`` refuses flags that contradict the run's settings (``--trials`` may
grow, to extend a run), and the study is found relative to the directory, so a moved or copied
run resumes into its own database. The layout is :mod:`results.run`'s.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nas import _cli
from nas._names import printable
from nas.atomic import atomic_write_json
from nas.budget import format_flops, parse_budget
from nas.scorers import fitted_model, ranking_choice
from pipeline.settings import Settings
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
from search_spaces import get_space, list_spaces


def _new_run_dir(args: argparse.Namespace, budget: float) -> Path:
    if args.out:
        return Path(args.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = RUNS_ROOT / f"{stamp}-{format_flops(budget)}-{args.space}-s{args.seed}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


# What --resume lets change: --trials may grow (the run goes on to the new count); the rest is the
# run's and must be left out or given as it was.
RESUME_MAY_CHANGE = ("trials", "no_progress", "workers")


def given_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The ``dest`` of every option written on the command line (abbreviations are off)."""
    given = set()
    for action in parser._actions:
        for option in action.option_strings:
            if any(a == option or a.startswith(option + "=") for a in argv):
                given.add(action.dest)
    return given


def _stored_value(stored: dict[str, Any], dest: str) -> tuple[bool, Any]:
    training = stored.get("training") or {}
    if dest in stored:
        return True, stored[dest]
    if dest in training:
        return True, training[dest]
    return False, None


def _check_resume_flags(
    args: argparse.Namespace, given: set[str], stored: dict[str, Any]
) -> dict[str, Any]:
    """Refuse flags that contradict the run's settings, naming the difference; returns the
    settings to resume with (``--trials`` may grow)."""
    for dest in sorted(given - {"resume", *RESUME_MAY_CHANGE}):
        flag = "--" + dest.replace("_", "-")
        value = getattr(args, dest)
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
            raise _cli.UsageError(
                f"{flag} cannot be given with --resume: the run keeps its own settings "
                f"(only {', '.join('--' + d.replace('_', '-') for d in RESUME_MAY_CHANGE)} "
                "may change)"
            )
        if not same:
            raise _cli.UsageError(
                f"--resume keeps the run's settings: {flag} {value} differs from the run's "
                f"{before if before not in (None, '') else 'default'} (only --trials may change, "
                "to extend the run; start a new run for other settings)"
            )
    if "trials" in given and args.trials != stored["trials"]:
        if args.trials < stored["trials"]:
            raise _cli.UsageError(
                f"--trials {args.trials} is fewer than the run's {stored['trials']}: a run can "
                "be extended, not shortened"
            )
        print(
            f"extending the run from {stored['trials']} to {args.trials} trials",
            file=sys.stderr,
        )
        return {**stored, "trials": args.trials}
    return stored


def resume_run(args: argparse.Namespace, given: set[str]) -> tuple[Settings, Path, int]:
    """The run of ``--resume RUN_DIR``, locked, with its settings (``--trials`` may have grown);
    every other flag given must agree with the run's."""
    run_dir = Path(args.resume)
    if not is_run_dir(run_dir):
        raise _cli.UsageError(
            f"{run_dir} is not a search run directory (no {SETTINGS} written by nas.search)"
        )
    try:
        lock = lock_run_dir(run_dir)
    except RunRefused as e:
        raise _cli.UsageError(str(e)) from None
    except OSError as e:
        raise _cli.UsageError(f"cannot lock the run directory {run_dir}: {e.strerror}") from None
    _cli.set_resume_hint(resume_hint(run_dir))
    try:
        stored = read_settings(run_dir)
        fields = {f for f in Settings.__dataclass_fields__}
        if stored.get("training") and "padding" not in stored["training"]:
            stored["training"]["padding"] = "zero"  # a run that names no padding trained so
        settings = Settings(**{k: v for k, v in stored.items() if k in fields})
        if settings.training:
            try:
                TrainingOptions(**settings.training)
            except (TypeError, ValueError) as e:
                raise RunFileError(
                    f"{run_dir / SETTINGS}: training {e}; restore it from a copy"
                ) from None
    except RunFileError as e:
        raise _cli.UsageError(str(e)) from None
    except (OSError, ValueError, TypeError, RecursionError) as e:
        raise _cli.UsageError(
            f"{run_dir / SETTINGS} cannot be read ({type(e).__name__}); restore it from a copy"
        ) from None
    database = run_dir / STUDY_DB
    if not settings.storage and not (database.is_file() and database.stat().st_size):
        what = "is empty" if database.is_file() else "is missing"
        raise _cli.UsageError(
            f"{database} {what}: the study of this run is not in it; restore it from a copy, "
            "or start a new run"
        )
    if settings.scorer_model is not None and settings.scorer_model != fitted_model(settings.scorer):
        raise _cli.UsageError(
            f"the run ranks by {settings.scorer} with the weights of its start, and "
            "nas/ranking_choice.json holds other weights now (refitted since): resume it from "
            "the commit it started at, or start a new run"
        )
    stored = {**asdict(settings), "_url": settings.study_url(run_dir)}
    updated = _check_resume_flags(args, given, stored)
    updated.pop("_url")
    if updated["trials"] != settings.trials:
        settings = Settings(**updated)
        atomic_write_json(run_dir / SETTINGS, asdict(settings), private=settings.has_secret)
    return settings, run_dir, lock


def check_budget(args: argparse.Namespace) -> float:
    """The budget and the space of a new run, checked: the budget in FLOPs."""
    if args.budget is None:
        raise _cli.UsageError("give a compute budget, e.g. --budget 0.16GFLOPs")
    try:
        budget = parse_budget(args.budget)
    except ValueError as e:
        raise _cli.UsageError(str(e)) from None
    if args.space != "all" and args.space not in list_spaces():
        raise _cli.UsageError(
            f"unknown search space {args.space!r}; choose {', '.join(list_spaces())} or all"
        )
    for name in [args.space] if args.space != "all" else list_spaces():
        space = get_space(name)
        if args.min_width is not None and args.min_width > space.width_bounds[1]:
            raise _cli.UsageError(
                f"--min-width {args.min_width} is above the widest {space.width_label} of space "
                f"{name!r} ({space.width_bounds[1]}); give at most that"
            )
    return budget


def resume_hint(run_dir: Path) -> str:
    """How an interrupted search goes on (printed after "interrupted: ")."""
    return f"resume with python -m nas.search --resume {printable(str(run_dir))}"


def new_run(
    args: argparse.Namespace, budget: float, training: dict[str, Any] | None
) -> tuple[Settings, Path, int]:
    """A new run: checks that candidates exist in the budget's band, then claims the run
    directory (its lock), creates the study and writes settings.json, in that order (a run
    directory always has its study)."""
    spaces = list_spaces() if args.space == "all" else [args.space]
    ranges = [get_space(n).flops_range(args.input_size, args.classes) for n in spaces]
    smallest, largest = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if budget < smallest:
        raise _cli.UsageError(
            f"the budget {format_flops(budget)} is below every candidate: the smallest feasible "
            f"is {format_flops(smallest)} ({smallest:.4g} FLOPs) in space {args.space!r}"
        )
    if budget * (1 - args.tolerance) > largest:
        raise _cli.UsageError(
            f"the budget {format_flops(budget)} is above every candidate: the largest is "
            f"{format_flops(largest)} in space {args.space!r}"
        )
    run_dir = _new_run_dir(args, budget)
    if is_run_dir(run_dir):
        raise _cli.UsageError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose --out"
        )
    if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
        raise _cli.UsageError(
            f"--out {run_dir} is a directory that holds other files; give a new or empty directory"
        )
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_run_dir(run_dir)
    except RunRefused as e:
        raise _cli.UsageError(str(e)) from None
    except OSError as e:
        raise _cli.UsageError(
            f"cannot write the output directory {run_dir}: {e.strerror}"
        ) from None
    if is_run_dir(run_dir):  # another process made it a run between our check and the lock
        raise _cli.UsageError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose --out"
        )
    settings = Settings(
        budget=budget,
        budget_text=args.budget,
        space=args.space,
        trials=args.trials,
        seed=args.seed,
        tolerance=args.tolerance,
        top=args.top,
        train_top=args.train_top,
        sampler=args.sampler,
        storage=args.storage or "",
        study_name=args.study_name or run_dir.resolve().name,
        run_tag=run_dir.resolve().name if args.study_name else "",
        input_size=args.input_size,
        classes=args.classes,
        scorer=args.scorer,
        tie_break=ranking_choice()["tie_break"]["column"],
        tie_break_larger_first=ranking_choice()["tie_break"]["larger_first"],
        scorer_model=fitted_model(args.scorer),
        min_width=args.min_width,
        training=training,
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
    _cli.set_resume_hint(resume_hint(run_dir))  # from here on the run can be resumed
    return settings, run_dir, lock
