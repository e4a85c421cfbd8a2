"""The transfer part of the benchmark study (``runners.transfer``): does what the short proxy
says hold after five times the epochs?

Every model of the part is trained with the same seeds on ``short_one`` (2 epochs of 20,000
images, +1 padding: the search's proxy) and on ``long10`` (10 epochs of the same images). This
module gives, for ``docs/validation.md``: the models' accuracy on both recipes; the rank
agreement of the two (Kendall tau, a bootstrap interval over models and seeds); each main-job
winner and the IGP models against Bi-Real ResNet18 on both (Welch t intervals over seeds); and
the long recipe's learning curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from nas.core.atomic import atomic_savefig
from results.stats import correlate, welch

PART = "transfer"
WINNER = "winner"  # the role of a main-job run's best trained candidate in the study
PROXY, LONG = "short_one", "long10"  # the part's two recipes (runners.study.RECIPES)
BASELINE = "bireal_resnet18"
ZOO_MODELS = (BASELINE, "binary_resnet18", "igp_resnet21", "igp_resnet37")  # the part trains
AGAINST_BASELINE = (WINNER, *ZOO_MODELS[1:])


def transfer_runs(everything: pd.DataFrame, jobs: list[dict]) -> pd.DataFrame:
    """The finished runs of the part's models (those of its ``jobs``) on its two recipes (their
    ``short_one`` runs of the padding part included: the same jobs)."""
    models = {j["arch_id"] for j in jobs if j.get("part") == PART}
    return everything[everything["arch_id"].isin(models) & everything["recipe"].isin((PROXY, LONG))]


def model_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model: its space, depth, and per recipe the seeds and mean top-1 (%), sorted
    by the long recipe."""
    rows = []
    for _, part in runs.groupby("arch_id"):
        first = part.iloc[0]
        row = {"model": first["name"], "space": first["space"], "depth": int(first["depth"])}
        for recipe, label in ((PROXY, "2 epochs"), (LONG, "10 epochs")):
            top1 = part.loc[part["recipe"] == recipe, "top1"]
            row[f"{label}: seeds"] = len(top1)
            row[f"{label}: top-1 %"] = 100 * top1.mean() if len(top1) else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["change (points)"] = table["10 epochs: top-1 %"] - table["2 epochs: top-1 %"]
    return table.sort_values(["10 epochs: top-1 %", "2 epochs: top-1 %"], ascending=False)


def rank_agreement(runs: pd.DataFrame, noise: float, seed: int = 0) -> dict[str, float]:
    """Kendall tau between the two recipes' seed-mean accuracies over the models trained with
    both, with a bootstrap interval resampling the models and, for each, one proxy seed."""
    accs = runs[runs["recipe"] == PROXY].groupby("arch_id")["top1"].apply(np.array).to_dict()
    long = runs[runs["recipe"] == LONG].groupby("arch_id")["top1"].mean()
    both = [a for a in long.index if a in accs]
    n, tau, lo, hi, *_ = correlate(
        long[both], {a: accs[a] for a in both}, noise, np.random.default_rng(seed)
    )
    return {"n": n, "tau": tau, "lo": lo, "hi": hi}


def against_baseline(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model of :data:`AGAINST_BASELINE` (the main-job winners pooled, then each) and
    recipe: its top-1 minus Bi-Real ResNet18's in points, a Welch t interval over seeds, and the
    seeds on each side."""
    by = {key: part["top1"].to_numpy() for key, part in runs.groupby(["name", "recipe"])}
    names = sorted(runs["name"].unique())
    winners = [n for n in names if n.startswith(AGAINST_BASELINE[0])]
    groups = [("the winners pooled", winners)] if len(winners) > 1 else []
    groups += [(n, [n]) for n in winners]
    groups += [(n, [n]) for n in AGAINST_BASELINE[1:] if n in names]
    rows = []
    for label, members in groups:
        for recipe in (PROXY, LONG):
            a = [by[(m, recipe)] for m in members if (m, recipe) in by]
            b = by.get((BASELINE, recipe))
            if a and b is not None:
                diff, lo, hi = welch(np.concatenate(a), b)
                rows.append(
                    {"model": label, "recipe": recipe, "difference": 100 * diff,
                     "lo": 100 * lo, "hi": 100 * hi, "seeds": sum(map(len, a)),
                     "baseline seeds": len(b)}
                )  # fmt: skip
    return pd.DataFrame(
        rows, columns=["model", "recipe", "difference", "lo", "hi", "seeds", "baseline seeds"]
    )


def trend(short: float, long: float) -> str:
    """How a difference to the baseline moves from the proxy to the long recipe."""
    if np.sign(short) != np.sign(long):
        return "reverses"
    return "shrinks" if abs(long) < abs(short) else "grows"


def curves_plot(runs: pd.DataFrame, path: Path) -> None:
    """Test top-1 against epochs on the long recipe, seed mean, one line per model (the
    winners, the baseline and the IGP models named), with the 2-epoch recipe's final top-1 as
    a marker at epoch 2."""
    matplotlib.use("Agg")
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, part in runs.groupby("name"):
        long = part[part["recipe"] == LONG]
        if long.empty:
            continue
        curves = [json.loads(c) for c in long["curve_top1"]]
        n = min(len(c) for c in curves)
        mean = 100 * np.mean([c[:n] for c in curves], axis=0)
        style = {"lw": 2.2} if name.startswith(WINNER) or name == BASELINE else {"lw": 1}
        style |= {"ls": "--"} if name.startswith("igp") else {}
        (line,) = ax.plot(range(1, n + 1), mean, label=name, **style)
        proxy = part.loc[part["recipe"] == PROXY, "top1"]
        if len(proxy):
            ax.plot(2, 100 * proxy.mean(), "x", color=line.get_color(), ms=7)
    ax.set_xlabel("epoch of the 10-epoch recipe (x: the 2-epoch recipe's final top-1)")
    ax.set_ylabel("test top-1 %, mean over seeds")
    ax.set_xticks(range(1, 11))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=90)
    plt.close(fig)
