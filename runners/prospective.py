"""The prospective test of the search's ranking: freeze it, then draw architectures nobody has seen.

``python -m runners.prospective freeze`` writes ``results/study/prospective.json``: every fitted
ranking of ``nas/core/ranking_choice.json`` (models, the proxies' directions), their content hash
and
the rule of the draw (a search seed, the sample sizes). Commit it. ``python -m runners.prospective
draw`` then checks that the frozen file and the choice are committed and unchanged, runs a default
search (``python -m nas.search --budget 0.16GFLOPs --train-top 0 --trials N --seed S``: the
search's own sampler, spaces and width floor), and from its in-band candidates that no earlier part
of the study holds draws the sample: the candidates sorted by the frozen default's key, cut into
``sample`` equal-count strata, one drawn at random from each (so the sample's mix of families and
shortcut patterns is the search's). It appends the sample to the study (``archs.csv``, role
``prospective``) with its jobs (``study.json``, part ``prospective``: seed 0 for all, seeds 1 and
2 for ``seeded`` of them spanning the key), and long-recipe jobs for ``long_densenets`` more of the
benchmark's DenseNets (part ``long``, spanning the paper's key as the study's long part does).
``python -m runners.study`` then trains them like every other job, resumable, a batch at a time.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas import cli
from nas.core.atomic import atomic_write_json, atomic_write_text
from nas.core.graph import lower, ops_arch_id
from nas.core.scorers import (
    CHOICE_FILE,
    DEFAULT_SCORER,
    features,
    measure,
    predicted_score,
    ranking_choice,
)
from nas.core.spec import ArchSpec
from results.ranking_choice import model_hash
from results.run import CANDIDATES, RunRefused, lock_run_dir
from results.trained_benchmark import FROZEN, STUDY_DIR
from runners.study import ARCHS, STUDY, WORK, _job, arch_metrics, spanning, strata_value
from search_spaces import get_space

ROOT = Path(__file__).resolve().parent.parent
RULE = {
    "seed": 29,  # the search's seed and the draw's
    "budget": "0.16GFLOPs",
    "trials": 1000,  # candidates of the default search (the pool)
    "sample": 48,  # architectures drawn, one per equal-count stratum of the frozen key
    "seeded": 12,  # of them, spanning the key, also trained with seeds 1 and 2
    "long_densenets": 6,  # benchmark DenseNets added to the long recipe
}


def freeze(folder: Path) -> dict[str, Any]:
    """The frozen rankings and the draw's rule, as ``prospective.json`` holds them."""
    choice = ranking_choice()
    fitted = {**choice["models"], **choice["proxy_signs"]}
    return {
        "default": choice["default"],
        "best_fitted": choice["best_fitted"],
        "fitted": fitted,
        "hash": model_hash(fitted),
        "seed_sd": choice["benchmark"]["seed_sd"],
        "rule": RULE,
    }


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _committed(paths: Sequence[Path]) -> str:
    """The commit that holds ``paths`` as they are now, or a usage error."""
    for p in paths:
        rel = str(p.resolve().relative_to(ROOT))
        if _git("status", "--porcelain", "--", rel) or not _git("ls-files", "--", rel):
            raise cli.UsageError(f"{rel} is not committed as it is: commit the freeze first")
    return _git("log", "-1", "--format=%h", "--", *(str(p.resolve()) for p in paths))


def draw(folder: Path, frozen: dict[str, Any]) -> dict[str, Any]:
    """Run the default search, draw the sample and add it and its jobs to the study."""
    rule = frozen["rule"]
    if (
        frozen["default"] != DEFAULT_SCORER
        or model_hash({**ranking_choice()["models"], **ranking_choice()["proxy_signs"]})
        != frozen["hash"]
    ):
        raise cli.UsageError("nas/core/ranking_choice.json is not the frozen choice: freeze again")
    out = folder / WORK / f"prospective-search-{rule['seed']}"
    command = (
        f"python -m nas.search --budget {rule['budget']} --train-top 0 "
        f"--trials {rule['trials']} --seed {rule['seed']}"
    )
    if not (out / CANDIDATES).is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "nas.search",
                *command.split()[3:],
                "--out",
                str(out),
                "--no-progress",
            ],
            check=True,
        )
    found = pd.read_csv(out / CANDIDATES, dtype={"arch_id": str})
    found = found[(found["reference"].isna() | (found["reference"] == "")) & found["in_band"]]
    archs = pd.read_csv(folder / ARCHS, dtype={"arch_id": str})
    known = set(archs["arch_id"])
    pool = found[~found["arch_id"].isin(known)].reset_index(drop=True)
    model = frozen["fitted"][frozen["default"]]
    specs, keys = [], []
    for row in pool.itertuples():
        spec = get_space(row.space).build(json.loads(row.structure), int(row.width), 224, 1000)
        ops = lower(spec)
        if ops_arch_id(ops) != row.arch_id:
            raise RuntimeError(f"candidate {row.arch_id} rebuilt as another network")
        specs.append(spec)
        keys.append(-predicted_score(model, features(measure(ops))))
    rng = random.Random(f"{rule['seed']}-prospective")
    order = np.argsort(keys, kind="stable")
    picked = [rng.choice(list(stratum)) for stratum in np.array_split(order, rule["sample"])]
    rows = []
    for j, i in enumerate(picked):
        c = pool.iloc[i]
        rows.append(
            {
                "name": f"prospective-{j:02d}",
                "space": c["space"],
                "role": "prospective",
                "structure": json.dumps(json.loads(c["structure"]), sort_keys=True),
                "width": int(c["width"]),
                "spec": specs[i].to_json(),
                "pool_size": len(pool),
                **arch_metrics(specs[i]),
            }
        )
    sample = pd.DataFrame(rows)
    seeded = [sample["arch_id"][k] for k in spanning([keys[i] for i in picked], rule["seeded"])]
    first = list(sample["arch_id"])
    rng.shuffle(first)  # a study stopped part-way has trained a random subsample
    study = json.loads((folder / STUDY).read_text())
    long_done = {j["arch_id"] for j in study["jobs"] if j["recipe"] == "long"}
    dense = archs[(archs["role"] == "sample") & (archs["space"] == "densenet")]
    dense = dense[~dense["arch_id"].isin(long_done)].reset_index(drop=True)
    values = [
        strata_value([r[f"key_stage_mean_n_{k}"] for k in range(3)]) for _, r in dense.iterrows()
    ]
    longs = [dense["arch_id"][i] for i in spanning(values, rule["long_densenets"])]
    jobs = [_job("short", 0, a, "prospective") for a in first]
    jobs += [_job("short", s, a, "prospective") for s in (1, 2) for a in seeded]
    jobs += [_job("long", 0, a) for a in longs]
    # every row's metrics again, so that every key column is the frozen scorers' (finite) key
    old = [{**r, **arch_metrics(ArchSpec.from_json(r["spec"]))} for r in archs.to_dict("records")]
    table = pd.concat([pd.DataFrame(old), sample], ignore_index=True)
    atomic_write_text(folder / ARCHS, table.to_csv(index=False))
    atomic_write_json(folder / STUDY, {**study, "jobs": study["jobs"] + jobs})
    mix = sample.groupby("space").size().to_dict()
    no_identity = int((sample["stage_N_1st"] > 0).sum())
    return {
        "command": command,
        "seed": rule["seed"],
        "pool": len(found),
        "excluded": len(found) - len(pool),
        "sample": len(sample),
        "seeded": len(seeded),
        "long_densenets": longs,
        "mix": ", ".join(f"{n} {s}" for s, n in sorted(mix.items()))
        + f"; {no_identity} without a full identity path (N_1st > 0)",
        "arch_ids": list(sample["arch_id"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m runners.prospective", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("freeze", "draw"), help="freeze first, commit, then draw")
    parser.add_argument("--study", default=str(STUDY_DIR), help="the study's folder")
    args = parser.parse_args(argv)
    folder = Path(args.study)
    path = folder / FROZEN
    if not (folder / STUDY).is_file():
        raise cli.UsageError(f"{folder} holds no study: run python -m runners.study first")
    try:
        lock = lock_run_dir(folder)
    except RunRefused as e:
        raise cli.UsageError(str(e)) from None
    try:
        stored = json.loads(path.read_text()) if path.is_file() else None
        if args.step == "freeze":
            if stored is not None:
                raise cli.UsageError(f"{path} exists: a freeze is made once, before the draw")
            atomic_write_json(path, freeze(folder))
            print(f"frozen: {path}; commit it with {CHOICE_FILE.name}, then run the draw")
            return 0
        if stored is None:
            raise cli.UsageError(f"{path} does not exist: freeze first")
        if "draw" in stored:
            raise cli.UsageError(f"{path}: the sample is drawn already")
        commit = _committed([path, CHOICE_FILE])
        result = draw(folder, stored)
        atomic_write_json(path, {**stored, "commit": commit, "draw": result})
        print(
            f"drew {result['sample']} architectures from {result['pool']} candidates "
            f"({result['mix']}); train them with python -m runners.study"
        )
        return 0
    finally:
        os.close(lock)


if __name__ == "__main__":
    sys.exit(cli.run("runners.prospective", main))
