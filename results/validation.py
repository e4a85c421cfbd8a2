"""Does the gradient-path key predict what trains best? The benchmark study's analysis.

``python -m results.validation`` reads the study (:func:`results.trained_benchmark.load_benchmark`)
and writes ``docs/validation.md`` with its figures in ``docs/validation/``:

* **seed noise**: the standard deviation of final test top-1 over seeds, per architecture trained
  with several seeds, and pooled (root mean of the variances);
* **rank correlations** of every metric with accuracy (short recipe, mean over seeds), Kendall tau
  and Spearman rho, over the sampled architectures (equal FLOPs) pooled and per space, each with
  a 95% bootstrap interval that includes seed noise: each resample draws architectures with
  replacement and, for each, one of its seeds' accuracies, or, where it has one seed, that
  accuracy plus Gaussian noise of the pooled seed deviation. A scorer's key (a tuple compared
  lexicographically, smaller first) enters as its rank, negated, so that for every metric a
  positive tau means "larger metric, higher accuracy" except keys, where positive means "the
  key's order agrees with accuracy";
* **proxy fidelity**: Kendall tau between the short and the long recipe's accuracies, and every
  metric's correlation with each recipe on the architectures trained with both. Where that tau is
  below ``AGREEMENT`` (0.8: more than one pair in ten ordered differently), the short recipe is
  not a faithful proxy and the conclusion's headline is the long recipe's;
* **the paper's claims**: accuracy differences between zoo models, 3 seeds each, with Welch
  t intervals.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from nas import cli
from nas.core.atomic import atomic_savefig, atomic_write_text
from nas.core.scorers import FITTED_SCORERS
from results import transfer
from results.stats import correlate, format_ci, seed_table, welch
from results.style import space_style
from results.trained_benchmark import STUDY_DIR, load_archs, load_benchmark
from search_spaces import list_spaces

DOC = Path(__file__).parent.parent / "docs" / "validation.md"
PROSPECTIVE = "prospective"  # the study part (and role) of the prospective test
PADDING = "padding"  # the study part that trains seeded architectures with +1 padding
FIGURES = "validation"  # folder beside the document
ORDINALS = ("1st", "2nd", "3rd")
PROXIES = ("grad_norm", "snip", "synflow", "naswot", "zen_score")
BASELINES = ("params", "binary_params", "storage_mbit", "fp_macs", "bops", "depth", "width")
CLAIMS = (  # (model, against): the paper's Table 1 and Figure 2
    ("igp_resnet21", "bireal_resnet18"),
    ("igp_resnet37", "bireal_resnet18"),
    ("igp_resnet69", "bireal_resnet18"),
    ("binary_resnet18", "bireal_resnet18"),
    ("ebireal_resnet18", "bireal_resnet18"),
)


def metric_columns(archs: pd.DataFrame) -> dict[str, str]:
    """The compared metrics: column or key name -> its group (scorer, component, baseline,
    proxy)."""
    columns: dict[str, str] = {}
    # the fitted scorers are fitted on half of these architectures: their honest (held-out and
    # prospective) figures are in docs/ranking.md
    scorers = sorted(
        {c[4:].rsplit("_", 1)[0] for c in archs if c.startswith("key_")} - FITTED_SCORERS
    )
    for name in scorers:
        columns[f"key:{name}"] = "scorer key"
    for scope in ("network", "stage", "block"):
        for field in ("N", "L"):
            for o in ORDINALS:
                columns[f"{scope}_{field}_{o}"] = f"{scope} component"
    columns |= {c: "baseline" for c in BASELINES}
    columns |= {c: "zero-cost proxy" for c in PROXIES}
    return {c: g for c, g in columns.items() if c.startswith("key:") or c in archs}


def metric_values(archs: pd.DataFrame, metric: str) -> pd.Series:
    """A metric per architecture (indexed by arch id); a scorer's key as its negated
    lexicographic rank (missing values last), so that larger is better for a key too."""
    if not metric.startswith("key:"):
        return pd.Series(archs[metric].to_numpy(dtype=float), index=archs["arch_id"])
    name = metric[4:]
    parts = sorted(
        c for c in archs if c.startswith(f"key_{name}_") and c[len(name) + 5 :].isdigit()
    )
    keys = archs[parts].astype(float).fillna(math.inf)
    rank = keys.apply(tuple, axis=1).rank(method="average")
    return pd.Series(-rank.to_numpy(), index=archs["arch_id"])


def with_proxies(archs: pd.DataFrame, short: pd.DataFrame) -> pd.DataFrame:
    """``archs`` with the zero-cost proxies of each architecture's short-recipe run of seed 0
    (measured at the initialisation that run trained from)."""
    columns = [p for p in PROXIES if p in short]
    first = short[short["seed"] == 0].drop_duplicates("arch_id").set_index("arch_id")[columns]
    return archs.drop(columns=columns, errors="ignore").join(first, on="arch_id")


@dataclass
class Correlation:
    metric: str
    group: str
    population: str
    n: int
    tau: float
    tau_lo: float
    tau_hi: float
    rho: float
    rho_lo: float
    rho_hi: float


def correlations(
    archs: pd.DataFrame,
    seeds: dict[str, np.ndarray],
    noise: float,
    seed: int = 0,
    by_space: bool = True,
) -> pd.DataFrame:
    """Every metric against accuracy over the sampled architectures in ``seeds``, pooled and
    (``by_space``) per space."""
    rng = np.random.default_rng(seed)
    sample = archs[archs["role"] == "sample"]
    populations = {"pooled": sample}
    if by_space:
        populations |= {
            f"{s} space": sample[sample["space"] == s] for s in sorted(sample["space"].unique())
        }
    rows = []
    for metric, group in metric_columns(archs).items():
        for population, part in populations.items():
            values = metric_values(part, metric)
            rows.append(
                Correlation(metric, group, population, *correlate(values, seeds, noise, rng))
            )
    return pd.DataFrame([r.__dict__ for r in rows])


def fidelity(
    bench: pd.DataFrame, seeds: dict[str, np.ndarray], noise: float, seed: int = 0
) -> dict[str, float]:
    """Kendall tau between the short (seed-mean, ``seeds``: arch id -> its short-recipe seeds'
    accuracies) and the long recipe's final top-1 over the architectures trained with both,
    with its bootstrap interval."""
    long = bench[bench["recipe"] == "long"].groupby("arch_id")["top1"].mean()
    both = {a: seeds[a] for a in long.index if a in seeds}
    n, tau, lo, hi, rho, rlo, rhi = correlate(
        long[list(both)], both, noise, np.random.default_rng(seed)
    )
    return {"n": n, "tau": tau, "lo": lo, "hi": hi, "rho": rho, "rho_lo": rlo, "rho_hi": rhi}


def fidelity_by_space(
    bench: pd.DataFrame, seeds: dict[str, np.ndarray], noise: float, seed: int = 0
) -> dict[str, dict[str, float]]:
    """:func:`fidelity` within each space: whether the short recipe orders the architectures of
    one family as the long one does, not only the two families apart."""
    space = bench.drop_duplicates("arch_id").set_index("arch_id")["space"]
    return {
        s: fidelity(bench[bench["arch_id"].map(space) == s], seeds, noise, seed)
        for s in sorted(bench.loc[bench["recipe"] == "long", "space"].unique())
    }


def collinearity(archs: pd.DataFrame) -> pd.DataFrame:
    """Per space of the sample, Pearson r between log stage N_2nd and log width, and between log
    stage N_2nd and log stage N_3rd: where they are near 1, a weight on N cannot be told from a
    weight on width."""
    rows: list[dict] = []
    if not {"stage_N_2nd", "stage_N_3rd", "width"} <= set(archs):
        return pd.DataFrame(rows)
    sample = archs[archs["role"] == "sample"]
    for space, part in sample.groupby("space"):
        n2, n3, w = (
            np.log1p(part[c].astype(float)) for c in ("stage_N_2nd", "stage_N_3rd", "width")
        )
        rows.append(
            {
                "space": space,
                "n": len(part),
                "r(log N_2nd, log width)": float(np.corrcoef(n2, w)[0, 1]),
                "r(log N_2nd, log N_3rd)": float(np.corrcoef(n2, n3)[0, 1]),
            }
        )
    return pd.DataFrame(rows)


def retest(short: pd.DataFrame) -> tuple[int, float]:
    """How well the short recipe agrees with itself: over the architectures trained with seeds
    0, 1 and 2, the mean Kendall tau between two seeds' accuracies (the three pairs); the
    fidelity tau cannot be expected above it. (n, tau); tau NaN under 4 architectures."""
    by_seed = short.pivot_table(index="arch_id", columns="seed", values="top1")
    if not {0, 1, 2} <= set(by_seed.columns):
        return 0, float("nan")
    full = by_seed[[0, 1, 2]].dropna()
    if len(full) < 4:
        return len(full), float("nan")
    pairs = ((0, 1), (0, 2), (1, 2))
    taus = [stats.kendalltau(full[a], full[b]).statistic for a, b in pairs]
    return len(full), float(np.mean(taus))


AGREEMENT = 0.8  # fidelity tau from which the short recipe counts as ranking like the long one


def long_recipe(
    archs: pd.DataFrame, bench: pd.DataFrame, seeds: dict[str, np.ndarray], noise: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every metric against accuracy over the architectures trained with the long recipe: with
    the short recipe's accuracy (seed mean of ``seeds``) and with the long one's, side by side.
    The long recipe has one seed: its interval borrows the short recipe's seed noise."""
    long = bench[bench["recipe"] == "long"].groupby("arch_id")["top1"].apply(np.array)
    ids = [a for a in long.index if a in seeds]
    on_short = correlations(archs, {a: seeds[a] for a in ids}, noise, by_space=False)
    on_long = correlations(archs, {a: long[a] for a in ids}, noise, by_space=False)
    return on_short, on_long


def padding_pairs(everything: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """The padding part against the short recipe: per architecture and seed, top-1 with +1
    padding (``short_one``, the padding part's runs) and with zero padding (``short``), and the
    mean paired difference
    (+1 minus zero) with a paired t interval."""
    one = everything[everything["part"] == PADDING]
    zero = everything[everything["recipe"] == "short"].set_index(["arch_id", "seed"])["top1"]
    rows = [
        {"architecture": r["name"], "seed": r["seed"], "+1 padding": r["top1"],
         "zero padding": zero[(r["arch_id"], r["seed"])]}
        for _, r in one.sort_values(["name", "seed"]).iterrows()
        if (r["arch_id"], r["seed"]) in zero.index
    ]  # fmt: skip
    pairs = pd.DataFrame(rows, columns=["architecture", "seed", "+1 padding", "zero padding"])
    diff = (pairs["+1 padding"] - pairs["zero padding"]).to_numpy()
    summary = {"n": len(diff), "mean": float("nan"), "lo": float("nan"), "hi": float("nan")}
    if len(diff) > 1:
        half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
        summary |= {"mean": diff.mean(), "lo": diff.mean() - half, "hi": diff.mean() + half}
    return pairs.assign(difference=diff), summary


def _padding_outliers(pairs: pd.DataFrame, points: float = 0.05) -> str:
    """A sentence on the architectures whose every pair moves by more than ``points``: the mean
    of a bimodal difference hides them."""
    moved = pairs.groupby("architecture")["difference"].agg(["min", "max", "mean"])
    far = moved[(moved["min"].abs() > points) & (moved["max"].abs() > points)]
    far = far[(far["min"] > 0) == (far["max"] > 0)]  # the same sign in every seed
    if far.empty:
        return f"No architecture moves by more than {100 * points:.0f} points in every seed."
    rest = pairs[~pairs["architecture"].isin(far.index)]["difference"]
    listed = "; ".join(f"{a} {100 * r['mean']:+.1f}" for a, r in far.iterrows())
    return (
        f"The mean hides {len(far)} architecture{'s' * (len(far) != 1)} that move by more than "
        f"{100 * points:.0f} points in every seed ({listed}); the other {len(rest)} pairs "
        f"differ by {100 * rest.mean():+.2f} points on average ({100 * rest.min():+.2f} to "
        f"{100 * rest.max():+.2f})."
    )


def claims(bench: pd.DataFrame) -> pd.DataFrame:
    """Accuracy differences between zoo models (short recipe), mean over seeds with a Welch t
    interval."""
    short = bench[(bench["recipe"] == "short") & (bench["role"] == "reference")]
    by = short.groupby("name")["top1"].apply(np.array)
    rows = []
    for model, against in CLAIMS:
        if model not in by or against not in by:
            continue
        a, b = by[model], by[against]
        diff, lo, hi = welch(a, b)
        rows.append(
            {
                "model": model,
                "against": against,
                "seeds": f"{len(a)} / {len(b)}",
                "model top-1": a.mean(),
                "against top-1": b.mean(),
                "difference": diff,
                "lo": lo,
                "hi": hi,
            }
        )
    return pd.DataFrame(rows)


def width_floor(archs: pd.DataFrame, seeds: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per space: mean accuracy of sampled architectures below the space's width floor (32)
    against those at or above it."""
    rows = []
    sample = archs[archs["role"] == "sample"]
    for space, part in sample.groupby("space"):
        acc = part["arch_id"].map(lambda a: seeds[a].mean() if a in seeds else np.nan)
        below, above = acc[part["width"] < 32].dropna(), acc[part["width"] >= 32].dropna()
        rows.append(
            {
                "space": space,
                "below 32: n": len(below),
                "below 32: top-1": below.mean(),
                "32 or more: n": len(above),
                "32 or more: top-1": above.mean(),
            }
        )
    return pd.DataFrame(rows)


# -- the document -------------------------------------------------------------------------------


def _row(table: pd.DataFrame, metric: str) -> pd.Series:
    """The pooled row of ``metric`` in a correlation table."""
    return table[(table["metric"] == metric) & (table["population"] == "pooled")].iloc[0]


def _strongest(table: pd.DataFrame) -> pd.Series | None:
    """The pooled row of largest |tau|, if any tau is defined."""
    pooled = table[(table["population"] == "pooled") & table["tau"].notna()]
    return pooled.loc[pooled["tau"].abs().idxmax()] if len(pooled) else None


def _verdict(lo: float, hi: float) -> str:
    """What a tau interval says, as the end of a sentence about a key."""
    if math.isnan(lo):
        return "cannot be measured yet"
    if lo > 0:
        return "its order agrees with accuracy"
    if hi < 0:
        return "its order runs against accuracy"
    return "no relation with accuracy is detectable (the interval holds 0)"


def _plots(folder: Path, archs, seeds, table: pd.DataFrame, bench: pd.DataFrame) -> list[str]:
    matplotlib.use("Agg")

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    acc = archs["arch_id"].map(lambda a: seeds[a].mean() if a in seeds else np.nan)
    shown = [
        ("key:stage_mean_n", "default key (stage_mean_n), negated rank"),
        ("stage_N_2nd", "stage mean N_2nd"),
        ("params", "parameters"),
        ("depth", "depth"),
        ("naswot", "NASWOT"),
        ("synflow", "synflow (ln)"),
    ]
    shown = [(m, label) for m, label in shown if m.startswith("key:") or m in archs]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, (metric, label) in zip(axes.flat, shown, strict=False):
        x = metric_values(archs, metric).to_numpy()
        for space in [*list_spaces(), "zoo"]:
            colour, marker = space_style(space) if space != "zoo" else ("black", "*")
            mask = (archs["space"] == space).to_numpy()
            ax.scatter(x[mask], acc[mask], marker=marker, color=colour,
                       s=60 if space == "zoo" else 22, label=space, alpha=0.8)  # fmt: skip
        for i in np.flatnonzero((archs["role"] == "reference").to_numpy()):
            if math.isfinite(x[i]) and math.isfinite(acc.iloc[i]):
                ax.annotate(archs["name"].iloc[i], (x[i], acc.iloc[i]), fontsize=6)
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 (short recipe)")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, folder / "accuracy_vs_metrics.png", dpi=90)
    plt.close(fig)
    names.append("accuracy_vs_metrics.png")

    pooled = table[(table["population"] == "pooled") & table["tau"].notna()]
    pooled = pooled.sort_values("tau")
    fig, ax = plt.subplots(figsize=(8, max(4, 0.22 * len(pooled))))
    y = np.arange(len(pooled))
    # a percentile interval need not hold the point estimate (noise shifts the resamples)
    ax.hlines(y, pooled["tau_lo"], pooled["tau_hi"], color="tab:blue", lw=1.5)
    ax.plot(pooled["tau"], y, "o", ms=3, color="black")
    ax.set_yticks(y, pooled["metric"], fontsize=7)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("Kendall tau with test top-1 (95% bootstrap interval, seed noise included)")
    fig.tight_layout()
    atomic_savefig(fig, folder / "tau.png", dpi=90)
    plt.close(fig)
    names.append("tau.png")

    short = bench[(bench["recipe"] == "short") & (bench["seed"] == 0)].sort_values("top1")
    if len(short) >= 2:
        fig, ax = plt.subplots(figsize=(7, 4))
        picks = [short.iloc[0], short.iloc[-1]]
        picks += [r for _, r in short.iterrows() if r["name"] == "bireal_resnet18"]
        for r in picks:
            curve = json.loads(r["curve_top1"])
            ax.plot(range(1, len(curve) + 1), curve, marker="o", label=f"{r['name']}")
        ax.set_xlabel("epoch")
        ax.set_xticks(range(1, int(short["epochs"].max()) + 1))
        ax.set_ylabel("test top-1")
        ax.legend(fontsize=8)
        fig.tight_layout()
        atomic_savefig(fig, folder / "curves.png", dpi=90)
        plt.close(fig)
        names.append("curves.png")
    return names


def write_document(folder: Path = STUDY_DIR, doc: Path = DOC) -> str:
    """Analyse the study in ``folder`` and write ``doc`` (and its figures); returns the text."""
    # the prospective part tests the frozen ranking (docs/ranking.md); this analysis is the
    # benchmark's own sample, the zoo and the long recipe
    archs = load_archs(folder)
    archs = archs[~archs["role"].isin((PROSPECTIVE, transfer.WINNER))]
    everything = load_benchmark(folder)
    apart = (PROSPECTIVE, PADDING, transfer.PART)  # parts with a section of their own
    bench = everything[~everything["part"].isin(apart)]
    all_jobs = json.loads((folder / "study.json").read_text())["jobs"]
    jobs = [j for j in all_jobs if j.get("part") not in apart]
    ahead = [j for j in all_jobs if j.get("part") == PROSPECTIVE]
    padded = [j for j in all_jobs if j.get("part") == PADDING]
    moved = [j for j in all_jobs if j.get("part") == transfer.PART]
    short = bench[bench["recipe"] == "short"]
    archs = with_proxies(archs, short)
    seeds = short.groupby("arch_id")["top1"].apply(np.array).to_dict()
    noise_table, noise = seed_table(short)
    table = correlations(archs, seeds, noise)
    fid = fidelity(bench, seeds, noise)
    fid_space = fidelity_by_space(bench, seeds, noise)
    within = "; ".join(
        f"within {f['n']} {space}s {format_ci(f['tau'], f['lo'], f['hi'])}"
        if f["n"] >= 4
        else f"{f['n']} {space}s, too few for a figure"
        for space, f in fid_space.items()
    )
    claim = claims(bench)
    floor = width_floor(archs, seeds)
    figures = _plots(doc.parent / FIGURES, archs, seeds, table, bench)

    sample = archs[archs["role"] == "sample"]
    trained = sample["arch_id"].isin(seeds)
    key = _row(table, "key:stage_mean_n")
    best = _strongest(table)
    on_short, on_long = long_recipe(archs, bench, seeds, noise)
    done = {j["job"] for j in jobs} <= set(bench["job"])
    lines = [
        "# Does the gradient-path key predict what trains best?",
        "",
        "Written by `python -m results.validation` from the benchmark study (`python -m "
        "runners.study`, data in `results/study/`, loaded by "
        "`results.trained_benchmark.load_benchmark()`). Do not edit by hand: rerun the command.",
        "",
        "## Status",
        "",
        f"{len(set(bench['job']))} of {len(jobs)} jobs trained: {int(trained.sum())} of "
        f"{len(sample)} sampled architectures on the short recipe, "
        f"{(bench['recipe'] == 'long').sum()} long-recipe runs, {len(noise_table)} architectures "
        "with several seeds."
        + ("" if done else " Until every job is trained, every figure below is provisional.")
        + (
            f" The prospective part (architectures drawn from a default search after the "
            f"ranking was frozen: {len(set(everything['job']) & {j['job'] for j in ahead})} of "
            f"{len(ahead)} jobs trained) is not part of this analysis: its figures are in "
            "[ranking.md](ranking.md)."
            if ahead
            else ""
        )
        + (
            f" The padding part ({len(set(everything['job']) & {j['job'] for j in padded})} of "
            f"{len(padded)} jobs trained) has a section of its own."
            if padded
            else ""
        )
        + (
            f" So has the transfer part ({len(set(everything['job']) & {j['job'] for j in moved})}"
            f" of {len(moved)} jobs trained)."
            if moved
            else ""
        ),
        "",
        "## Conclusion",
        "",
    ]
    agree = fid["n"] < 4 or math.isnan(fid["tau"]) or fid["tau"] >= AGREEMENT
    if not agree:  # the short recipe is not a faithful proxy: the long one is the headline
        key_long = _row(on_long, "key:stage_mean_n")
        lines.append(
            f"The short recipe ranks the {fid['n']} architectures trained with both recipes "
            "differently from the long one (Kendall tau "
            f"{format_ci(fid['tau'], fid['lo'], fid['hi'])}"
            f", below {AGREEMENT}), so the headline is the long recipe's: over those "
            f"{key_long['n']} architectures the paper's key (`stage_mean_n`, smaller ranks "
            "first) has Kendall tau "
            f"{format_ci(key_long['tau'], key_long['tau_lo'], key_long['tau_hi'])}"
            f" with long-recipe accuracy: **{_verdict(key_long['tau_lo'], key_long['tau_hi'])}**"
            f" (on the short recipe, the same architectures: "
            f"{format_ci(*_row(on_short, 'key:stage_mean_n')[['tau', 'tau_lo', 'tau_hi']])})."
        )
        best_long = _strongest(on_long)
        if best_long is not None:
            lines.append(
                f"On the long recipe the metric of largest |tau| is `{best_long['metric']}` "
                f"({best_long['group']}): tau "
                f"{format_ci(best_long['tau'], best_long['tau_lo'], best_long['tau_hi'])}."
            )
        lines.append("On the short recipe, over every sampled architecture:")
    if key["n"] >= 4 and not math.isnan(key["tau"]):
        lines.append(
            f"Over {key['n']} sampled architectures of equal FLOPs, the paper's key "
            f"(`stage_mean_n`, smaller ranks first) has Kendall tau "
            f"{format_ci(key['tau'], key['tau_lo'], key['tau_hi'])} with short-recipe accuracy "
            "(positive: its order agrees with accuracy): "
            f"**{_verdict(key['tau_lo'], key['tau_hi'])}**."
        )
        if best is not None:
            lines.append(
                f"The metric of largest |tau| is `{best['metric']}` ({best['group']}): tau "
                f"{format_ci(best['tau'], best['tau_lo'], best['tau_hi'])}."
            )
    else:
        lines.append("Too few architectures are trained yet for a conclusion.")
    if math.isnan(noise):
        lines.append(
            "Seed noise is not measured yet (no architecture has several seeds): the intervals "
            "cover the sampling of architectures only."
        )
    else:
        lines.append(
            f"Seed noise: the pooled standard deviation of final top-1 over seeds is "
            f"{100 * noise:.2f} points ({len(noise_table)} architectures)."
        )
    if agree and fid["n"] >= 4 and not math.isnan(fid["tau"]):
        lines.append(
            f"Proxy fidelity: short and long recipe rank {fid['n']} architectures with Kendall "
            f"tau {format_ci(fid['tau'], fid['lo'], fid['hi'])}, at least {AGREEMENT} (at most one "
            f"pair in ten ordered differently): the short recipe's {key['n']} architectures carry "
            f"the headline. That agreement is mostly the gap between the two families: {within}"
            ". Within a family the short recipe's order is a weaker guide than the pooled figure "
            "says wherever that interval is wide."
        )
    lines += ["", "## Rank correlations with accuracy", ""]
    lines.append(
        "Kendall tau and Spearman rho of each metric with final test top-1 (short recipe, mean "
        "over seeds), 95% bootstrap intervals with seed noise. A positive value: the larger the "
        "metric, the higher the accuracy; for a scorer's key: its order (smaller first) agrees "
        "with accuracy."
    )
    lines.append("")
    for population, part in table.groupby("population", sort=False):
        lines += [f"### {population}", ""]
        lines.append("| metric | group | n | Kendall tau | Spearman rho |")
        lines.append("|---|---|---|---|---|")
        for _, r in part.iterrows():
            tau = format_ci(r["tau"], r["tau_lo"], r["tau_hi"]) if r["n"] >= 4 else "-"
            rho = format_ci(r["rho"], r["rho_lo"], r["rho_hi"]) if r["n"] >= 4 else "-"
            if r["n"] >= 4 and math.isnan(r["tau"]):
                tau = rho = "constant"
            lines.append(f"| `{r['metric']}` | {r['group']} | {r['n']} | {tau} | {rho} |")
        lines.append("")
    collinear = collinearity(archs)
    if len(collinear):
        lines += [
            "Within a space the gradient-path components move with width: Pearson r over the "
            "sampled architectures (near 1: a weight on N cannot be told apart from a weight on "
            "width, and a correlation of N with accuracy may be width's):",
            "",
            collinear.to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    lines += ["## Seed noise", ""]
    if len(noise_table):
        names = archs.set_index("arch_id")["name"]
        lines += [
            "| architecture | seeds | mean top-1 | SD | span (max - min) |",
            "|---|---|---|---|---|",
        ]
        for aid, r in noise_table.iterrows():
            lines.append(
                f"| {names.get(aid, aid)} | {int(r['seeds'])} | {r['mean']:.4f} | {r['sd']:.4f} | "
                f"{r['span']:.4f} |"
            )
        lines += ["", f"Pooled SD: {noise:.4f}.", ""]
    else:
        lines += ["No architecture has several seeds yet.", ""]
    lines += ["## Proxy fidelity (short against long recipe)", ""]
    lines.append(
        f"n = {fid['n']}: Kendall tau {format_ci(fid['tau'], fid['lo'], fid['hi'])}, Spearman rho "
        f"{format_ci(fid['rho'], fid['rho_lo'], fid['rho_hi'])}."
        if fid["n"] >= 4
        else f"n = {fid['n']}: too few architectures with both recipes yet."
    )
    if fid["n"] >= 4:
        lines.append(f"Within each space (the families differ by several points): {within}.")
    n_retest, tau_retest = retest(short[short["role"] == "sample"])
    if not math.isnan(tau_retest):
        lines.append(
            f"For scale: two seeds of the short recipe rank the {n_retest} sampled architectures "
            f"trained with 3 seeds with Kendall tau {tau_retest:+.2f} (mean over the seed pairs)."
        )
    if fid["n"] >= 4:
        lines += [
            "",
            f"Every metric on the {fid['n']} architectures trained with both recipes, against "
            "each recipe's accuracy (the long recipe's intervals borrow the short recipe's seed "
            "noise: it has one seed):",
            "",
            "| metric | group | n | Kendall tau, short | Kendall tau, long | Spearman rho, long |",
            "|---|---|---|---|---|---|",
        ]
        for (_, a), (_, b) in zip(on_short.iterrows(), on_long.iterrows(), strict=True):
            cells = [
                format_ci(a["tau"], a["tau_lo"], a["tau_hi"]),
                format_ci(b["tau"], b["tau_lo"], b["tau_hi"]),
                format_ci(b["rho"], b["rho_lo"], b["rho_hi"]),
            ]
            if b["n"] < 4:
                cells = ["-"] * 3
            elif math.isnan(b["tau"]):  # the metric is constant over these architectures
                cells = ["constant"] * 3
            lines.append(f"| `{b['metric']}` | {b['group']} | {b['n']} | {' | '.join(cells)} |")
    lines += ["", "## The paper's claims (short recipe)", ""]
    if len(claim):
        lines += [
            "Differences of the seed means, with a Welch t interval over the seeds (not the "
            "bootstrap of the correlations above).",
            "",
            "| model | against | seeds | model top-1 | against top-1 | difference [95% CI] |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in claim.iterrows():
            diff = format_ci(100 * r["difference"], 100 * r["lo"], 100 * r["hi"])
            lines.append(
                f"| {r['model']} | {r['against']} | {r['seeds']} | {r['model top-1']:.4f} | "
                f"{r['against top-1']:.4f} | {diff} points |"
            )
    else:
        lines.append("Not trained yet.")
    pairs, padding = padding_pairs(everything)
    if len(pairs):
        lines += [
            "",
            "## +1 padding against zero padding (short recipe)",
            "",
            "The search trains with +1 padding, which packed inference computes exactly; the "
            "study's other runs pad with zeros. The same architectures and seeds, both ways "
            f"(+1 minus zero, mean over {padding['n']} pairs with a paired t interval): "
            f"**{100 * padding['mean']:+.2f} points [{100 * padding['lo']:+.2f}, "
            f"{100 * padding['hi']:+.2f}]**. " + _padding_outliers(pairs),
            "",
            pairs.to_markdown(index=False, floatfmt=".4f"),
        ]
    runs = transfer.transfer_runs(everything, all_jobs)
    if len(runs):
        lines += ["", *_transfer_section(runs, noise, doc.parent / FIGURES)]
    lines += ["", "## The width floor", ""]
    lines.append(
        "The search keeps base widths and growth rates of at least 32; the study's sample has "
        "no floor. Mean short-recipe top-1 of sampled architectures below and above it:"
    )
    lines += ["", floor.to_markdown(index=False, floatfmt=".4f") if len(floor) else "-", ""]
    lines += ["## Figures", ""] + [f"![{f}]({FIGURES}/{f})" for f in figures] + [""]
    text = "\n".join(lines)
    atomic_write_text(doc, text)
    return text


def _transfer_section(runs: pd.DataFrame, noise: float, figures: Path) -> list[str]:
    """The transfer part's section: 2 epochs against 10 on the same images and seeds."""
    agreement = transfer.rank_agreement(runs, noise)
    diffs = transfer.against_baseline(runs)
    lines = [
        "## Transfer: does the 2-epoch proxy's verdict hold after 10 epochs?",
        "",
        "The main job's winners (seeds 0-3), the zoo models of the paper's claims and sampled "
        "architectures spanning depth in both spaces, each trained with seeds 0 and 1 on "
        f"`{transfer.PROXY}` (2 epochs of 20,000 images, +1 padding: the search's proxy) and on "
        f"`{transfer.LONG}` (10 epochs of the same images: 5x the cost).",
        "",
    ]
    if agreement["n"] >= 4 and not math.isnan(agreement["tau"]):
        lines.append(
            f"**Rank agreement** over the {agreement['n']} models trained with both: Kendall tau "
            f"{format_ci(agreement['tau'], agreement['lo'], agreement['hi'])} (seed means; the "
            "interval resamples models and proxy seeds)."
        )
    else:
        lines.append(f"Rank agreement: {agreement['n']} models with both recipes, too few yet.")
    if len(diffs):
        lines += [
            "",
            "**Against Bi-Real ResNet18**, the same recipe and seeds (points, Welch t interval "
            "over seeds; seeds of the model / of the baseline):",
            "",
            "| model | 2 epochs | 10 epochs | from 2 to 10 epochs |",
            "|---|---|---|---|",
        ]
        for model, part in diffs.groupby("model", sort=False):
            cells = {
                r["recipe"]: f"{format_ci(r['difference'], r['lo'], r['hi'])} "
                f"({r['seeds']} / {r['baseline seeds']})"
                for _, r in part.iterrows()
            }
            values = part.set_index("recipe")["difference"]
            move = (
                f"the difference {transfer.trend(values[transfer.PROXY], values[transfer.LONG])}"
                if len(values) == 2
                else "-"
            )
            lines.append(
                f"| {model} | {cells.get(transfer.PROXY, '-')} | {cells.get(transfer.LONG, '-')} "
                f"| {move} |"
            )
    table = transfer.model_table(runs)
    lines += ["", table.to_markdown(index=False, floatfmt=".2f", missingval="-"), ""]
    figures.mkdir(parents=True, exist_ok=True)
    transfer.curves_plot(runs, figures / "transfer_curves.png")
    lines.append(f"![transfer_curves.png]({FIGURES}/transfer_curves.png)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m results.validation", description=__doc__)
    parser.add_argument("--study", default=str(STUDY_DIR), help="the study directory")
    parser.add_argument("--doc", default=str(DOC), help="the document to write")
    args = parser.parse_args(argv)
    folder = Path(args.study)
    for name in ("study.json", "archs.csv", "runs.csv"):
        if not (folder / name).is_file():
            raise cli.UsageError(
                f"{folder} has no {name}: run python -m runners.study --out {folder} first"
            )
    write_document(folder, Path(args.doc))
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    from nas import cli

    sys.exit(cli.run("results.validation", main))
