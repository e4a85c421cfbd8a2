"""``python -m nas.search --budget 0.16GFLOPs``: find the binary CNNs with the best gradient paths
at equal FLOPs, rank them, write the run's files and train the top candidates.

Each trial samples a structure from a search space, solves its width to the budget (only
candidates with FLOPs in [budget * (1 - tolerance), budget] exist; a structure that cannot get
there is recorded as infeasible with ``trial.set_constraint``), and scores it by its gradient paths
without training (docs/design.md section 5). An architecture already seen (same arch id) is never
scored twice: its trial reuses the first score. The pipeline, one module per step:
:mod:`pipeline.settings` -> :mod:`pipeline.start` -> :mod:`pipeline.loop` (sampling, with
:mod:`pipeline.evaluate` in a worker process and :mod:`pipeline.storage`) ->
:mod:`pipeline.ranking` -> :mod:`pipeline.write` -> :mod:`pipeline.training`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import optuna
import pandas as pd

from nas import cli
from nas.core.budget import format_flops, parse_budget
from nas.core.names import printable
from nas.core.scorers import (
    DEFAULT_SCORER,
    PAPER_SCORER,
    fitted_model,
    list_scorers,
    ranking_choice,
)
from pipeline.loop import Search
from pipeline.settings import DEFAULT_SAMPLER, SAMPLERS, Settings, SettingsError
from pipeline.start import new_run, resume_hint, resume_run
from pipeline.storage import StudyError
from pipeline.write import write_results
from results.report import draws_sentence
from results.run import REPORT, SETTINGS_BOUNDS, TRAINING_BOUNDS, out_of_bounds
from runners.datasets import DATASETS
from runners.options import PRECISIONS, TrainingOptions
from search_spaces import get_space, list_spaces

# The numeric flags: (flag, lowest, highest), a bound in a list excluded. Checked when the command
# line is read, whether or not the run trains, before any work.
_RANGES = (
    # the flags recorded in settings.json: the bounds its reader checks too
    *(
        ("--" + name.replace("_", "-"), *bounds)
        for name, bounds in SETTINGS_BOUNDS.items()
        if name != "budget"  # a budget string, parsed by nas.core.budget
    ),
    *(
        ("--" + name.replace("_", "-"), *TRAINING_BOUNDS[name])
        for name in ("epochs", "width_mult", "cpus_per_trial", "gpus_per_trial", "max_failures")
    ),
    ("--train-subset", 0, math.inf),  # 0: the whole train split (null in settings.json)
    ("--workers", 1, 1024),
)


def check_numbers(args) -> None:
    """Every numeric flag finite and in its range, or one line naming it."""
    for flag, low, high in _RANGES:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None:  # an optional flag not given
            continue
        if why := out_of_bounds((low, high), value):
            raise cli.UsageError(f"{flag} {why}")


def _training() -> ModuleType:
    """:mod:`pipeline.training`, loaded by a search that trains: it loads torch (through the
    datasets), whose OpenMP runtime, under ``OMP_PROC_BIND`` (as benchmarks pin threads), pins
    the process that loads it to one core; the search's workers and Ray's processes would
    inherit that one core, so the process gets its cores back."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    from pipeline import training  # noqa: PLC0415 - torch: only a search that trains loads it

    if cores is not None:
        os.sched_setaffinity(0, cores)
    return training


def _given_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The ``dest`` of every option written on the command line (abbreviations are off)."""
    given = set()
    for action in parser._actions:
        for option in action.option_strings:
            if any(a == option or a.startswith(option + "=") for a in argv):
                given.add(action.dest)
    return given


def _new_settings(args: argparse.Namespace) -> Settings:
    """The settings of a new run from its flags: the budget read, the space and the width floor
    checked (the run directory, the study's name and the training come later)."""
    if args.budget is None:
        raise cli.UsageError("give a compute budget, e.g. --budget 0.16GFLOPs")
    try:
        budget = parse_budget(args.budget)
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    if args.space != "all" and args.space not in list_spaces():
        raise cli.UsageError(
            f"unknown search space {args.space!r}; choose {', '.join(list_spaces())} or all"
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
        study_name=args.study_name or "",
        input_size=args.input_size,
        classes=args.classes,
        scorer=args.scorer,
        tie_break=ranking_choice()["tie_break"]["column"],
        tie_break_larger_first=ranking_choice()["tie_break"]["larger_first"],
        scorer_model=fitted_model(args.scorer),
        min_width=args.min_width,
    )
    for name in settings.spaces:
        space = get_space(name)
        if args.min_width is not None and args.min_width > space.width_bounds[1]:
            raise cli.UsageError(
                f"--min-width {args.min_width} is above the widest {space.width_label} of space "
                f"{name!r} ({space.width_bounds[1]}); give at most that"
            )
    return settings


# Fields of TrainingOptions that the command line sets under another name, or not at all (the
# recipe's own)
_FLAG_OF = {"top": "train_top"}
_NOT_FLAGS = ("batch_size", "lr", "eval_subset", "padding")


def _training_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The training flags, by the name of their field in the options' flat form."""
    return {
        name: getattr(args, _FLAG_OF.get(name, name))
        for name in TrainingOptions().to_dict()
        if name not in _NOT_FLAGS
    }


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of :class:`TrainingOptions`, with its defaults (by the flat form's names)."""
    d = SimpleNamespace(**TrainingOptions().to_dict())
    parser.add_argument(
        "--train-top",
        type=int,
        default=d.top,
        help=f"train the top K through Ray Tune (default {d.top}; 0: stop after ranking)",
    )
    parser.add_argument(
        "--dataset",
        default=d.dataset,
        help=f"training data (default {d.dataset}; "
        f"{', '.join(n for n in DATASETS if n != d.dataset)})",
    )
    parser.add_argument("--data-dir", help="where the dataset's files are")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument(
        "--width-mult",
        type=float,
        default=d.width_mult,
        help=f"proxy: every width times this (default {d.width_mult}; 1 for the searched widths)",
    )
    parser.add_argument(
        "--stem-stride",
        type=int,
        choices=(1, 2),
        default=d.stem_stride,
        help=f"proxy: stride of the small-image stem (default {d.stem_stride}: half resolution, "
        "1/4 the MACs)",
    )
    parser.add_argument(
        "--train-subset",
        type=int,
        default=d.train_subset,
        help=f"proxy: training images per epoch (default {d.train_subset}; 0 for the whole "
        "train split)",
    )
    parser.add_argument(
        "--augment",
        action="store_true",
        help="random crops and flips in training (off by default: the short proxy learns more "
        "without them; turn on for long runs)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help=f"training arithmetic (default {d.precision}: bf16 on a GPU or a CPU with bf16 "
        "instructions, else fp32; fp32 gives the same bits on any AVX-512 CPU: "
        "docs/reproducibility.md)",
    )
    parser.add_argument(
        "--baseline",
        default=d.baseline,
        help=f"a reference model trained beside the candidates (default {d.baseline}; none)",
    )
    parser.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial)
    parser.add_argument("--gpus-per-trial", type=float, default=d.gpus_per_trial)
    parser.add_argument(
        "--max-failures",
        type=int,
        default=d.max_failures,
        help="retries of a crashed trial, from its last checkpoint",
    )
    parser.add_argument("--ray-address", help="join this Ray cluster instead of a local one")
    parser.add_argument("--dashboard-port", type=cli.port, default=d.dashboard_port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m nas.search",
        description="Search binary CNNs with the best gradient paths under a FLOPs budget.",
    )
    parser.add_argument("--budget", help="FLOPs budget: 0.16GFLOPs, 160MFLOPs, 1.6e8")
    parser.add_argument("--space", default="all", help="resnet, densenet or all (default)")
    parser.add_argument(
        "--trials",
        type=int,
        default=1000,
        help="distinct candidates to find: new architectures in the band (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="candidates have FLOPs in [budget * (1 - T), budget] (default 0.05)",
    )
    parser.add_argument(
        "--scorer",
        default=DEFAULT_SCORER,
        choices=list_scorers(),
        help=f"ranking key (default {DEFAULT_SCORER}, chosen on the benchmark: docs/ranking.md; "
        f"the paper's: {PAPER_SCORER})",
    )
    parser.add_argument(
        "--min-width",
        type=int,
        help="the smallest base width (ResNets) or growth rate (DenseNets) a candidate may have "
        "(default: each space's floor, 32; the benchmark finds thinner ResNets train worse and "
        "thinner DenseNets no better: docs/validation.md)",
    )
    parser.add_argument("--top", type=int, default=10, help="specs written for the top K")
    add_training_flags(parser)
    parser.add_argument("--out", help="run directory (default results/runs/<run-id>)")
    parser.add_argument("--storage", help="Optuna storage URL (default SQLite in the run dir)")
    parser.add_argument(
        "--study-name",
        help="with --storage: join (or start) the shared study NAME, so that several searches, "
        "on one machine or many, gather their candidates in it (give each its own --seed and "
        "--out)",
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or finished run")
    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=DEFAULT_SAMPLER,
        help=f"how structures are drawn (default {DEFAULT_SAMPLER}; tpe and nsga2 are Optuna's "
        "model-based samplers, for objectives dearer than the key: docs/search.md, 'Speed')",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=cli.usable_cores(),
        help="processes that solve and score structures (default: the usable cores, "
        f"{cli.usable_cores()} here); the results do not depend on it",
    )
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--describe-space", metavar="NAME", help="print a space's parameters")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the run's own lines say what happens
    check_numbers(args)
    if args.describe_space:
        try:
            print(get_space(args.describe_space).describe())
        except KeyError as e:
            raise cli.UsageError(e.args[0]) from None
        return 0
    if args.study_name is not None and not args.storage and not args.resume:
        raise cli.UsageError(
            "--study-name joins a study shared by several searches: give --storage URL too "
            "(a PostgreSQL or MySQL database they all reach)"
        )
    try:
        if args.resume:
            given = {dest: getattr(args, dest) for dest in _given_flags(parser, argv)}
            settings, run_dir, _lock = resume_run(Path(args.resume), given)
        else:
            settings = _new_settings(args)
            if settings.train_top:
                training = _training()
                options = training.training_options(_training_flags(args), settings.spaces)
                settings = dataclasses.replace(settings, training=options)
            settings, run_dir, _lock = new_run(settings, args.out)
        cli.set_resume_hint(resume_hint(run_dir))  # from here on the run can be resumed
        search = Search(settings, run_dir, workers=args.workers)
    except (SettingsError, StudyError) as e:
        raise cli.UsageError(str(e)) from None
    print(f"run directory: {printable(str(run_dir))}", file=sys.stderr)
    started = time.perf_counter()
    search.run(progress=not args.no_progress)
    table = write_results(search, run_dir)
    seconds = time.perf_counter() - started
    _summary(settings, run_dir, table, search, seconds)
    if settings.train_top:
        return _training().train_top(settings, run_dir, table)
    return 0


def _summary(
    settings: Settings, run_dir: Path, table: pd.DataFrame, search: Search, seconds: float
) -> None:
    found = table[table["reference"] == ""]
    print(
        f"{len(found)} distinct candidates in the band "
        f"[{format_flops(settings.band[0])}, {format_flops(settings.band[1])}], {seconds:.1f} s; "
        + draws_sentence(search.counts_dict())
    )
    show = table.head(max(settings.top, 1))[
        [
            "rank",
            "arch_id",
            "space",
            "reference",
            "flops",
            "storage_mbit",
            "N_1st",
            "N_2nd",
            "N_3rd",
        ]
    ].copy()
    show["flops"] = (show["flops"] / 1e9).map("{:.4f}e9".format)
    for c in ("N_1st", "N_2nd", "N_3rd"):
        show[c] = (show[c] / 1e6).map("{:.3f} M".format)
    print(show.to_string(index=False))
    refs = table[table["reference"] != ""][["rank", "reference", "flops", "in_band"]]
    print(
        "references: "
        + ", ".join(
            f"{r.reference} #{r.rank}{'' if r.in_band else ' (outside the band)'}"
            for r in refs.itertuples()
        )
    )
    if not settings.train_top:  # else the last lines, once training has ended
        print(f"report: {run_dir / REPORT} (and report.html)")
    print(f"candidates: {run_dir / 'candidates.csv'}")
