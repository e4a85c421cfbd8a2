"""``python -m results.ranking_choice``: choose the search's default ranking from the benchmark
of trained networks, on one half of it, measure it on the other, and, once the prospective sample
is trained, on architectures that no earlier part of the study held.

The sampled architectures of the benchmark study (``results/study``; short recipe, mean over
seeds) are split in two halves by a hash of their arch id. Every candidate ranking is scored on
the *fit* half by Kendall tau between its order and accuracy:

* the registered scorers (:mod:`nas.core.scorers`): a fixed key as it is; a fitted one (ridge
  regression of the accuracy rank on its standardised features: ``capacity``, ``paths_only``,
  ``paths_capacity``) by 4-fold cross-validation repeated :data:`REPEATS` times, so that it does
  not win by fitting the architectures it is scored on;
* rankings that need torch, which the search's evaluator does not have: the zero-cost proxies
  ``synflow`` and ``naswot`` (at the initialisation the short recipe trained from; their
  direction taken from the fit half), a *two-stage* ranking (the best fitted scorer for every
  candidate, then the top :data:`TOP_SHARE` re-ordered by a proxy) and an *ensemble* (the mean of
  the fitted scorer's and the proxy's ranks).

The registered scorer of largest fit-half tau becomes the default (whether or not it reads
gradient paths); the tie-break column is the cost or depth column of largest |tau| on the fit
half. The *held-out* half then gives each ranking's tau with a 95% bootstrap interval that
includes seed noise (as in docs/validation.md), and its paired difference from ``capacity`` (the
same resamples for both). The mean held-out tau over :data:`SPLITS` random splits of the same
sizes says how much one split's figure can move.

The *prospective* test reads ``results/study/prospective.json`` (the frozen models, written by
``python -m runners.prospective`` before the sample was drawn) and the rows of part
``prospective``: every ranking's tau there, the fitted ones with their frozen weights. Nothing is
fitted on them.

Writes ``nas/core/ranking_choice.json`` (read by :mod:`nas.core.scorers`) and ``docs/ranking.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from nas import cli
from nas.core.atomic import atomic_write_text
from nas.core.graph import lower
from nas.core.scorers import (
    BASELINE_SCORERS,
    CAPACITY_SCORER,
    CHOICE_FILE,
    FITTED_FEATURES,
    PAPER_SCORER,
    features,
    get_scorer,
    list_scorers,
    measure,
)
from nas.core.spec import ArchSpec
from results.stats import BOOTSTRAP, seed_table
from results.trained_benchmark import STUDY_DIR, load_benchmark, load_frozen

DOC = Path(__file__).parent.parent / "docs" / "ranking.md"
BAR = CAPACITY_SCORER  # the capacity-only model: what a gradient-path ranking has to beat
SPLIT_SEED = 0
RIDGE = 1.0  # the ridge penalty on standardised features (n is small: keep the weights small)
FOLDS = 4
REPEATS = 20  # repeats of the 4-fold cross-validation on the fit half (one is noisy at n = 41)
SPLITS = 200  # random fit/held-out splits of the same sizes, for the spread of one split's tau
PROXIES = ("synflow", "naswot")  # zero-cost proxies the torch rankings use (seed 0's values)
TOP_SHARE = 0.2  # the share of candidates a second stage re-orders (the top 200 of 1000)
NO_IDENTITY = "no identity path"  # some stage has N_1st > 0: every path crosses a binary conv
TIE_BREAKS = ("fp_macs", "bops", "params", "binary_params", "storage_mbit", "depth")


def key_ranks(keys: Sequence[tuple[float, ...]]) -> np.ndarray:
    """Each key's rank (1 = first, smaller keys first, equal keys share their mean rank)."""
    order = {k: i for i, k in enumerate(sorted(set(keys)))}
    return stats.rankdata([order[k] for k in keys])


def agreement(keys: Sequence[tuple[float, ...]], accuracy: np.ndarray) -> float:
    """Kendall tau between the key's order and accuracy: +1 when the first key is the most
    accurate and so on down."""
    return _tau(-key_ranks(keys), accuracy)


def _tau(score: np.ndarray, accuracy: np.ndarray) -> float:
    if len(score) < 3 or np.ptp(score) == 0 or np.ptp(accuracy) == 0:
        return float("nan")
    return float(stats.kendalltau(score, accuracy).statistic)


def fit_model(table: pd.DataFrame, accuracy: np.ndarray, ridge: float = RIDGE) -> dict:
    """Ridge regression of the accuracy rank (0..1) on the standardised features of ``table``
    (one row per architecture, one column per feature): the model of a fitted scorer."""
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


def model_hash(models: dict[str, Any]) -> str:
    """The content hash of fitted models (canonical JSON, sha256): what a freeze names."""
    text = json.dumps(models, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# -- the candidate rankings ---------------------------------------------------------------------
# A *base* ranking gives every row of a table a score, larger first: a registered scorer (its key's
# rank, negated; a fitted one, its model's prediction) or a zero-cost proxy (its value, in the
# direction the fit half shows). Fitting a base on rows gives its parameters (a model, a
# proxy's sign, or nothing); a *combined* ranking (two-stage, ensemble) is a base plus a proxy.


def fit_base(name: str, train: pd.DataFrame) -> Any:
    """What ranking ``name`` learns from ``train`` (rows with ``accuracy``)."""
    accuracy = train["accuracy"].to_numpy()
    if name in FITTED_FEATURES:
        return fit_model(train[list(FITTED_FEATURES[name])], accuracy)
    if name in PROXIES:
        tau = _tau(train[name].to_numpy(dtype=float), accuracy)
        return -1.0 if tau < 0 else 1.0
    return None


def apply_base(name: str, fitted: Any, rows: pd.DataFrame) -> np.ndarray:
    """The scores of ``rows`` under base ranking ``name`` with what it learnt."""
    if name in FITTED_FEATURES:
        return predict(fitted, rows)
    if name in PROXIES:
        return fitted * rows[name].to_numpy(dtype=float)
    return -key_ranks(list(rows[f"key_{name}"]))


def two_stage(first: np.ndarray, second: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """Scores of a two-stage ranking: the top ``share`` by ``first`` (at least two) re-ordered by
    ``second``, then the rest in ``first``'s order (both larger first)."""
    n = len(first)
    order = np.argsort(-first, kind="stable")
    k = min(n, max(2, round(share * n)))
    top = order[:k][np.argsort(-second[order[:k]], kind="stable")]
    place = np.empty(n)
    place[np.concatenate([top, order[k:]])] = np.arange(n)
    return -place


def ensemble(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Scores of the mean of two rankings' ranks."""
    return stats.rankdata(first) + stats.rankdata(second)


COMBINERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "two-stage": two_stage,
    "ensemble": ensemble,
}


class Ranking(NamedTuple):
    """A candidate ranking: a base, and for a combined one its proxy and combiner."""

    name: str
    kind: str
    base: str
    proxy: str | None = None
    combiner: str | None = None


def rankings(best_fitted: str) -> list[Ranking]:
    """Every candidate ranking."""
    out = [
        Ranking(n, "fitted scorer" if n in FITTED_FEATURES else "scorer", n) for n in list_scorers()
    ]
    out += [Ranking(p, "zero-cost proxy (torch)", p) for p in PROXIES]
    for combiner in COMBINERS:
        for p in PROXIES:
            name = f"{combiner}: {best_fitted} + {p}"
            out.append(Ranking(name, f"{combiner} (torch)", best_fitted, p, combiner))
    return out


def combined_scores(r: Ranking, fitted: dict[str, Any], rows: pd.DataFrame) -> np.ndarray:
    """The scores of ``rows`` under ranking ``r`` with what its parts learnt (``fitted``)."""
    scores = apply_base(r.base, fitted.get(r.base), rows)
    if r.proxy is None:
        return scores
    return COMBINERS[r.combiner](scores, apply_base(r.proxy, fitted[r.proxy], rows))


def cross_validated(name: str, table: pd.DataFrame, seed: int, repeats: int = REPEATS) -> float:
    """The mean Kendall tau of ranking ``name`` (a base) over ``repeats`` 4-fold
    cross-validations on ``table``: each row scored by what was learnt without its fold."""
    return float(
        np.mean(
            [
                _tau(out_of_fold(name, table, seed + r), table["accuracy"].to_numpy())
                for r in range(repeats)
            ]
        )
    )


def out_of_fold(name: str, table: pd.DataFrame, seed: int) -> np.ndarray:
    """Each row's score under base ``name`` learnt on the other folds (a fixed key: as it is)."""
    if name not in FITTED_FEATURES and name not in PROXIES:
        return apply_base(name, None, table)
    folds = np.arange(len(table)) % FOLDS
    np.random.default_rng(seed).shuffle(folds)
    scores = np.empty(len(table))
    for f in range(FOLDS):
        held = folds == f
        scores[held] = apply_base(name, fit_base(name, table[~held]), table[held])
    return scores


# -- the data -----------------------------------------------------------------------------------


def architectures(
    folder: Path, parts: Sequence[str] = ("short", "seeds")
) -> tuple[pd.DataFrame, dict[str, np.ndarray], float]:
    """The architectures trained on the short recipe in ``parts`` of the study (the benchmark's
    sample by default; ``("prospective",)``, the prospective one), one row each: arch id, space,
    the measures, mean accuracy over seeds, every cost column, the features, every registered
    scorer's key and seed 0's zero-cost proxies; their seeds' accuracies; the pooled seed
    deviation."""
    bench = load_benchmark(folder)
    short = bench[(bench["recipe"] == "short") & bench["part"].isin(parts)]
    short = short[short["role"] != "reference"]
    _, noise = seed_table(short)
    seeds = short.groupby("arch_id")["top1"].apply(lambda s: s.to_numpy(dtype=float)).to_dict()
    first = short.sort_values("seed").drop_duplicates("arch_id").set_index("arch_id").sort_index()
    # the fitted scorers' keys come from the weights being fitted or frozen, not the current ones
    scorers = {n: get_scorer(n) for n in list_scorers() if n not in FITTED_FEATURES}
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
                **{p: row[p] for p in PROXIES},
                **features(m),
                "identity_path": all(s.N[0] == 0 for s in m.paths.stages.values()),
                **{f"key_{n}": scorer(m) for n, scorer in scorers.items()},
            }
        )
    table = pd.DataFrame(rows)
    return (table.set_index("arch_id") if rows else table), seeds, noise


def split(ids: Sequence[str], seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """The fit half and the held-out half: each architecture's half is a hash of the seed and its
    arch id, so it never changes as the benchmark grows (an architecture once held out stays
    held out)."""
    fit, held = [], []
    for aid in sorted(ids):
        digest = hashlib.sha256(f"{seed}-{aid}".encode()).digest()
        (fit if digest[0] % 2 == 0 else held).append(aid)
    return fit, held


def bootstrap(
    scores: dict[str, np.ndarray],
    ids: list[str],
    seeds: dict[str, np.ndarray],
    noise: float,
    rng: np.random.Generator,
    bar: str = BAR,
    resamples: int = BOOTSTRAP,
) -> pd.DataFrame:
    """Per ranking (its scores of ``ids``): Kendall tau with mean accuracy, its 95% bootstrap
    interval with seed noise (architectures drawn with replacement, each with one of its seeds'
    accuracies, or its one accuracy plus Gaussian noise of sd ``noise``), and the paired
    difference from ranking ``bar`` on the same resamples."""
    accs = [seeds[a] for a in ids]
    mean = np.array([a.mean() for a in accs])
    sd = noise if math.isfinite(noise) else 0.0
    draws: dict[str, list[float]] = {n: [] for n in scores}
    diffs: dict[str, list[float]] = {n: [] for n in scores}
    for _ in range(resamples):
        pick = rng.integers(0, len(ids), len(ids))
        y = np.array(
            [
                accs[i][rng.integers(len(accs[i]))]
                if len(accs[i]) > 1
                else accs[i][0] + rng.normal(0, sd)
                for i in pick
            ]
        )
        taus = {n: _tau(s[pick], y) for n, s in scores.items()}
        for n, t in taus.items():
            if math.isfinite(t):
                draws[n].append(t)
                if bar in taus and math.isfinite(taus[bar]):
                    diffs[n].append(t - taus[bar])
    rows = []
    for n, s in scores.items():
        tau = _tau(s, mean)
        lo, hi = np.percentile(draws[n], [2.5, 97.5]) if draws[n] else (math.nan, math.nan)
        d = tau - _tau(scores[bar], mean) if bar in scores else math.nan
        dlo, dhi = np.percentile(diffs[n], [2.5, 97.5]) if diffs[n] else (math.nan, math.nan)
        rows.append(
            {
                "ranking": n,
                "n": len(ids),
                "tau": tau,
                "lo": lo,
                "hi": hi,
                "diff": d,
                "diff_lo": dlo,
                "diff_hi": dhi,
            }
        )
    return pd.DataFrame(rows).set_index("ranking")


def evaluate(
    rows: pd.DataFrame,
    seeds: dict[str, np.ndarray],
    noise: float,
    fitted: dict[str, Any],
    best_fitted: str,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Every ranking's tau on ``rows`` with what it learnt (``fitted``), its interval, its paired
    difference from :data:`BAR`, and its tau within each space."""
    named = rankings(best_fitted)
    scores = {r.name: combined_scores(r, fitted, rows) for r in named}
    table = bootstrap(scores, list(rows.index), seeds, noise, rng)
    table["kind"] = [r.kind for r in named]
    accuracy = rows["accuracy"].to_numpy()
    groups = {s: (rows["space"] == s).to_numpy() for s in sorted(rows["space"].unique())}
    groups[NO_IDENTITY] = ~rows["identity_path"].to_numpy(dtype=bool)
    for group, inside in groups.items():
        table[f"tau_{group}"] = [_tau(scores[n][inside], accuracy[inside]) for n in table.index]
    return table


def choose(folder: Path = STUDY_DIR, seed: int = SPLIT_SEED) -> tuple[dict, pd.DataFrame]:
    """The choice (the contents of ``nas/core/ranking_choice.json``) and the table of every
    ranking's fit-half, held-out and random-split figures."""
    archs, seeds, noise = architectures(folder)
    fit_ids, held_ids = split(list(archs.index), seed)
    fit, held = archs.loc[fit_ids], archs.loc[held_ids]
    bases = [*list_scorers(), *PROXIES]
    cv = {n: cross_validated(n, fit, seed) for n in bases}
    best_fitted = max(FITTED_FEATURES, key=lambda n: cv[n])
    accuracy = fit["accuracy"].to_numpy()
    for name, _, base, proxy, combiner in rankings(best_fitted):
        if proxy is not None:
            combine = COMBINERS[combiner]
            cv[name] = float(
                np.mean(
                    [
                        _tau(
                            combine(
                                out_of_fold(base, fit, seed + r), out_of_fold(proxy, fit, seed + r)
                            ),
                            accuracy,
                        )
                        for r in range(REPEATS)
                    ]
                )
            )
    fitted = {n: fit_base(n, fit) for n in bases}
    rng = np.random.default_rng(seed)
    table = evaluate(held, seeds, noise, fitted, best_fitted, rng)
    table["fit_tau"] = [cv[n] for n in table.index]
    split_taus = random_splits(archs, len(fit_ids), best_fitted, rng)
    table["splits_mean"] = split_taus.mean()
    table["splits_beat_bar"] = (split_taus.sub(split_taus[BAR], axis=0) > 0).mean()
    default = max(list_scorers(), key=lambda n: (cv[n], n))
    ties = {c: stats.kendalltau(fit[c], fit["accuracy"]).statistic for c in TIE_BREAKS}
    tie = max(ties, key=lambda c: abs(ties[c]))
    choice = {
        "default": default,
        "tie_break": {"column": tie, "larger_first": bool(ties[tie] > 0), "fit_tau": ties[tie]},
        "models": {n: fitted[n] for n in FITTED_FEATURES},
        "proxy_signs": {p: fitted[p] for p in PROXIES},
        "best_fitted": best_fitted,
        "benchmark": {
            "architectures": len(archs),
            "fit": fit_ids,
            "held_out": held_ids,
            "split_seed": seed,
            "seed_sd": noise if math.isfinite(noise) else None,
        },
        "held_out_tau": {
            n: [r.tau, r.lo, r.hi] for n, r in table.iterrows() if n in list_scorers()
        },
    }
    return choice, table


def random_splits(
    archs: pd.DataFrame, n_fit: int, best_fitted: str, rng: np.random.Generator
) -> pd.DataFrame:
    """Every ranking's held-out tau over :data:`SPLITS` random splits (``n_fit`` to fit)."""
    bases = [*list_scorers(), *PROXIES]
    out = []
    for _ in range(SPLITS):
        order = rng.permutation(len(archs))
        fit, held = archs.iloc[order[:n_fit]], archs.iloc[order[n_fit:]]
        fitted = {n: fit_base(n, fit) for n in bases}
        accuracy = held["accuracy"].to_numpy()
        out.append(
            {
                r.name: _tau(combined_scores(r, fitted, held), accuracy)
                for r in rankings(best_fitted)
            }
        )
    return pd.DataFrame(out)


def prospective(folder: Path = STUDY_DIR) -> tuple[dict, pd.DataFrame | None, int]:
    """The frozen rankings (``prospective.json``), their figures on the prospective sample (None
    before four of its architectures are trained) and how many are trained."""
    frozen = load_frozen(folder)
    if frozen is None:
        return {}, None, 0
    if model_hash(frozen["fitted"]) != frozen["hash"]:
        raise ValueError(f"{folder}: the frozen models do not match their hash")
    rows, seeds, noise = architectures(folder, ("prospective",))
    if len(rows) < 4:
        return frozen, None, len(rows)
    if not math.isfinite(noise):
        noise = frozen["seed_sd"] or math.nan
    rng = np.random.default_rng(frozen["draw"]["seed"])
    table = evaluate(rows, seeds, noise, frozen["fitted"], frozen["best_fitted"], rng)
    return frozen, table, len(rows)


def _f(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:+.2f}"


def _ci(v: float, lo: float, hi: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def write_document(
    choice: dict,
    table: pd.DataFrame,
    doc: Path = DOC,
    frozen: dict | None = None,
    ahead: pd.DataFrame | None = None,
    trained: int = 0,
) -> str:
    """docs/ranking.md: the choice, every ranking's figures, the weights, the prospective test."""
    b = choice["benchmark"]
    default, tie = choice["default"], choice["tie_break"]
    spaces = [c.removeprefix("tau_") for c in table.columns if c.startswith("tau_")]
    scorers = set(list_scorers())

    def row_ci(t: pd.DataFrame, name: str) -> str:
        r = t.loc[name]
        return _ci(r["tau"], r["lo"], r["hi"])

    def diff_ci(t: pd.DataFrame, name: str) -> str:
        r = t.loc[name]
        return "(the bar)" if name == BAR else _ci(r["diff"], r["diff_lo"], r["diff_hi"])

    added = table.loc[choice["best_fitted"]] if choice["best_fitted"] != BAR else None
    lines = [
        "# The search's default ranking: chosen on half of the benchmark, tested on the rest and"
        " on architectures nobody had seen",
        "",
        "Written by `python -m results.ranking_choice` from the benchmark study "
        "(`results/study`, short recipe, sampled architectures, mean top-1 over seeds). Do not "
        "edit by hand: rerun the "
        "command, which also writes `nas/core/ranking_choice.json` (what the search reads).",
        "",
        f"{b['architectures']} architectures, split by a hash of arch id and seed "
        f"{b['split_seed']}: {len(b['fit'])} to choose on (the *fit* half), "
        f"{len(b['held_out'])} held out. Each ranking is scored on the fit half by Kendall tau "
        f"between its order and accuracy; a fitted one (ridge regression of the accuracy rank on "
        f"its features) by {FOLDS}-fold cross-validation repeated {REPEATS} times. The held-out "
        "tau carries a 95% bootstrap interval over architectures and seed noise "
        + (f"(seed sd {b['seed_sd'] * 100:.2f} points)" if b["seed_sd"] else "(no seeds yet)")
        + f", and *vs {BAR}* is the paired difference from the capacity-only model on the same "
        f"resamples. *{SPLITS} splits* is the mean held-out tau over random splits of the same "
        f"sizes, and how often the ranking beats `{BAR}` there. Positive tau: the ranking's "
        "first candidates train best.",
        "",
        "Caveat: the features of the fitted models and the `fp_share` baseline were designed "
        "after short-recipe results of most held-out architectures had been read (docs/"
        "validation.md), so the held-out figures are partly in-sample; the prospective test "
        "below is the clean one.",
        "",
        "## The choice",
        "",
        f"- Default scorer: **`{default}`** (largest fit-half tau of the torch-free scorers), "
        f"held-out Kendall tau **{row_ci(table, default)}**, {diff_ci(table, default)} against "
        f"`{BAR}`. The paper's key `{PAPER_SCORER}`: {row_ci(table, PAPER_SCORER)} "
        f"(`--scorer {PAPER_SCORER}` keeps it).",
    ]
    if frozen and ahead is not None and frozen["default"] in ahead.index:
        r = ahead.loc[frozen["default"]]
        lines.append(
            f"- **Prospectively** (the frozen `{frozen['default']}` on {trained} architectures of "
            f"a default search that nobody had trained; below): "
            f"**{_ci(r['tau'], r['lo'], r['hi'])}**, {_ci(r['diff'], r['diff_lo'], r['diff_hi'])}"
            f" against the frozen `{BAR}`."
        )
    if added is not None:
        lines.append(
            f"- **What gradient paths add beyond capacity**: `{choice['best_fitted']}` minus "
            f"`{BAR}` on the held-out half {_ci(added['diff'], added['diff_lo'], added['diff_hi'])}"
            f"; over {SPLITS} random splits it beats `{BAR}` in "
            f"{added['splits_beat_bar'] * 100:.0f}% of them. An interval that contains 0 means "
            "no measurable gain."
        )
    lines += [
        f"- `{BAR}` alone (reads no gradient path): {row_ci(table, BAR)}; `paths_only` "
        f"(gradient paths alone): {row_ci(table, 'paths_only')}.",
        f"- Candidates whose keys are equal are ordered by `{tie['column']}`, "
        f"{'larger' if tie['larger_first'] else 'smaller'} first (fit-half tau of the column "
        f"{tie['fit_tau']:+.2f}), then by arch id.",
        "- Rankings that need torch (zero-cost proxies at initialisation, a second stage on the "
        f"top {TOP_SHARE:.0%}, an ensemble) are measured below; "
        + (
            "none beats the default on the fit half, so the search has no second stage."
            if table.loc[[n for n in table.index if n not in scorers], "fit_tau"].max()
            <= table.loc[default, "fit_tau"]
            else "one beats the default on the fit half: a second stage would pay."
        ),
        "- Every key is finite: a missing 2nd or 3rd distinct path cost (or length) counts as the "
        "network's total binary cost (or number of binary convs), which no path exceeds "
        "(docs/design.md section 5).",
        "",
        "## Every ranking",
        "",
        f"| ranking | kind | fit-half tau | held-out tau [95% CI] | vs {BAR} [95% CI] | "
        f"{SPLITS} splits: mean, beats {BAR} | "
        + " | ".join(f"held-out, {s}" for s in spaces)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(spaces),
    ]
    for name, r in table.sort_values("fit_tau", ascending=False, na_position="last").iterrows():
        mark = " (default)" if name == default else ""
        mark += " (the paper's)" if name == PAPER_SCORER else ""
        kind = r["kind"] + (", no paths" if name in BASELINE_SCORERS else "")
        lines.append(
            f"| `{name}`{mark} | {kind} | {_f(r['fit_tau'])} | {row_ci(table, name)} | "
            f"{diff_ci(table, name)} | {_f(r['splits_mean'])}, "
            + ("-" if name == BAR else f"{r['splits_beat_bar'] * 100:.0f}%")
            + " | "
            + " | ".join(_f(r[f"tau_{s}"]) for s in spaces)
            + " |"
        )
    lines += ["", "## The fitted models (standardised features, fit half)", ""]
    for name, model in choice["models"].items():
        lines += [f"`{name}`:", "", "| feature | weight |", "|---|---|"]
        lines += [
            f"| `{f}` | {w:+.3f} |"
            for f, w in sorted(
                zip(model["features"], model["weights"], strict=True), key=lambda fw: -abs(fw[1])
            )
        ]
        lines.append("")
    lines += _prospective_lines(frozen, ahead, trained)
    text = "\n".join(lines)
    atomic_write_text(doc, text)
    return text


def _prospective_lines(frozen: dict | None, table: pd.DataFrame | None, trained: int) -> list[str]:
    if not frozen:
        return ["## The prospective test", "", "Not planned yet (`python -m runners.prospective`)."]
    d = frozen["draw"]
    lines = [
        "## The prospective test",
        "",
        f"The rankings were frozen first: commit `{frozen['commit']}` holds "
        f"the ranking choice (`ranking_choice.json`) and `results/study/prospective.json` "
        f"with every fitted model, the proxies' directions and their content hash "
        f"`{frozen['hash'][:16]}` "
        f"(sha256 of the canonical JSON). The default then was `{frozen['default']}`. Then "
        f"{d['sample']} new architectures were drawn from the {d['pool']} in-band candidates of a "
        f"default search (`{d['command']}`: its sampler, spaces and width floor; the "
        f"{d['excluded']} already in the study left out), one at random from each of "
        f"{d['sample']} equal-count strata of the frozen default's key (seed {d['seed']}), so that "
        f"their mix is the search's: {d['mix']}. They train on the short recipe, seed 0, and "
        f"{d['seeded']} of them spanning the key with seeds 1 and 2 too. Nothing is refitted on "
        "them.",
        "",
    ]
    if table is None:
        lines += [f"{trained} of {d['sample']} trained so far: too few for a figure.", ""]
        return lines
    r = table.loc[frozen["default"]]
    spaces_p = [c.removeprefix("tau_") for c in table.columns if c.startswith("tau_")]
    verdict = (
        "at least +0.5, the line set before the test"
        if r["tau"] >= 0.5
        else "below +0.5, the line set before the test"
    )
    lines += [
        f"**{trained} of {d['sample']} trained.** The frozen default `{frozen['default']}`: "
        f"Kendall tau **{_ci(r['tau'], r['lo'], r['hi'])}**, {verdict}"
        + ("" if trained >= d["sample"] else " (provisional: not every architecture is trained)")
        + ". "
        + _raise_it(table, frozen["default"]),
        "",
        f"| ranking (frozen) | kind | tau [95% CI] | vs {BAR} [95% CI] | "
        + " | ".join(spaces_p)
        + " |",
        "|---|---|---|---|" + "---|" * len(spaces_p),
    ]
    for name, row in table.sort_values("tau", ascending=False, na_position="last").iterrows():
        diff = "(the bar)" if name == BAR else _ci(row["diff"], row["diff_lo"], row["diff_hi"])
        lines.append(
            f"| `{name}` | {row['kind']} | {_ci(row['tau'], row['lo'], row['hi'])} | {diff} | "
            + " | ".join(_f(row[f"tau_{s}"]) for s in spaces_p)
            + " |"
        )
    lines.append("")
    return lines


def _raise_it(table: pd.DataFrame, default: str) -> str:
    """What the prospective figures say would rank these architectures better than the
    default: the frozen ranking of largest tau there, and whether it is torch-free."""
    best = table["tau"].idxmax()
    if best == default:
        return "No other frozen ranking orders them better."
    r = table.loc[best]
    return (
        f"The frozen ranking that orders them best is `{best}` ({r['kind']}): tau "
        f"{_ci(r['tau'], r['lo'], r['hi'])}, {_f(r['tau'] - table.loc[default, 'tau'])} over the "
        "default (the table has the paired interval against capacity); changing the default on "
        "this evidence would need a new freeze and a new prospective sample."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m results.ranking_choice", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--study", default=str(STUDY_DIR), help="the study's folder")
    parser.add_argument("--doc", default=str(DOC), help="where the document goes")
    parser.add_argument(
        "--choice", default=str(CHOICE_FILE), help="where the choice goes (the search reads it)"
    )
    args = parser.parse_args(argv)
    folder = Path(args.study)
    try:
        choice, table = choose(folder)
        frozen, ahead, trained = prospective(folder)
    except FileNotFoundError as e:
        raise cli.UsageError(
            f"no benchmark in {args.study} ({e.strerror}); run python -m runners.study first"
        ) from None
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    atomic_write_text(Path(args.choice), json.dumps(choice, indent=1) + "\n")
    write_document(choice, table, Path(args.doc), frozen, ahead, trained)
    print(
        f"default scorer: {choice['default']} (held-out tau "
        f"{choice['held_out_tau'][choice['default']][0]:+.2f}); {args.doc}, {args.choice}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("results.ranking_choice", main))
