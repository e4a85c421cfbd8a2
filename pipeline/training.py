"""Dispatch to training: the training flags checked before the search starts (as
:class:`runners.options.TrainingOptions`), and the training of the top candidates through Ray Tune
once the search has ranked them (docs/design.md section 7).

This module imports torch (through the datasets); the search imports it only when it trains."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from nas import _cli
from nas._names import printable
from nas.atomic import atomic_write_text
from pipeline.settings import Settings
from results.report import build_report
from results.run import CANDIDATES
from runners.datasets import DATASETS, DataError, DataNotFound, load_dataset
from runners.options import TrainingOptions
from runners.tune import run_training
from search_spaces import get_space, list_spaces

DEFAULTS = TrainingOptions()
# Fields of TrainingOptions that the command line sets under another name or not at all.
_FLAG_OF = {"top": "train_top"}
_FIXED = ("batch_size", "lr", "eval_subset", "precision")  # the recipe's, not flags


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The training flags as :class:`TrainingOptions` (a dict, for settings.json), checked before
    the search starts: the dataset must load, the baseline must be a reference model."""
    if args.dataset not in DATASETS:
        raise _cli.UsageError(f"unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
    try:
        load_dataset(args.dataset, args.data_dir)
    except (DataNotFound, DataError) as e:
        raise _cli.UsageError(str(e)) from None
    spaces = list_spaces() if args.space == "all" else [args.space]
    references = sorted({r for n in spaces for r in get_space(n).references()})
    baseline = args.baseline
    if baseline not in (*references, "none"):
        if baseline != DEFAULTS.baseline:  # the default is skipped where the space lacks it
            raise _cli.UsageError(
                f"--baseline {baseline!r} is not a reference model of the searched space; "
                f"choose one of {', '.join(references)} or none"
            )
        baseline = "none"
    given = {
        f.name: getattr(args, _FLAG_OF.get(f.name, f.name))
        for f in dataclasses.fields(TrainingOptions)
        if f.name not in _FIXED
    }
    given["train_subset"] = given["train_subset"] or None  # 0: the whole train split
    given["baseline"] = "" if baseline == "none" else baseline
    return dataclasses.asdict(TrainingOptions(**given))


def train_top(settings: Settings, run_dir: Path, table: pd.DataFrame) -> int:
    """Train the top candidates through Ray Tune and join their results to candidates.csv; returns
    the exit status: 1 when every trained candidate failed (the last line says why)."""
    options = TrainingOptions(**settings.training)
    top = table[table["reference"] == ""].head(options.top)
    specs = {p.stem.rsplit("-", 1)[1]: p for p in (run_dir / "specs").glob("*.json")}
    candidates = [(aid, specs[aid]) for aid in top["arch_id"]]
    baseline = table[(table["reference"] == options.baseline) & (table["reference"] != "")]
    if len(baseline):
        candidates.append((baseline["arch_id"].iloc[0], specs[baseline["arch_id"].iloc[0]]))
    print(
        f"training the top {len(top)}"
        + (f" and {options.baseline} (the baseline)" if len(baseline) else "")
        + f" on {options.dataset} "
        f"({options.epochs} epochs, width x{options.width_mult}, stem stride "
        f"{options.stem_stride}, {'with' if options.augment else 'no'} augmentation, "
        f"{options.train_subset or 'all'} training images per epoch)",
        file=sys.stderr,
    )
    trained = run_training(run_dir, candidates, options)
    joined = table.drop(columns=[c for c in table.columns if c.startswith("trained_")])
    extra = trained.rename(columns={c: f"trained_{c}" for c in trained.columns if c != "arch_id"})
    joined = joined.merge(extra, on="arch_id", how="left")
    atomic_write_text(run_dir / CANDIDATES, joined.to_csv(index=False))
    build_report(run_dir)
    for row in trained.itertuples():
        if row.status == "failed":
            result = f"failed: {printable(str(row.error))}"
        else:
            early = " (stopped early by ASHA)" if row.status == "stopped" else ""
            result = f"test top-1 {row.top1:.4f} after {row.epoch:g} epochs{early}"
        print(f"  {row.arch_id}: {result}")
    ours = trained[trained["arch_id"].isin(set(top["arch_id"]))]
    if len(ours) and (ours["status"] == "failed").all():
        print(
            f"nas.search: error: every trained candidate failed ({len(ours)} of {len(ours)}; the "
            f"first: {printable(str(ours['error'].iloc[0]))}); the ranking is in "
            f"{run_dir / 'report.md'}; fix the cause and continue with --resume {run_dir}",
            file=sys.stderr,
        )
        return 1
    return 0

