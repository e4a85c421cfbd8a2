"""The report of a run with trained candidates, built by ``python -m results.report`` in a fresh
process: its training section and rank correlations, against a brute-force count of pairs."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# every test reads a real search run (the module's fixture runs nas.search)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-a from its definition (no ties): (concordant - discordant) pairs / pairs."""
    pairs = list(itertools.combinations(range(len(x)), 2))
    sign = [
        ((x[i] - x[j]) * (y[i] - y[j]) > 0) - ((x[i] - x[j]) * (y[i] - y[j]) < 0) for i, j in pairs
    ]
    return sum(sign) / len(pairs)


def spearman_rho(x: list[float], y: list[float]) -> float:
    """Spearman's rho from its definition (no ties): 1 - 6 sum d^2 / (n (n^2 - 1))."""
    n = len(x)
    rank = lambda v: {value: r for r, value in enumerate(sorted(v))}  # noqa: E731
    rx, ry = rank(x), rank(y)
    d2 = sum((rx[a] - ry[b]) ** 2 for a, b in zip(x, y, strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A real search run, then trained.csv and curves.csv for four of its candidates whose
    N_2nd differ (written as runners.tune writes them), one of which failed."""
    run = tmp_path_factory.mktemp("report") / "run"
    subprocess.run(
        [sys.executable, "-m", "nas.search", "--no-progress", "--train-top", "0",
         "--budget", "0.16GFLOPs", "--trials", "40", "--seed", "1", "--out", str(run)],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    table = pd.read_csv(run / "candidates.csv", dtype={"arch_id": str})
    found = table[table["reference"].isna()].drop_duplicates("N_2nd").head(5)
    assert len(found) == 5, "the run should hold five candidates with distinct N_2nd"
    accuracy = [0.81, 0.86, 0.79, 0.84, None]  # the last one failed
    trained = pd.DataFrame(
        {
            "arch_id": found["arch_id"],
            "status": ["trained"] * 4 + ["failed"],
            "error": [""] * 4 + ["data: broken.jpg: cannot decode the image"],
            "epoch": [2] * 4 + [None],
            "top1": accuracy,
            "top5": [0.99] * 4 + [None],
            "test_loss": [0.5, 0.4, 0.6, 0.45, None],
            "train_loss": [0.6, 0.5, 0.7, 0.55, None],
            "images_per_s": [900.0] * 4 + [None],
            "node": ["n1"] * 5,
            "train_seconds": [30.0] * 4 + [None],
            "started": [1.8e9 + 100 * k for k in range(4)] + [None],  # Unix seconds
            "ended": [1.8e9 + 100 * k + 40 for k in range(4)] + [None],
        }
    )
    trained.to_csv(run / "trained.csv", index=False)
    curves = pd.DataFrame(
        [
            {"arch_id": a, "epoch": e, "top1": t - (0.05 if e == 1 else 0), "top5": 0.99,
             "test_loss": 0.5, "train_loss": 0.6}
            for a, t in zip(found["arch_id"][:4], accuracy[:4], strict=True) for e in (1, 2)
        ]
    )  # fmt: skip
    curves.to_csv(run / "curves.csv", index=False)
    return run, found.head(4).assign(top1=accuracy[:4])


def test_report_has_the_training_section_with_rank_correlations(trained_run):
    run, done = trained_run
    out = subprocess.run(
        [sys.executable, "-m", "results.report", str(run)], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    text = (run / "report.md").read_text()
    assert "## Trained candidates" in text and "### Failed trials" in text
    assert "broken.jpg" in text
    section = text[text.index("### Accuracy against the gradient-path metrics") :]
    rows = {
        cells[0]: cells[1:]
        for line in section.splitlines()
        if line.startswith("| N_") or line.startswith("| L_")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    x, y = list(done["N_2nd"]), list(done["top1"])
    assert float(rows["N_2nd"][0]) == pytest.approx(kendall_tau(x, y), abs=1e-3)
    assert float(rows["N_2nd"][1]) == pytest.approx(spearman_rho(x, y), abs=1e-3)
    constant = [m for m in ("N_1st", "N_2nd", "N_3rd", "L_1st", "L_2nd", "L_3rd")
                if done[m].nunique() < 2]  # fmt: skip
    assert constant and not set(constant) & set(rows)
    assert f"Left out, the same for every trained model: {', '.join(constant)}." in section
    table = text[text.index("## Trained candidates") : text.index("### Accuracy")]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    column = header.index("top-1 %")
    tops = [line.strip("|").split("|")[column].strip() for line in lines[1:]]  # after the header
    assert tops[-1] == "-"  # the failed trial: last, no accuracy
    numbers = [float(t) for t in tops[:-1]]
    assert numbers == sorted(numbers, reverse=True)  # by test top-1, in percent
    assert tops[:-1] == [f"{100 * v:.2f}" for v in sorted(done["top1"], reverse=True)]
    for name in ("learning_curves", "accuracy_vs_metrics"):
        assert (run / "plots" / f"{name}.png").is_file()
    assert "Trained candidates" in (run / "report.html").read_text()


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda p: p.write_bytes(b'"a,b\n1,"2\n\x00\xff'), "cannot be read as CSV"),
        (lambda p: p.write_text(""), "cannot be read as CSV"),
        (lambda p: p.write_text("rank,arch_id\n1,abc\n"), "lacks the columns"),
        (
            lambda p: p.write_text(
                p.read_text().replace("\n1,", "\nfirst,", 1)  # a rank that is not a number
            ),
            "column rank holds values that are not numbers",
        ),
    ],
)
def test_broken_candidates_table_is_one_line(trained_run, tmp_path, damage, words):
    """A damaged candidates.csv: one line naming it, exit 2, and the old report left as it was."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run[0], run)
    report = (run / "report.md").read_bytes()
    damage(run / "candidates.csv")
    out = subprocess.run(
        [sys.executable, "-m", "results.report", str(run)], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and words in out.stderr, out.stderr
    assert str(run / "candidates.csv") in out.stderr
    assert (run / "report.md").read_bytes() == report
    json.loads((run / "settings.json").read_text())  # untouched


def test_training_results_reach_optuna(trained_run):
    """What training measured goes to the run's Optuna storage: a training study with one trial
    per trained model (value = final top-1, curve as intermediate values, failed as FAIL), and
    the search study's trained_top1; a second call adds nothing."""
    import optuna

    from pipeline.settings import Settings
    from pipeline.training import record_in_optuna

    run, done = trained_run
    settings = Settings(**json.loads((run / "settings.json").read_text()))
    table = pd.read_csv(run / "candidates.csv", dtype={"arch_id": str}, keep_default_na=False)
    trained = pd.read_csv(run / "trained.csv", dtype={"arch_id": str})
    for _ in range(2):
        name = record_in_optuna(settings, run, table, trained)
    url = f"sqlite:///{run / 'study.db'}"
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert len(trials) == 5
    by_arch = {t.user_attrs["arch_id"]: t for t in trials}
    for aid, top1 in zip(done["arch_id"], done["top1"], strict=True):
        t = by_arch[aid]
        assert t.state == optuna.trial.TrialState.COMPLETE and t.value == pytest.approx(top1)
        assert t.intermediate_values == {1: pytest.approx(top1 - 0.05), 2: pytest.approx(top1)}
        assert t.user_attrs["model"] == f"#{t.user_attrs['rank']}"
        row = trained.set_index("arch_id").loc[aid]  # the timeline shows when each trained
        assert t.datetime_start.timestamp() == pytest.approx(row["started"])
        assert t.datetime_complete.timestamp() == pytest.approx(row["ended"])
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and "broken.jpg" in failed[0].user_attrs["error"]
    search = optuna.load_study(study_name=settings.study_name, storage=url)
    assert search.user_attrs["trained_top1"] == pytest.approx(
        dict(zip(done["arch_id"], done["top1"], strict=True))
    )


def test_optuna_dashboard_lists_trained_accuracy_per_trial(trained_run):
    """`optuna-dashboard sqlite:///RUN/study.db` (the README's command), asked through its HTTP
    API, lists the run's search study and its training study, whose trials carry the trained
    top-1 as their values."""
    import socket
    import time
    import urllib.request

    from pipeline.settings import Settings
    from pipeline.training import record_in_optuna

    run, done = trained_run
    settings = Settings(**json.loads((run / "settings.json").read_text()))
    table = pd.read_csv(run / "candidates.csv", dtype={"arch_id": str}, keep_default_na=False)
    trained = pd.read_csv(run / "trained.csv", dtype={"arch_id": str})
    name = record_in_optuna(settings, run, table, trained)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"), f"sqlite:///{run / 'study.db'}",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def get(path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return json.loads(r.read())

    try:
        deadline = time.time() + 60
        while True:
            try:
                studies = get("/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline and dashboard.poll() is None, "no dashboard"
                time.sleep(0.5)
        ids = {s["study_name"]: s["study_id"] for s in studies}
        assert {settings.study_name, name} <= set(ids)
        trials = get(f"/api/studies/{ids[name]}")["trials"]
        values = {
            next(a["value"] for a in t["user_attrs"] if a["key"] == "arch_id"): t.get("values")
            for t in trials
        }
        for aid, top1 in zip(done["arch_id"], done["top1"], strict=True):
            assert values[aid] == [pytest.approx(top1)]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def test_every_string_that_reaches_the_html_is_escaped(trained_run, tmp_path):
    """Markup planted in the run's name, its settings (study name, tie-break, budget text,
    sampler) and a failed trial's error prints as text in report.html: no tag of it survives."""
    import re
    import shutil

    run = tmp_path / "<img src=x onerror=alert(1)>"
    shutil.copytree(trained_run[0], run)
    settings = json.loads((run / "settings.json").read_text())
    settings |= {
        "study_name": "<script>alert(2)</script>",
        "tie_break": "<b onmouseover=alert(3)>bops</b>",
        "budget_text": "<iframe src=javascript:alert(4)>",
        "sampler": "[x](javascript:alert(5))",
    }
    (run / "settings.json").write_text(json.dumps(settings))
    trained = pd.read_csv(run / "trained.csv")
    trained.loc[trained["status"] == "failed", "error"] = "<script>alert(6)</script>"
    trained.to_csv(run / "trained.csv", index=False)
    out = subprocess.run(
        [sys.executable, "-m", "results.report", str(run)], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    html = (run / "report.html").read_text()
    tags = set(re.findall(r"<\s*([a-zA-Z]+)", html))
    assert not tags & {"script", "iframe", "b"}, tags
    assert "javascript:" not in re.sub(
        r"&[a-z]+;|&#\d+;", "", " ".join(re.findall(r'href="[^"]*"', html))
    )
    assert all(src.startswith("plots/") for src in re.findall(r'<img src="([^"]*)"', html))
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html  # shown as text
    assert "&lt;script&gt;alert(6)&lt;/script&gt;" in html
    assert "<strong>" in html and "<table>" in html  # the Markdown is rendered, not shown raw


@pytest.mark.parametrize("x", ["flops", "storage_mbit"])
def test_the_key_plots_show_the_rankings_key_mark_the_trained_and_no_label_overlaps(trained_run, x):
    """Read through matplotlib: the left panel's y values are the ranking key's, the trained
    candidates are ringed where they are, and no two labels' drawn boxes overlap or leave the
    axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from results.report import key_figure, read_settings, read_table, trained_models

    run, done = trained_run
    settings = read_settings(run)
    table = read_table(run, "candidates.csv")
    table["reference"] = table["reference"].fillna("")
    models = trained_models(run, table)
    models = models[models["status"] != "failed"]  # as the report marks them
    names = dict(zip(models["arch_id"], models["model"], strict=True))
    fig = key_figure(table, settings, x, names)
    try:
        key_axes, n_axes = fig.axes[:2]
        assert settings["scorer"] in key_axes.get_ylabel() and "N_2nd" in n_axes.get_ylabel()
        ringed = next(c for c in key_axes.collections if c.get_label() == "trained candidates")
        scale = 1e9 if x == "flops" else 1.0
        keys = table.set_index("arch_id")["key"].map(lambda k: json.loads(k)[0])
        expected = sorted(zip(done[x] / scale, keys[done["arch_id"]], strict=True))
        got = sorted(map(tuple, ringed.get_offsets()))
        assert np.allclose(np.array(got, dtype=float), np.array(expected, dtype=float))
        renderer = fig.canvas.get_renderer()
        for ax in (key_axes, n_axes):
            labels = [t for t in ax.texts if t.get_text()]
            assert {"#" + str(int(r)) for r in done["rank"]} <= {
                part for t in labels for part in t.get_text().split(", ")
            }
            boxes = [t.get_window_extent(renderer) for t in labels]
            for a, b in itertools.combinations(range(len(boxes)), 2):
                assert not boxes[a].overlaps(boxes[b]), (labels[a].get_text(), labels[b].get_text())
            edge = ax.get_window_extent(renderer)
            assert all(edge.x0 - 1 <= box.x0 and box.x1 <= edge.x1 + 1 for box in boxes)
    finally:
        plt.close(fig)
