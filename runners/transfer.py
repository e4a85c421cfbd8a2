"""The transfer study: does what the short proxy ranks first stay first when trained longer?

``python -m runners.transfer RUN_DIR [RUN_DIR ...]`` adds to the benchmark study (``results/
study``) the best fully trained candidate of each main-job run (``python -m nas.search --budget
0.16GFLOPs --seed S``; role ``winner``, named ``winner-s<S>``), and the ``transfer`` part's jobs
for them and for the fixed models beside them:

- the zoo models of :data:`results.transfer.ZOO_MODELS` (the baseline and the paper's IGP claims);
- for each search space, the seeded architectures (trained with three seeds on the short recipe
  and with +1 padding on it) at evenly spread depths, the deepest left out (its ten epochs cost
  5-10x another's): :func:`transfer_sample`.

Every model is trained with seeds 0 and 1 on two recipes that differ only in their length: the
short recipe with +1 padding (``short_one``: 2 epochs, as the search's proxy trains) and
``long10`` (10 epochs of the same images, 5x its cost). A job the padding part has already run is
not repeated. Run it again with another run directory to add that winner; ``python -m
runners.study --parts transfer`` trains the jobs, resumable, a batch at a time;
``python -m results.validation`` reports them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nas import cli
from nas.core.atomic import atomic_write_json, atomic_write_text
from nas.core.graph import lower, ops_arch_id
from nas.core.model_dir import best_model_dir
from nas.core.spec import ArchSpec
from results.run import CANDIDATES, SETTINGS, SPECS, RunRefused, lock_run_dir
from results.trained_benchmark import STUDY_DIR
from results.transfer import LONG, PART, PROXY, WINNER, ZOO_MODELS
from runners.study import ARCHS, STUDY, _job, arch_metrics, spanning

RECIPES = (PROXY, LONG)  # each with SEEDS
SEEDS = (0, 1)
PER_SPACE = 2  # sampled architectures per search space


def transfer_sample(archs: pd.DataFrame, jobs: list[dict[str, Any]]) -> list[str]:
    """The sampled architectures of the part: per space, of the architectures the ``seeds`` part
    trains, ``PER_SPACE`` at evenly spread ranks of depth among all but the deepest."""
    seeded = {j["arch_id"] for j in jobs if j["part"] == "seeds"}
    sample = archs[(archs["role"] == "sample") & archs["arch_id"].isin(seeded)]
    picked = []
    for _, space in sample.groupby("space", sort=True):
        space = space.sort_values(["depth", "arch_id"]).iloc[:-1].reset_index(drop=True)
        picked += [space["arch_id"][i] for i in sorted(spanning(list(space["depth"]), PER_SPACE))]
    return picked


def winner_row(run_dir: Path) -> dict[str, Any]:
    """The archs.csv row of a main-job run's best fully trained candidate, at the search's
    224 px and 1000 classes (its spec file in ``specs/``), named by the run's seed."""
    try:
        settings = json.loads((run_dir / SETTINGS).read_text())
        seed = int(settings["seed"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise cli.UsageError(f"{run_dir} is not a search run ({SETTINGS}: {e})") from None
    best = best_model_dir(run_dir)
    if best is None:
        raise cli.UsageError(f"{run_dir} holds no fully trained candidate: let its run finish")
    spec = ArchSpec.load(run_dir / SPECS / f"{best.name}.json")
    arch_id = ops_arch_id(lower(spec))
    found = pd.read_csv(run_dir / CANDIDATES, dtype={"arch_id": str})
    candidate = found[found["arch_id"] == arch_id].iloc[0]
    return {
        "name": f"{WINNER}-s{seed}",
        "space": candidate["space"],
        "role": WINNER,
        "structure": json.dumps(json.loads(candidate["structure"]), sort_keys=True),
        "width": int(candidate["width"]),
        "spec": spec.to_json(),
        "pool_size": None,
        "arch_id": arch_id,
        **arch_metrics(spec),
    }


def transfer_jobs(archs: pd.DataFrame, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The part's jobs not yet in ``jobs`` (the ones another part runs are not repeated): per
    recipe and seed, the winners first, then the zoo, then the sample (pairs of similar cost in
    a batch of two)."""
    name = dict(zip(archs["name"], archs["arch_id"], strict=True))
    winners = sorted(archs.loc[archs["role"] == WINNER, "name"])
    models = [name[n] for n in winners] + [name[n] for n in ZOO_MODELS if n in name]
    models += transfer_sample(archs, jobs)
    known = {j["job"] for j in jobs}
    new = [_job(recipe, seed, a, PART) for recipe in RECIPES for seed in SEEDS for a in models]
    return [j for j in new if j["job"] not in known]


def add_winners(folder: Path, run_dirs: Sequence[Path]) -> list[str]:
    """Add the winners of ``run_dirs`` and the part's new jobs to the study in ``folder``;
    returns the names of the winners added."""
    archs = pd.read_csv(folder / ARCHS, dtype={"arch_id": str})
    study = json.loads((folder / STUDY).read_text())
    added = []
    for run_dir in run_dirs:
        row = winner_row(run_dir)
        same = archs[archs["name"] == row["name"]]
        if len(same) and same["arch_id"].iloc[0] != row["arch_id"]:
            raise cli.UsageError(
                f"the study's {row['name']} is another network ({same['arch_id'].iloc[0]}) than "
                f"{run_dir}'s winner ({row['arch_id']}): a winner is added once"
            )
        if not len(same) and row["arch_id"] in set(archs["arch_id"]):
            raise cli.UsageError(
                f"{run_dir}'s winner {row['arch_id']} is already in the study under another name"
            )
        if not len(same):
            archs = pd.concat([archs, pd.DataFrame([row])], ignore_index=True)
            added.append(row["name"])
    jobs = study["jobs"] + transfer_jobs(archs, study["jobs"])
    atomic_write_text(folder / ARCHS, archs.to_csv(index=False))
    atomic_write_json(folder / STUDY, {**study, "jobs": jobs})
    return added


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m runners.transfer", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="main-job run directories")
    parser.add_argument("--study", default=str(STUDY_DIR), help="the study's folder")
    args = parser.parse_args(argv)
    folder = Path(args.study)
    if not (folder / STUDY).is_file():
        raise cli.UsageError(f"{folder} holds no study: run python -m runners.study first")
    try:
        lock = lock_run_dir(folder)
    except RunRefused as e:
        raise cli.UsageError(str(e)) from None
    try:
        added = add_winners(folder, args.runs)
        jobs = json.loads((folder / STUDY).read_text())["jobs"]
        n = sum(j["part"] == PART for j in jobs)
        print(
            f"{folder}: added {', '.join(added) or 'no winner'}; the {PART} part has {n} jobs; "
            f"train them with python -m runners.study --parts {PART}",
            flush=True,
        )
        return 0
    finally:
        os.close(lock)


if __name__ == "__main__":
    sys.exit(cli.run("runners.transfer", main))
