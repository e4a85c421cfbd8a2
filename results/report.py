"""The report of a search run, built from its files alone: ``python -m results.report RUN_DIR``.

Reads ``settings.json``, ``candidates.csv`` and ``specs/``; writes ``report.md``, ``report.html``
and ``plots/*.png`` (pandas tables, matplotlib plots), each atomically.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
from sqlalchemy.engine import make_url

from nas import _cli
from nas.atomic import atomic_savefig, atomic_write_text
from nas.candidates import PATH_COLUMNS
from nas.graph import lower, scopes
from nas.metrics import PathGraph
from nas.pathplot import plot_scope
from nas.scopes import stage_label
from nas.spec import ArchSpec
from results.run import CANDIDATES, is_run_dir, read_settings

SPACE_COLOURS = {"resnet": "#4575b4", "densenet": "#d73027"}
METRICS = PATH_COLUMNS
# What the report reads of each table, and which of those columns are numbers.
_NEEDED = {
    CANDIDATES: (
        ("rank", "arch_id", "space", "reference", "in_band", "flops", "storage_mbit", "width"),
        ("rank", "flops", "storage_mbit", "width", "depth", *METRICS),
    ),
    "trained.csv": (("arch_id", "status", "epoch", "top1"), ("epoch", "top1")),
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


def pareto_front(table: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated in (x, y), both minimised, sorted by x."""
    rows = table.sort_values([x, y])
    front, best = [], float("inf")
    for _, row in rows.iterrows():
        if row[y] < best:
            front.append(row)
            best = row[y]
    return pd.DataFrame(front)


def _scatter(ax, table: pd.DataFrame, x: str, scale: float) -> None:
    found = table[table["reference"].fillna("") == ""]
    refs = table[table["reference"].fillna("") != ""]
    for space, part in found.groupby("space"):
        ax.scatter(
            part[x] / scale,
            part["N_2nd"] / 1e6,
            s=10,
            alpha=0.6,
            color=SPACE_COLOURS.get(space, "grey"),
            label=f"{space} candidates",
        )
    ax.scatter(
        refs[x] / scale,
        refs["N_2nd"] / 1e6,
        marker="*",
        s=120,
        color="black",
        label="reference models",
    )
    for _, r in refs.iterrows():
        note = "" if r["in_band"] else " (out of band)"
        ax.annotate(
            r["reference"] + note,
            (r[x] / scale, r["N_2nd"] / 1e6),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    ax.set_ylabel("N_2nd, mean over stages (M FLOP-eq, log)")
    ax.set_yscale("log")


def make_plots(run_dir: Path, settings: dict, table: pd.DataFrame) -> dict[str, str]:
    matplotlib.use("Agg")

    plots = run_dir / "plots"
    made: dict[str, str] = {}
    scored = table.dropna(subset=["N_2nd"])

    fig, ax = plt.subplots(figsize=(8, 5))
    low, high = settings["budget"] * (1 - settings["tolerance"]), settings["budget"]
    ax.axvspan(low / 1e9, high / 1e9, color="#e0f3f8", label="budget band")
    _scatter(ax, scored, "flops", 1e9)
    ax.set_xlabel("FLOPs (1e9) = FP MACs + BOPs/64")
    ax.set_title("gradient-path key against FLOPs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, plots / "key_vs_flops.png", dpi=110)
    plt.close(fig)
    made["key_vs_flops"] = "plots/key_vs_flops.png"

    fig, ax = plt.subplots(figsize=(8, 5))
    _scatter(ax, scored, "storage_mbit", 1.0)
    in_band = scored[scored["in_band"].astype(bool)]
    front = pareto_front(in_band, "storage_mbit", "N_2nd")
    if len(front):
        ax.step(
            front["storage_mbit"],
            front["N_2nd"] / 1e6,
            where="post",
            color="green",
            label="Pareto front (in band)",
            marker="o",
            markersize=7,
            markerfacecolor="none",
            zorder=5,
        )
    ax.set_xlabel("storage (Mbit)")
    ax.set_title("gradient-path key against storage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, plots / "key_vs_storage.png", dpi=110)
    plt.close(fig)
    made["key_vs_storage"] = "plots/key_vs_storage.png"

    best = sorted((run_dir / "specs").glob("rank*.json"))
    if best:
        spec = ArchSpec.load(best[0])
        ops = lower(spec)
        path = plots / "best_stage1.png"
        tmp = plots / ".best_stage1.tmp.png"
        plot_scope(spec, PathGraph.from_ops(ops, scopes(ops)), stage_label(0), str(tmp))
        tmp.replace(path)
        made["best_stage1"] = "plots/best_stage1.png"
    return made


def _tables(table: pd.DataFrame, top: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    shown = [
        "rank",
        "arch_id",
        "space",
        "reference",
        "in_band",
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
    view["flops"] = (view["flops"] / 1e9).round(4)
    view["storage_mbit"] = view["storage_mbit"].round(2)
    for c in ("N_1st", "N_2nd", "N_3rd"):
        view[c] = (view[c] / 1e6).round(4)
    view = view.rename(
        columns={
            "flops": "FLOPs (1e9)",
            "N_1st": "N_1st (M)",
            "N_2nd": "N_2nd (M)",
            "N_3rd": "N_3rd (M)",
        }
    )
    found = view[view["reference"].fillna("") == ""].head(top)
    refs = view[view["reference"].fillna("") != ""]
    return found, refs


def training_section(run_dir: Path, table: pd.DataFrame) -> tuple[list[str], str, dict]:
    """Markdown lines, HTML and plots of the trained candidates (``trained.csv``, ``curves.csv``):
    their accuracy, its rank correlation with each gradient-path metric (Kendall tau, Spearman
    rho), learning curves, and the trials that failed with their reason."""
    trained = read_table(run_dir, "trained.csv")
    joined = trained.merge(
        table[["arch_id", "rank", "reference", *METRICS]], on="arch_id", how="left"
    )
    joined["reference"] = joined["reference"].fillna("")
    curves_path = run_dir / "curves.csv"
    curves = (
        pd.read_csv(curves_path, dtype={"arch_id": str})
        if curves_path.is_file() and curves_path.stat().st_size > 1
        else pd.DataFrame(columns=["arch_id", "epoch", "top1"])
    )
    # ASHA stops some trials early: compare every candidate at the last epoch all of them reached
    done = joined[joined["status"] != "failed"]
    common = int(done["epoch"].min()) if len(done) else 0
    at_common = curves[curves["epoch"] == common][["arch_id", "top1"]]
    done = done.drop(columns="top1").merge(at_common, on="arch_id")

    def rank_correlation(metric: str, method: str) -> float | None:
        pairs = done[["top1", metric]].dropna()
        if len(pairs) < 3 or pairs[metric].nunique() < 2 or pairs["top1"].nunique() < 2:
            return None  # undefined
        return pairs["top1"].corr(pairs[metric], method=method)

    correlations = pd.DataFrame(
        [
            {
                "metric": m,
                "Kendall tau": rank_correlation(m, "kendall"),
                "Spearman rho": rank_correlation(m, "spearman"),
            }
            for m in METRICS
        ]
    ).round(3)
    results = joined[
        [
            "rank",
            "arch_id",
            "reference",
            "status",
            "epoch",
            "top1",
            "top5",
            "test_loss",
            "images_per_s",
            "train_seconds",
        ]
    ].round(4)
    failed = joined[joined["status"] == "failed"][["rank", "arch_id", "error"]]
    plots: dict[str, str] = {}
    if len(curves):
        matplotlib.use("Agg")

        fig, ax = plt.subplots(figsize=(7, 4))
        for aid, part in curves.groupby("arch_id"):
            ax.plot(part["epoch"], part["top1"], marker="o", label=aid)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1")
        ax.set_title("learning curves of the trained candidates")
        ax.legend(fontsize=7)
        fig.tight_layout()
        atomic_savefig(fig, run_dir / "plots" / "learning_curves.png", dpi=110)
        plt.close(fig)
        plots["learning_curves"] = "plots/learning_curves.png"
    if len(done):
        costs = METRICS[:3]  # the N values; L values are small integers, see the table
        fig, axes = plt.subplots(1, len(costs), figsize=(4 * len(costs), 3.4), sharey=True)
        for ax, metric in zip(axes, costs, strict=True):
            ax.scatter(done[metric] / 1e6, done["top1"])
            for row in done.itertuples():
                ax.annotate(f"#{row.rank}", (getattr(row, metric) / 1e6, row.top1), fontsize=7)
            ax.set_xlabel(f"{metric} (M FLOP-equivalents)")
        axes[0].set_ylabel(f"test top-1 at epoch {common}")
        fig.suptitle("trained accuracy against the gradient-path metrics")
        fig.tight_layout()
        atomic_savefig(fig, run_dir / "plots" / "accuracy_vs_metrics.png", dpi=110)
        plt.close(fig)
        plots["accuracy_vs_metrics"] = "plots/accuracy_vs_metrics.png"
    note = (
        f"Rank correlation of test top-1 at epoch {common} (the last epoch every trained "
        "candidate reached; ASHA stops weak trials early) with each metric "
        "(a good predictor has a strongly negative value: smaller N, better accuracy; "
        "undefined below 3 trained candidates or for a constant metric)."
    )
    md = [
        "## Trained candidates",
        "",
        results.to_markdown(index=False),
        "",
        "### Accuracy against the gradient-path metrics",
        "",
        note,
        "",
        correlations.to_markdown(index=False),
        "",
    ]
    html = (
        f"<h2>Trained candidates</h2>{results.to_html(index=False)}"
        f"<h3>Accuracy against the gradient-path metrics</h3><p>{note}</p>"
        f"{correlations.to_html(index=False)}"
    )
    if len(failed):
        md += ["### Failed trials", "", failed.to_markdown(index=False), ""]
        html += f"<h3>Failed trials</h3>{failed.to_html(index=False)}"
    return md, html, plots


def _study_place(storage: str) -> str:
    """Where the study is, as the report names it: the run's own database, or the --storage URL
    without its password."""
    if not storage:
        return "study.db (this run directory)"

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads
        return storage.split(":", 1)[0] + " storage"


def build_report(run_dir: Path) -> Path:
    """Write report.md, report.html and the plots of ``run_dir``; returns report.md's path."""
    settings = read_settings(run_dir)
    table = read_table(run_dir, CANDIDATES)
    table["reference"] = table["reference"].fillna("")
    plots = make_plots(run_dir, settings, table)
    found, refs = _tables(table, settings["top"])
    n_found = int((table["reference"] == "").sum())
    low = settings["budget"] * (1 - settings["tolerance"])
    facts = pd.DataFrame(
        [
            ("budget", f"{settings['budget']:.4g} FLOPs ({settings['budget_text']})"),
            ("band", f"[{low:.4g}, {settings['budget']:.4g}] FLOPs"),
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
    intro = (
        "Candidates are ranked by their gradient paths, without training: the key is the mean "
        "over stages of (N_1st, N_2nd, N_3rd), the three smallest distinct costs of a gradient "
        "path through a stage, a binary conv costing its BOPs/64 (Zhu et al., 'Improving "
        "Gradient Paths for Binary Convolutional Neural Networks'). Smaller ranks first. "
        "Reference models of the paper are ranked with their own exact FLOPs."
    )
    md = [
        f"# Search report: {settings['study_name']}",
        "",
        intro,
        "",
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
    trained_html = ""
    if (run_dir / "trained.csv").is_file():
        lines, trained_html, more = training_section(run_dir, table)
        md += lines
        plots.update(more)
    md += ["## Plots", ""]
    md += [f"![{name}]({path})" for name, path in plots.items()]
    atomic_write_text(run_dir / "report.md", "\n".join(md) + "\n")
    images = "".join(
        f'<h3>{n}</h3><img src="{p}" style="max-width:100%">' for n, p in plots.items()
    )
    html = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Search report {settings['study_name']}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>"
        f"<h1>Search report: {settings['study_name']}</h1><p>{intro}</p>"
        f"{facts.to_html(index=False)}<h2>Top {len(found)} candidates</h2>"
        f"{found.to_html(index=False)}<h2>Reference models</h2>{refs.to_html(index=False)}"
        f"{trained_html}<h2>Plots</h2>{images}</body></html>"
    )
    atomic_write_text(run_dir / "report.html", html)
    return run_dir / "report.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _cli.Parser(
        prog="python -m results.report", description="Rebuild a search run's report from its files."
    )
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not is_run_dir(run_dir) or not (run_dir / CANDIDATES).is_file():
        raise _cli.UsageError(
            f"{run_dir} is not a finished search run (no settings.json and {CANDIDATES})"
        )
    try:
        print(build_report(run_dir))
    except TableError as e:
        raise _cli.UsageError(str(e)) from None
    return 0


if __name__ == "__main__":
    from nas import _cli

    sys.exit(_cli.run("results.report", main))
