"""``python -m results.ranking``: choose the search's default ranking from the benchmark of trained
networks, on one half of it, and measure it on the other.

The sampled architectures of the benchmark study (``results/study``; short recipe, mean over
seeds) are split in two halves with a fixed seed. On the *fit* half only, the weights of
:func:`nas.scorers.paths_capacity` are fitted (ridge regression of the accuracy rank on its
standardised features) and every registered scorer is scored by Kendall tau between its order
(smaller key first) and accuracy: the fitted model by 4-fold cross-validation inside the fit half,
so that it does not win by fitting the architectures it is scored on. The scorer of largest
fit-half tau that reads gradient paths (not one of :data:`nas.scorers.BASELINE_SCORERS`)
becomes the default; the tie-break column (what orders candidates whose keys are
equal) is the cost or depth column of largest |tau| on the fit half. The *held-out* half then
gives each scorer's tau with a 95% bootstrap interval that includes seed noise (as in
docs/validation.md): the figure the README and every run report quote.

Writes ``nas/ranking_choice.json`` (read by :mod:`nas.scorers`) and ``docs/ranking.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nas import _cli
from nas.atomic import atomic_write_text
from nas.graph import lower
from nas.scorers import (
    BASELINE_SCORERS,
    CHOICE_FILE,
    PAPER_SCORER,
    features,
    get_scorer,
    list_scorers,
    measure,
)
from nas.spec import ArchSpec
from results.benchmark import STUDY_DIR, load_benchmark
from results.validation import correlate, seed_table

DOC = Path(__file__).parent.parent / "docs" / "ranking.md"
MODEL_SCORER = "paths_capacity"
SPLIT_SEED = 0
RIDGE = 1.0  # the ridge penalty on standardised features (n is small: keep the weights small)
FOLDS = 4
TIE_BREAKS = ("fp_macs", "bops", "params", "binary_params", "storage_mbit", "depth")


def key_ranks(keys: Sequence[tuple[float, ...]]) -> np.ndarray:
    """Each key's rank (1 = first, smaller keys first, equal keys share their mean rank)."""
    order = {k: i for i, k in enumerate(sorted(set(keys)))}
    return stats.rankdata([order[k] for k in keys])


def agreement(keys: Sequence[tuple[float, ...]], accuracy: np.ndarray) -> float:
    """Kendall tau between the key's order and accuracy: +1 when the first key is the most
    accurate and so on down."""
    ranks = key_ranks(keys)
    if np.ptp(ranks) == 0:
        return float("nan")
    return float(stats.kendalltau(-ranks, accuracy).statistic)


def fit_model(table: pd.DataFrame, accuracy: np.ndarray, ridge: float = RIDGE) -> dict:
    """Ridge regression of the accuracy rank (0..1) on the standardised features of ``table``
    (one row per architecture, one column per feature): the model of
    :func:`nas.scorers.paths_capacity`."""
    x = table.to_numpy(dtype=float)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    z = (x - mean) / sd
    target = (stats.rankdata(accuracy) - 0.5) / len(accuracy)
    weights = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (target - target.mean()))
    return {
        "features": list(table.columns),
        "mean": mean.tolist(),
        "sd": sd.tolist(),
        "weights": weights.tolist(),
    }


def predict(model: dict, table: pd.DataFrame) -> np.ndarray:
    """The model's score (larger is better) of each row of ``table``."""
    x = table[model["features"]].to_numpy(dtype=float)
    return ((x - np.array(model["mean"])) / np.array(model["sd"])) @ np.array(model["weights"])


def cross_validated_tau(table: pd.DataFrame, accuracy: np.ndarray, seed: int) -> float:
    """Kendall tau of the model's predictions, each architecture predicted by a model fitted
    without its fold."""
    folds = np.arange(len(table)) % FOLDS
    np.random.default_rng(seed).shuffle(folds)
    predicted = np.empty(len(table))
    for f in range(FOLDS):
        held = folds == f
        model = fit_model(table[~held], accuracy[~held])
        predicted[held] = predict(model, table[held])
    return float(stats.kendalltau(predicted, accuracy).statistic)


def architectures(folder: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray], float]:
    """The sampled architectures trained on the short recipe (one row each: arch id, space,
    every cost column, the features), their seeds' accuracies, and the pooled seed deviation."""
    bench = load_benchmark(folder)
    short = bench[(bench["recipe"] == "short") & (bench["role"] == "sample")]
    _, noise = seed_table(short)
    seeds = short.groupby("arch_id")["top1"].apply(lambda s: s.to_numpy(dtype=float)).to_dict()
    first = short.drop_duplicates("arch_id").set_index("arch_id").sort_index()
    rows = []
    for aid, row in first.iterrows():
        m = measure(lower(ArchSpec.from_json(row["spec"])))
        rows.append(
            {
                "arch_id": aid,
                "space": row["space"],
                "measures": m,
                "accuracy": float(seeds[aid].mean()),
                **{c: row[c] for c in TIE_BREAKS},
                **features(m),
            }
        )
    return pd.DataFrame(rows).set_index("arch_id"), seeds, noise


def split(ids: Sequence[str], seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """The fit half and the held-out half: each architecture's half is a hash of the seed and its
    arch id, so it never changes as the benchmark grows (an architecture once held out stays
    held out)."""
    fit, held = [], []
    for aid in sorted(ids):
        digest = hashlib.sha256(f"{seed}-{aid}".encode()).digest()
        (fit if digest[0] % 2 == 0 else held).append(aid)
    return fit, held


def choose(folder: Path = STUDY_DIR, seed: int = SPLIT_SEED) -> tuple[dict, pd.DataFrame]:
    """The choice (the contents of ``nas/ranking_choice.json``) and the table of every scorer's
    fit-half and held-out tau."""
    archs, seeds, noise = architectures(folder)
    fit_ids, held_ids = split(list(archs.index), seed)
    fit, held = archs.loc[fit_ids], archs.loc[held_ids]
    names = list(features(fit["measures"].iloc[0]))
    model = fit_model(fit[names], fit["accuracy"].to_numpy())
    scorers = {n: get_scorer(n) for n in list_scorers()}
    rng = np.random.default_rng(seed)
    rows = []
    for name, scorer in scorers.items():
        if name == MODEL_SCORER:
            fit_tau = cross_validated_tau(fit[names], fit["accuracy"].to_numpy(), seed)
            ranks_held = -predict(model, held[names])
            ranks_all = {s: -predict(model, part[names]) for s, part in held.groupby("space")}
        else:
            fit_tau = agreement([scorer(m) for m in fit["measures"]], fit["accuracy"].to_numpy())
            ranks_held = key_ranks([scorer(m) for m in held["measures"]])
            ranks_all = {
                s: key_ranks([scorer(m) for m in part["measures"]])
                for s, part in held.groupby("space")
            }
        row = {"scorer": name, "fit_tau": fit_tau}
        n, tau, lo, hi, *_ = correlate(pd.Series(-ranks_held, index=held.index), seeds, noise, rng)
        row |= {"held_n": n, "held_tau": tau, "held_lo": lo, "held_hi": hi}
        for space, ranks in sorted(ranks_all.items()):
            accuracy = held.loc[held["space"] == space, "accuracy"].to_numpy()
            ranks = np.asarray(ranks)
            row[f"held_tau_{space}"] = (
                float(stats.kendalltau(-ranks, accuracy).statistic)
                if np.ptp(ranks) > 0
                else float("nan")
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    usable = table[table["fit_tau"].notna() & ~table["scorer"].isin(BASELINE_SCORERS)]
    default = str(usable.sort_values("fit_tau", ascending=False, kind="stable")["scorer"].iloc[0])
    ties = {c: stats.kendalltau(fit[c], fit["accuracy"]).statistic for c in TIE_BREAKS}
    tie = max(ties, key=lambda c: abs(ties[c]))
    choice = {
        "default": default,
        "tie_break": {"column": tie, "larger_first": bool(ties[tie] > 0), "fit_tau": ties[tie]},
        "model": model,
        "benchmark": {
            "architectures": len(archs),
            "fit": fit_ids,
            "held_out": held_ids,
            "split_seed": seed,
            "seed_sd": noise if math.isfinite(noise) else None,
        },
        "held_out_tau": {r["scorer"]: [r["held_tau"], r["held_lo"], r["held_hi"]] for r in rows},
    }
    return choice, table


def _tau(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:+.2f}"


def write_document(choice: dict, table: pd.DataFrame, doc: Path = DOC) -> str:
    """docs/ranking.md: the choice and every scorer's figures."""
    b = choice["benchmark"]
    default, tie = choice["default"], choice["tie_break"]
    held = table.set_index("scorer")
    spaces = sorted(c.removeprefix("held_tau_") for c in table.columns if c.startswith("held_tau_"))

    def ci(name: str) -> str:
        r = held.loc[name]
        if not math.isfinite(r["held_tau"]):
            return "n/a"
        return f"{r['held_tau']:+.2f} [{r['held_lo']:+.2f}, {r['held_hi']:+.2f}]"

    lines = [
        "# The search's default ranking, chosen on half of the benchmark",
        "",
        "Written by `python -m results.ranking` from the benchmark study (`results/study`, short "
        "recipe, sampled architectures, mean top-1 over seeds). Do not edit by hand: rerun the "
        "command, which also writes `nas/ranking_choice.json` (what the search reads).",
        "",
        f"{b['architectures']} architectures, split by a hash of arch id and seed "
        f"{b['split_seed']}: "
        f"{len(b['fit'])} to choose on (the *fit* half), {len(b['held_out'])} held out. Every "
        "scorer is scored on the fit half by Kendall tau between its order (smaller key first) "
        f"and accuracy; `{MODEL_SCORER}` (a ridge model over gradient-path terms and log FP MACs) "
        f"is fitted on the fit half and scored there by {FOLDS}-fold cross-validation. The "
        "held-out tau carries a 95% bootstrap interval over architectures and seed noise "
        + (f"(seed sd {b['seed_sd'] * 100:.2f} points)." if b["seed_sd"] else "(no seeds yet).")
        + " Positive tau: the scorer's first candidates train best. The zero-cost proxies "
        "(synflow, NASWOT, ...) are compared in docs/validation.md but are not candidates here: "
        "they need torch and a forward and backward pass of each network, and the search's "
        "evaluator scores without torch.",
        "",
        "## The choice",
        "",
        f"- Default scorer: **`{default}`**, held-out Kendall tau **{ci(default)}**; the paper's "
        f"key `{PAPER_SCORER}` on the same half: {ci(PAPER_SCORER)} "
        f"(`--scorer {PAPER_SCORER}` keeps it).",
        *(
            f"- `{name}` reads no gradient path (a baseline, never the default): held-out tau "
            f"{ci(name)}."
            for name in sorted(BASELINE_SCORERS)
        ),
        f"- Candidates whose keys are equal are ordered by `{tie['column']}`, "
        f"{'larger' if tie['larger_first'] else 'smaller'} first (fit-half tau of the column "
        f"{tie['fit_tau']:+.2f}), then by arch id.",
        "",
        "## Every scorer",
        "",
        "| scorer | fit-half tau | held-out tau [95% CI] | "
        + " | ".join(f"held-out, {s}" for s in spaces)
        + " |",
        "|---|---|---|" + "---|" * len(spaces),
    ]
    for r in table.sort_values("fit_tau", ascending=False, na_position="last").itertuples():
        mark = " (default)" if r.scorer == default else ""
        mark += " (the paper's)" if r.scorer == PAPER_SCORER else ""
        lines.append(
            f"| `{r.scorer}`{mark} | {_tau(r.fit_tau)} | {ci(r.scorer)} | "
            + " | ".join(_tau(getattr(r, f"held_tau_{s}")) for s in spaces)
            + " |"
        )
    model = choice["model"]
    lines += [
        "",
        f"## The weights of `{MODEL_SCORER}` (standardised features, fit half)",
        "",
        "| feature | weight |",
        "|---|---|",
        *(
            f"| `{f}` | {w:+.3f} |"
            for f, w in sorted(
                zip(model["features"], model["weights"], strict=True), key=lambda fw: -abs(fw[1])
            )
        ),
        "",
    ]
    text = "\n".join(lines)
    atomic_write_text(doc, text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = _cli.Parser(prog="python -m results.ranking", description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(STUDY_DIR), help="the study's folder")
    parser.add_argument("--doc", default=str(DOC), help="where the document goes")
    parser.add_argument(
        "--choice", default=str(CHOICE_FILE), help="where the choice goes (the search reads it)"
    )
    args = parser.parse_args(argv)
    try:
        choice, table = choose(Path(args.study))
    except FileNotFoundError as e:
        raise _cli.UsageError(
            f"no benchmark in {args.study} ({e.strerror}); run python -m runners.study first"
        ) from None
    atomic_write_text(Path(args.choice), json.dumps(choice, indent=1) + "\n")
    write_document(choice, table, Path(args.doc))
    print(
        f"default scorer: {choice['default']} (held-out tau "
        f"{choice['held_out_tau'][choice['default']][0]:+.2f}); {args.doc}, {args.choice}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run("results.ranking", main))
