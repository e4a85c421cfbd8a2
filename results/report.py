"""The report of a search run, built from its files alone: ``python -m results.report RUN_DIR``.

Reads ``settings.json``, ``candidates.csv`` and ``specs/``; writes ``report.md``, ``report.html``
and ``plots/*.png`` (pandas tables, matplotlib plots), each atomically.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from html import escape
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from markdown_it import MarkdownIt
from matplotlib.ticker import MaxNLocator
from sqlalchemy.engine import make_url

from nas import cli
from nas.core.atomic import atomic_savefig, atomic_write_text
from nas.core.budget import band
from nas.core.candidates import PATH_COLUMNS
from nas.core.graph import lower, scopes
from nas.core.metrics import PathGraph
from nas.core.model_dir import best_model_dir, is_model_dir, read_metrics
from nas.core.names import printable
from nas.core.pathplot import plot_scope
from nas.core.scopes import block_path, stage_label
from nas.core.scorers import CAPACITY_SCORER, PAPER_SCORER, get_scorer, ranking_choice
from nas.core.spec import ArchSpec
from results.run import (
    CANDIDATES,
    CURVE_COLUMNS,
    CURVES,
    DRAWS,
    FINAL,
    PLOTS,
    REPORT,
    SPECS,
    TRAINED,
    RunFileError,
    RunRefused,
    is_run_dir,
    lock_run_dir,
    read_draws,
    read_settings,
)
from results.style import space_style

DPI = 110  # of the report's plots
PAGE_BLOCKS = 3  # the widest first stage drawn whole in the report; beyond, its first block
METRICS = PATH_COLUMNS
# What the report reads of each table, and which of those columns are numbers.
_NEEDED = {
    CANDIDATES: (
        ("rank", "arch_id", "space", "reference", "in_band", "flops", "storage_mbit", "width"),
        ("rank", "flops", "storage_mbit", "width", "depth", *METRICS),
    ),
    TRAINED: (("arch_id", "status", "epoch", "top1"), ("epoch", "top1")),
    CURVES: (("arch_id", "epoch", "top1"), ("epoch", "top1")),
}


class TableError(ValueError):
    """A run's table that cannot be read: one line naming the file and what to do."""


def read_table(run_dir: Path, name: str) -> pd.DataFrame:
    """``run_dir/name`` as a DataFrame, checked for the columns the report uses."""
    path = run_dir / name
    fix = "rebuild it with python -m nas.search --resume " + str(run_dir)
    try:
        table = pd.read_csv(path, dtype={"arch_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TableError(f"{path} cannot be read as CSV ({reason}); {fix}") from None
    columns, numbers = _NEEDED[name]
    missing = [c for c in (*columns, *numbers) if c not in table.columns]
    if missing:
        raise TableError(f"{path} lacks the columns {', '.join(missing)}; {fix}")
    for column in numbers:
        try:
            table[column] = pd.to_numeric(table[column])
        except (ValueError, TypeError):
            raise TableError(
                f"{path}: column {column} holds values that are not numbers; {fix}"
            ) from None
    return table


def model_name(rank: int | float | None, reference: str) -> str:
    """How the report names a model: its zoo name, or its rank (``#3``)."""
    if reference:
        return reference
    return f"#{int(rank)}" if rank is not None and pd.notna(rank) else "?"


def _label_points(ax, xs, ys, labels, **style) -> None:
    """Label points so that no two labels overlap: a label whose drawn box would overlap
    another's joins it (``#1, #4``), and a label that would run past the axes' right edge is
    set to the left of its point, until neither happens. Call it once the figure's layout is
    final (after ``tight_layout``): the boxes are measured where they will be drawn."""
    renderer = ax.figure.canvas.get_renderer()
    ax.autoscale_view()  # the limits as they will be drawn (matplotlib defers them)
    groups: list[tuple[object, list[str]]] = []
    for x, y, label in sorted(zip(xs, ys, labels, strict=True), key=lambda p: (p[0], p[1])):
        if np.isfinite(x) and np.isfinite(y):
            text = ax.annotate(
                label, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points", zorder=6,
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
                **style,
            )  # fmt: skip
            groups.append((text, [label]))
    edge = ax.get_window_extent(renderer).x1
    changed = True
    while changed:
        changed = False
        for text, _ in groups:  # past the right edge: to the left of the point
            if text.get_ha() == "left" and text.get_window_extent(renderer).x1 > edge - 2:
                text.set_ha("right")
                text.xyann = (-4, 3)
                changed = True
        boxes = [text.get_window_extent(renderer) for text, _ in groups]
        pair = next(
            ((a, b) for a in range(len(groups)) for b in range(a + 1, len(groups))
             if boxes[a].overlaps(boxes[b])),
            None,
        )  # fmt: skip
        if pair:  # one merge at a time: the grown label is measured again
            a, b = pair
            groups[a][1].extend(groups[b][1])
            groups[a][0].set_text(", ".join(groups[a][1]))
            groups[b][0].remove()
            del groups[b]
            changed = True


def verdict(settings: dict, trained: pd.DataFrame) -> tuple[str, str]:
    """The report's first paragraph once training ran, as its headline (the best fully trained
    candidate against the baseline of the same run, with the benchmark's seed noise) and the
    rest (how many were trained, the ranking's held-out Kendall tau: nas/core/ranking_choice.json,
    docs/ranking.md)."""
    training = settings.get("training") or {}
    epochs = training.get("epochs")
    base_name = training.get("baseline") or ""
    choice = ranking_choice()
    scorer = settings["scorer"]

    def tau(name: str) -> str:
        value = choice.get("held_out_tau", {}).get(name)
        if not value or value[0] is None or not np.isfinite(value[0]):
            return "not measured"
        return f"{value[0]:+.2f} [{value[1]:+.2f}, {value[2]:+.2f}]"

    full = trained[(trained["status"] == "trained") & (trained["reference"] == "")]
    base = trained[(trained["reference"] == base_name) & (trained["status"] == "trained")]
    ranking = (
        f"The ranking (`{scorer}`) has a held-out Kendall tau of {tau(scorer)} against trained "
        f"accuracy on the benchmark of trained binary CNNs"
        + (
            f" (the paper's key `{PAPER_SCORER}`: {tau(PAPER_SCORER)})"
            if scorer != PAPER_SCORER
            else ""
        )
        + (
            f"; capacity alone, reading no gradient path (`{CAPACITY_SCORER}`): "
            f"{tau(CAPACITY_SCORER)}"
            if scorer != CAPACITY_SCORER
            else ""
        )
        + " (docs/ranking.md)."
    )
    if not len(full):
        return f"Verdict: no candidate finished its {_count(epochs, 'epoch')}.", ranking
    best = full.sort_values("top1", ascending=False).iloc[0]
    what = (
        f"the best trained candidate, {model_name(best['rank'], '')} ({best['space']}, "
        f"arch {best['arch_id']}), reached {best['top1'] * 100:.2f}% test top-1 after "
        f"{_count(int(best['epoch']), 'epoch')}"
    )
    if not len(base):
        return f"Verdict: {what}; no baseline was trained beside it.", ranking
    b = base.iloc[0]
    diff = (best["top1"] - b["top1"]) * 100
    sd = choice.get("benchmark", {}).get("seed_sd")
    if sd:
        noise = 2 * np.sqrt(2) * sd * 100  # two standard deviations of a difference of two runs
        within = "within" if abs(diff) <= noise else "beyond"
        noise_text = (
            f"; {within} the seed noise (on the benchmark a difference of two seeds varies by "
            f"+/-{noise:.2f} points, two standard deviations)"
        )
    else:
        noise_text = "; the seed noise is not measured yet (no benchmark architecture has "
        noise_text += "several seeds)"
    better = "above" if diff > 0 else "below"
    return (
        f"Verdict: {what}, {abs(diff):.2f} points {better} the baseline {base_name} "
        f"({b['top1'] * 100:.2f}%, the same recipe in the same run){noise_text}.",
        f"{_count(len(trained) - 1, 'candidate')} {'was' if len(trained) == 2 else 'were'} "
        "trained by successive halving (one epoch each, the best third of them on to "
        f"{epochs}). {ranking}",
    )


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless n is 1: 1 epoch, 3 epochs."""
    return f"{n} {noun}{'s' * (n != 1)}"


def pareto_front(table: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated in (x, y), both minimised, sorted by x."""
    rows = table.sort_values([x, y])
    front, best = [], float("inf")
    for _, row in rows.iterrows():
        if row[y] < best:
            front.append(row)
            best = row[y]
    return pd.DataFrame(front)


def key_values(table: pd.DataFrame) -> pd.Series:
    """The first value of each row's ranking key (candidates.csv stores it as a JSON list);
    NaN where it is infinite (a metric the scorer cannot read)."""
    first = table["key"].map(lambda k: json.loads(k)[0] if isinstance(k, str) else k)
    return pd.to_numeric(first, errors="coerce").replace([np.inf, -np.inf], np.nan)


def key_figure(table: pd.DataFrame, settings: dict, x: str, trained: dict[str, str]):
    """Two panels against ``x`` (``flops``: the candidates in the band; ``storage_mbit``:
    every candidate and reference model): the ranking's key, and the paper's N_2nd. Families
    apart by colour and marker, reference models as labelled stars, the trained candidates
    (``trained``: arch id -> name) ringed and labelled; labels never overlap, so the zoo models
    are labelled by letter, named under the panels."""
    matplotlib.use("Agg")
    scale, label = (
        (1e9, "FLOPs (1e9) = FP MACs + BOPs/64") if x == "flops" else (1.0, "storage (Mbit)")
    )
    table = table.assign(key_value=key_values(table)).dropna(subset=["N_2nd"])
    if x == "flops":
        table = table[table["in_band"].astype(bool)]
    found = table[table["reference"] == ""]
    refs = table[table["reference"] != ""]
    ringed = found[found["arch_id"].isin(trained)]
    first_only = table["key"].map(lambda k: isinstance(k, str) and k.count(",") > 0).any()
    scorer = settings["scorer"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=DPI)  # labels measured as saved
    panels = (
        ("key_value", f"ranking key: {scorer}" + (" (first value)" if first_only else "")
         + ", smaller ranks first", 1.0),
        ("N_2nd", "the paper's N_2nd, mean over stages (M FLOP-eq, log)", 1e6),
    )  # fmt: skip
    for ax, (column, ylabel, yscale) in zip(axes, panels, strict=True):
        for space, part in sorted(found.groupby("space"), key=lambda g: -len(g[1])):
            colour, marker = space_style(space)
            ax.scatter(  # the smaller groups drawn last: on top
                part[x] / scale, part[column] / yscale, s=12, alpha=0.55, marker=marker,
                color=colour, label=f"{space} candidates",
            )  # fmt: skip
        ax.scatter(
            ringed[x] / scale, ringed[column] / yscale, s=90, facecolors="none",
            edgecolors="black", linewidths=1.4, label="trained candidates",
        )  # fmt: skip
        if len(refs):
            ax.scatter(
                refs[x] / scale, refs[column] / yscale, marker="*", s=120, color="gold",
                edgecolors="black", label="reference models (zoo)",
            )  # fmt: skip
        if column == "N_2nd":
            ax.set_yscale("log")
            in_band = found[found["in_band"].astype(bool)]
            front = pareto_front(in_band, x, "N_2nd") if x == "storage_mbit" else []
            if len(front):
                ax.step(front[x] / scale, front["N_2nd"] / yscale, where="post", color="green",
                        lw=1, label="Pareto front of N_2nd (in band)")  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
    if x == "flops":
        low, high = band(settings["budget"], settings["tolerance"])
        for ax in axes:
            ax.set_xlim(low / scale * 0.998, high / scale * 1.002)
        outside = int((~refs["in_band"].astype(bool)).sum()) if len(refs) else 0
        fig.suptitle(
            "the candidates in the FLOPs band"
            + (f" (the {outside} reference models outside it: see key_vs_storage)" if outside
               else "")
        )  # fmt: skip
    else:
        fig.suptitle("every candidate and reference model against storage")
    axes[0].legend(fontsize=7, loc="best")
    # the zoo models by letter (A: the best ranked), their names in a line under the panels
    refs = refs.sort_values("rank")
    letters = [chr(ord("A") + k) if k < 26 else str(k + 1) for k in range(len(refs))]
    if len(refs):
        names = ", ".join(f"{c} {n}" for c, n in zip(letters, refs["reference"], strict=True))
        fig.text(0.01, 0.01, f"zoo models: {names}", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.07 if len(refs) else 0, 1, 1))
    for ax, (column, _, yscale) in zip(axes, panels, strict=True):
        _label_points(
            ax, list(ringed[x] / scale) + list(refs[x] / scale),
            list(ringed[column] / yscale) + list(refs[column] / yscale),
            [trained[a] for a in ringed["arch_id"]] + letters,
        )  # fmt: skip
    return fig


def make_plots(
    run_dir: Path, settings: dict, table: pd.DataFrame, trained: pd.DataFrame | None
) -> dict[str, str]:
    """The report's plots of the candidates and, where training ran, of ``trained`` (its
    :func:`trained_models`)."""
    matplotlib.use("Agg")

    plots = run_dir / PLOTS
    made: dict[str, str] = {}
    names: dict[str, str] = {}  # the trained candidates the key plots mark
    if trained is not None:
        done = trained[trained["status"].isin(("trained", "stopped"))]
        names = dict(zip(done["arch_id"], done["model"], strict=True))
    for x, name in (("flops", "key_vs_flops"), ("storage_mbit", "key_vs_storage")):
        fig = key_figure(table, settings, x, names)
        atomic_savefig(fig, plots / f"{name}.png", dpi=DPI)
        plt.close(fig)
        made[name] = f"plots/{name}.png"

    # the best model's first stage: the best trained candidate, else the top-ranked one
    top = sorted((run_dir / SPECS).glob("rank*.json"))
    best = best_model_dir(run_dir)
    drawn = [("best_stage1", run_dir / SPECS / f"{best.name}.json")] if best else []
    if top and (not drawn or drawn[0][1] != top[0]):
        drawn.append(("top_ranked_stage1" if drawn else "best_stage1", top[0]))
    for name, path in drawn:
        spec = ArchSpec.load(path)
        ops = lower(spec)
        # a stage of more than a few blocks is drawn as its first block, readable at page width
        scope = stage_label(0) if len(spec.stages[0].blocks) <= PAGE_BLOCKS else block_path(0, 0)
        tmp = plots / f".{name}.tmp.png"
        plot_scope(spec, PathGraph.from_ops(ops, scopes(ops)), scope, str(tmp))
        tmp.replace(plots / f"{name}.png")
        made[name] = f"plots/{name}.png"
    return made


def _tables(table: pd.DataFrame, top: int, scorer: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    shown = [
        "rank",
        "arch_id",
        "space",
        "reference",
        "in_band",
        "key",
        "flops",
        "storage_mbit",
        "width",
        "depth",
        "N_1st",
        "N_2nd",
        "N_3rd",
        "L_1st",
        "L_2nd",
        "L_3rd",
    ]
    view = table[shown].copy()
    view["key"] = view["key"].map(_key_text)
    view["flops"] = (view["flops"] / 1e9).round(4)
    view["storage_mbit"] = view["storage_mbit"].round(2)
    for c in ("N_1st", "N_2nd", "N_3rd"):
        view[c] = (view[c] / 1e6).round(4)
    for c in ("L_1st", "L_2nd", "L_3rd"):  # counts of binary convs (a stage mean: .5 happens)
        view[c] = view[c].map(lambda v: "-" if pd.isna(v) else f"{v:g}")
    view = view.rename(
        columns={
            "key": f"key ({scorer}, smaller first)",
            "flops": "FLOPs (1e9)",
            "N_1st": "N_1st (M)",
            "N_2nd": "N_2nd (M)",
            "N_3rd": "N_3rd (M)",
        }
    )
    found = view[view["reference"].fillna("") == ""].head(top)
    refs = view[view["reference"].fillna("") != ""]
    return found, refs


def _key_text(key: str) -> str:
    """A ranking key as candidates.csv stores it (a JSON list) for a table: 4 significant
    digits each; an infinite value (a metric the scorer cannot read) as inf."""
    try:
        values = json.loads(key) if isinstance(key, str) else [key]
    except ValueError:
        return str(key)
    return ", ".join(f"{v:.4g}" if isinstance(v, (int, float)) else str(v) for v in values)


def one_row_per_arch(table: pd.DataFrame) -> pd.DataFrame:
    """The candidates table with one row per arch id: a reference model that the search also
    found keeps its reference row (it is named after the zoo model)."""
    return table.sort_values("reference", ascending=False, kind="stable").drop_duplicates("arch_id")


def read_curves(run_dir: Path) -> pd.DataFrame:
    """``curves.csv`` (one row per trained model and epoch), empty when training wrote none."""
    path = run_dir / CURVES
    if path.is_file() and path.stat().st_size > 1:
        return read_table(run_dir, CURVES)
    return pd.DataFrame(columns=list(CURVE_COLUMNS))


def trained_models(run_dir: Path, table: pd.DataFrame) -> pd.DataFrame:
    """``trained.csv`` with each model's name, rank, space, reference and path metrics."""
    trained = read_table(run_dir, TRAINED)
    joined = trained.merge(
        one_row_per_arch(table)[["arch_id", "rank", "space", "reference", *METRICS]],
        on="arch_id",
        how="left",
    )
    joined["reference"] = joined["reference"].fillna("")
    joined.insert(
        0,
        "model",
        [model_name(r, ref) for r, ref in zip(joined["rank"], joined["reference"], strict=True)],
    )
    return joined


def training_section(run_dir: Path, joined: pd.DataFrame) -> tuple[list[str], dict]:
    """Markdown lines, HTML and plots of the trained candidates (``joined``: their
    :func:`trained_models`; ``curves.csv``):
    their accuracy, its rank correlation with each gradient-path metric (Kendall tau, Spearman
    rho), learning curves, and the trials that failed with their reason."""
    names = dict(zip(joined["arch_id"], joined["model"], strict=True))
    curves = read_curves(run_dir)
    # halving stops some trials early: compare every candidate at the last epoch all reached
    done = joined[joined["status"].isin(("trained", "stopped"))]
    common = int(done["epoch"].min()) if len(done) else 0
    at_common = curves[curves["epoch"] == common][["arch_id", "top1"]]
    done = done.drop(columns="top1").merge(at_common, on="arch_id")

    def rank_correlation(metric: str, method: str) -> float | None:
        pairs = done[["top1", metric]].dropna()
        if len(pairs) < 3 or pairs[metric].nunique() < 2 or pairs["top1"].nunique() < 2:
            return None  # undefined
        return pairs["top1"].corr(pairs[metric], method=method)

    constant = [m for m in METRICS if done[m].nunique() < 2]
    correlations = pd.DataFrame(
        [
            {
                "metric": m,
                "Kendall tau": rank_correlation(m, "kendall"),
                "Spearman rho": rank_correlation(m, "spearman"),
            }
            for m in METRICS
            if m not in constant
        ],
        columns=["metric", "Kendall tau", "Spearman rho"],
    ).round(3)
    results = joined.sort_values("top1", ascending=False, na_position="last")[
        ["model", "arch_id", "status", "epoch", "top1", "top5", "test_loss", "images_per_s",
         "train_seconds"]
    ].copy()  # fmt: skip
    results[["top1", "top5"]] *= 100
    results = results.round({"test_loss": 4, "images_per_s": 0, "train_seconds": 1}).rename(
        columns={
            "top1": "top-1 %",
            "top5": "top-5 %",
            "images_per_s": "images/s (shared)",
            "train_seconds": "seconds",
        }
    )
    failed = joined[joined["status"] == "failed"][["model", "arch_id", "error"]]
    plots: dict[str, str] = {}
    if len(curves):
        matplotlib.use("Agg")

        fig, ax = plt.subplots(figsize=(7, 4))
        baselines = set(joined.loc[joined["reference"] != "", "arch_id"])  # the pool has none
        for aid, part in curves.groupby("arch_id"):
            if aid in baselines:
                ax.plot(part["epoch"], part["top1"], color="black", ls="--", lw=2.2, marker="s",
                        label=f"{names.get(aid, aid)} (baseline)", zorder=5)  # fmt: skip
            else:
                ax.plot(part["epoch"], part["top1"], marker="o", label=names.get(aid, aid))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1")
        ax.set_title("learning curves of the trained candidates")
        ax.legend(fontsize=7)
        fig.tight_layout()
        atomic_savefig(fig, run_dir / PLOTS / "learning_curves.png", dpi=DPI)
        plt.close(fig)
        plots["learning_curves"] = "plots/learning_curves.png"
    # the N values (L values are small integers, see the table); a constant one is left out
    costs = [m for m in METRICS[:3] if done[m].nunique() > 1]
    if len(done) and costs:
        fig, axes = plt.subplots(
            1, len(costs), figsize=(4 * len(costs), 3.4), sharey=True, squeeze=False
        )
        for ax, metric in zip(axes[0], costs, strict=True):
            ax.scatter(done[metric] / 1e6, done["top1"])
            _label_points(ax, done[metric] / 1e6, done["top1"], done["model"])
            ax.set_xlabel(f"{metric} (M FLOP-equivalents)")
        axes[0][0].set_ylabel(f"test top-1 at epoch {common}")
        fig.suptitle("trained accuracy against the gradient-path metrics")
        fig.tight_layout()
        atomic_savefig(fig, run_dir / PLOTS / "accuracy_vs_metrics.png", dpi=DPI)
        plt.close(fig)
        plots["accuracy_vs_metrics"] = "plots/accuracy_vs_metrics.png"
    note = (
        f"Rank correlation of test top-1 at epoch {common} (the last epoch every trained "
        "candidate reached; successive halving stops weak trials early) with each metric "
        "(a good predictor has a strongly negative value: smaller N, better accuracy; "
        "undefined below 3 trained candidates)."
        + (
            f" Left out, the same for every trained model: {', '.join(constant)}."
            if constant
            else ""
        )
    )
    md = [
        "## Trained candidates",
        "",
        "By test top-1. Images per second are not comparable between models: the trials "
        "shared the machine's cores, and a trial that ran alone (the last of the halving) ran "
        "faster.",
        "",
        # two decimals of a percent, as the verdict gives them; a missing value (NaN: None for
        # tabulate) as -
        results.astype(object)
        .where(results.notna(), None)
        .to_markdown(
            index=False,
            missingval="-",
            floatfmt=("", "", "", ".0f", ".2f", ".2f", ".4f", ".0f", ".1f"),
        ),  # fmt: skip
        "",
        "### Accuracy against the gradient-path metrics",
        "",
        note,
        "",
        correlations.to_markdown(index=False),
        "",
    ]
    if len(failed):
        md += ["### Failed trials", "", failed.to_markdown(index=False), ""]
    return md, plots


def final_section(run_dir: Path) -> tuple[list[str], dict]:
    """Markdown lines and the plot of ``python -m nas.final``'s models (``final/<name>/``):
    the winner against the baseline at the final recipe, latency and size of the packed models,
    and their learning curves."""
    folders = sorted(f for f in (run_dir / FINAL).iterdir() if is_model_dir(f))
    rows = []
    for folder in folders:
        m = read_metrics(folder)
        if "latency_ms_per_image" not in m:
            continue  # trained, not yet packed and timed: the command did not finish
        one = m["latency_ms_per_image"][0]
        rows.append(
            {
                "model": folder.name,
                "role": "baseline" if m.get("baseline") else "candidate",
                "epochs": m["epoch"],
                "top-1 %": 100 * m["top1"],
                "top-5 %": 100 * m["top5"],
                "packed ms/image (batch 1)": one["packed_ms"],
                "PyTorch fp32 ms/image": one["torch_fp32_ms"],
                "PyTorch int8 ms/image": one.get("torch_int8_ms"),
                "packed Mbit": m["file_mbit"]["model.packed.pt"],
                "spec storage Mbit": m["file_mbit"]["spec_storage"],
                "curve": m["curve"],
            }
        )
    if not rows:
        return [], {}
    table = pd.DataFrame(rows)
    lines = ["## Final training", ""]
    best = table[table["role"] == "candidate"].sort_values("top-1 %", ascending=False)
    base = table[table["role"] == "baseline"]
    if len(best) and len(base):
        gap = best["top-1 %"].iloc[0] - base["top-1 %"].iloc[0]
        epochs = int(best["epochs"].iloc[0])
        lines += [
            f"At the final recipe ({epochs} epoch{'s' * (epochs != 1)}), "
            f"**{best['model'].iloc[0]}** reaches {best['top-1 %'].iloc[0]:.2f}% top-1, "
            f"{gap:+.2f} points against the baseline {base['model'].iloc[0]} "
            f"({base['top-1 %'].iloc[0]:.2f}%; one seed each). Latency: one thread of "
            f"{read_metrics(folders[0]).get('cpu', 'this CPU')}.",
            "",
        ]
    lines += [table.drop(columns="curve").round(3).to_markdown(index=False), ""]
    matplotlib.use("Agg")
    fig, ax = plt.subplots(figsize=(7, 4))
    for _, r in table.iterrows():
        curve = pd.DataFrame(r["curve"])
        style = "--" if r["role"] == "baseline" else "-"
        ax.plot(curve["epoch"], 100 * curve["top1"], style, marker="o", label=r["model"])
    last = int(table["epochs"].max())
    ax.set_xticks(range(1, last + 1, max(1, last // 15)))  # whole epochs, even for one
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("final training (baseline dashed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, run_dir / PLOTS / "final_curves.png", dpi=DPI)
    plt.close(fig)
    return lines, {"final_curves": "plots/final_curves.png"}


def _study_place(storage: str) -> str:
    """Where the study is, as the report names it: the run's own database, or the --storage URL
    without its password."""
    if not storage:
        return "study.db (this run directory)"

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads
        return storage.split(":", 1)[0] + " storage"


def draws_sentence(counts: dict) -> str:
    """Where a search's draws went (``draws.json``), in words."""
    drawn = counts["drawn"]
    return (
        f"{counts['candidates']} candidates from {drawn} structures drawn: {counts['repeats']} "
        f"drawn before (skipped unevaluated), {counts['outside']} with no width in the band, "
        f"{counts['same_arch']} another structure's architecture (the spaces hold "
        f"{counts['space_size']:,} structures)"
    )


# report.html is report.md rendered (CommonMark and its tables); raw HTML in the text is escaped,
# never passed through, so a name or a setting that holds markup prints as text
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def build_report(run_dir: Path) -> Path:
    """Write report.md, report.html and the plots of ``run_dir``; returns report.md's path."""
    settings = read_settings(run_dir)
    table = read_table(run_dir, CANDIDATES)
    table["reference"] = table["reference"].fillna("")
    # every input read (and checked) before anything is written
    draws = read_draws(run_dir) if (run_dir / DRAWS).is_file() else None
    trained = trained_models(run_dir, table) if (run_dir / TRAINED).is_file() else None
    if trained is not None:
        read_curves(run_dir)
    plots = make_plots(run_dir, settings, table, trained)
    found, refs = _tables(table, settings["top"], settings["scorer"])
    n_found = int((table["reference"] == "").sum())
    low, high = band(settings["budget"], settings["tolerance"])
    facts = pd.DataFrame(
        [
            ("budget", f"{settings['budget']:.4g} FLOPs ({settings['budget_text']})"),
            ("band", f"[{low:.4g}, {high:.4g}] FLOPs"),
            ("space", settings["space"]),
            ("trials", settings["trials"]),
            ("sampler", settings["sampler"]),
            ("seed", settings["seed"]),
            ("input", f"{settings['input_size']} px, {settings['classes']} classes"),
            ("distinct candidates", n_found),
            ("ranking key", settings["scorer"]),
            ("study", f"{settings['study_name']} in {_study_place(settings['storage'])}"),
        ],
        columns=["setting", "value"],
    )
    scorer = settings["scorer"]
    doc = (get_scorer(scorer).__doc__ or "").split("\n\n")[0]  # its first paragraph, as Markdown
    doc = re.sub(r":\w+:`([^`]*)`", r"`\1`", doc).replace("``", "`")
    intro = (
        f"Candidates are ranked without training by `{scorer}`: {' '.join(doc.split())} "
        "The gradient-path metrics N_1st < N_2nd < N_3rd are the three smallest distinct costs "
        "of a gradient path through a stage, a binary conv costing its BOPs/64 (Zhu et al., "
        "'Improving Gradient Paths for Binary Convolutional Neural Networks'); L counts binary "
        "convs instead. Smaller keys rank first; equal keys are ordered by "
        f"{settings.get('tie_break', 'storage_mbit')} "
        f"({'larger' if settings.get('tie_break_larger_first') else 'smaller'} first). "
        "Reference models of the paper are ranked with their own exact FLOPs."
    )
    if draws is not None:  # runs before draws.json counted trials, repeats included
        intro += " The search found " + draws_sentence(draws)
        intro += "."
    top_keys = table[table["reference"] == ""]["key"].head(settings["top"])
    tied = int((top_keys == top_keys.iloc[0]).sum()) if len(top_keys) else 0
    tie_note = (
        f"Note: the top {tied} candidates tie on the key; the tie-break column orders them."
        if tied > 1
        else ""
    )
    first = []
    if trained is not None:
        headline, rest = verdict(settings, trained)
        first = [f"**{headline}** {rest}", ""]
    md = [
        f"# Search report: {settings['study_name']}",
        "",
        *first,
        intro,
        "",
        *([tie_note, ""] if tie_note else []),
        facts.to_markdown(index=False),
        "",
        f"## Top {len(found)} candidates",
        "",
        found.to_markdown(index=False),
        "",
        "## Reference models",
        "",
        refs.to_markdown(index=False),
        "",
    ]
    if trained is not None:
        lines, more = training_section(run_dir, trained)
        md += lines
        plots.update(more)
    if (run_dir / FINAL).is_dir():
        lines, more = final_section(run_dir)
        md += lines
        plots.update(more)
    md += ["## Plots", ""]
    md += [f"![{name}]({path})" for name, path in plots.items()]
    text = "\n".join(md) + "\n"
    atomic_write_text(run_dir / REPORT, text)
    html = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Search report {escape(settings['study_name'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:"
        "collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}</style></head><body>"
        f"{MARKDOWN.render(text)}</body></html>"
    )
    atomic_write_text((run_dir / REPORT).with_suffix(".html"), html)
    return run_dir / REPORT


def closing_lines(run_dir: Path) -> list[str]:
    """What the terminal ends with once training ran: the verdict's headline, the trained models
    by test top-1, and where the report and the best trained model are."""
    settings = read_settings(run_dir)
    table = read_table(run_dir, CANDIDATES)
    table["reference"] = table["reference"].fillna("")
    trained = trained_models(run_dir, table)
    lines = [verdict(settings, trained)[0].replace("`", ""), "The trained models, by test top-1:"]
    baseline = (settings.get("training") or {}).get("baseline") or ""
    width = max(len(m) for m in trained["model"])
    for r in trained.sort_values("top1", ascending=False, na_position="last").itertuples():
        epochs = 0 if pd.isna(r.epoch) else int(r.epoch)
        status = {
            "trained": f"trained {_count(epochs, 'epoch')}",
            "stopped": f"stopped by successive halving after {_count(epochs, 'epoch')}",
            "failed": f"failed: {printable(str(r.error))}",
        }.get(r.status, "not started (the run was interrupted; --resume trains it)")
        top1 = "" if pd.isna(r.top1) or r.status == "failed" else f"{100 * r.top1:6.2f}%  "
        role = " (the baseline)" if r.reference and r.reference == baseline else ""
        lines.append(f"  {r.model:<{width}}  {top1}{status}{role}")
    lines.append(f"report: {run_dir / REPORT} (and report.html)")
    best = best_model_dir(run_dir)
    if best is not None:
        lines.append(
            f"best trained model: {best}; pack it: python -m nas.pack {run_dir}; "
            f"train it fully: python -m nas.final {run_dir}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m results.report", description="Rebuild a search run's report from its files."
    )
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not is_run_dir(run_dir):
        raise cli.UsageError(f"{run_dir} is not a search run (no settings.json of nas.search)")
    try:
        lock = lock_run_dir(run_dir)  # the run's writers take turns: a live search keeps its files
    except RunRefused as e:
        raise cli.UsageError(str(e)) from None
    try:
        if not (run_dir / CANDIDATES).is_file():
            raise cli.UsageError(f"{run_dir} is not a finished search run (no {CANDIDATES})")
        print(build_report(run_dir))
    except (TableError, RunFileError) as e:
        raise cli.UsageError(str(e)) from None
    finally:
        os.close(lock)
    return 0


if __name__ == "__main__":
    from nas import cli

    sys.exit(cli.run("results.report", main))
