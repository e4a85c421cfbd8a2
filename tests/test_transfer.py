"""The transfer part of the study: a main-job run's winner and the part's jobs added to the
committed study once, each model with both recipes and both seeds; its analysis against scipy's
Welch test and a brute-force pair count."""

import itertools
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats

from nas import ArchSpec
from nas.core.model_dir import best_model_dir
from results import transfer
from results.trained_benchmark import STUDY_DIR


def _transfer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runners.transfer", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_a_runs_winner_joins_the_study_once_with_every_job_of_the_part(trained_run, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    for name in ("study.json", "archs.csv", "runs.csv"):
        shutil.copy(STUDY_DIR / name, study / name)
    before = json.loads((study / "study.json").read_text())["jobs"]
    done = _transfer(trained_run, "--study", study)
    assert done.returncode == 0, done.stderr

    archs = pd.read_csv(study / "archs.csv", dtype={"arch_id": str})
    seed = json.loads((trained_run / "settings.json").read_text())["seed"]
    winner = archs[archs["name"] == f"winner-s{seed}"].iloc[0]
    best = best_model_dir(trained_run)
    assert ArchSpec.from_json(winner["spec"]) == ArchSpec.load(
        trained_run / "specs" / f"{best.name}.json"
    )
    assert winner["arch_id"] == json.loads((best / "metrics.json").read_text())["arch_id"]

    jobs = json.loads((study / "study.json").read_text())["jobs"]
    assert jobs[: len(before)] == before  # the study's jobs kept, in order
    assert len({j["job"] for j in jobs}) == len(jobs)
    # the sample, by its rule: per space, the seeded architectures but the deepest, the
    # shallowest and the deepest of the rest
    seeded = {j["arch_id"] for j in jobs if j["part"] == "seeds"}
    picked = set()
    for _, space in archs[(archs["role"] == "sample") & archs["arch_id"].isin(seeded)].groupby(
        "space"
    ):
        rest = space.sort_values("depth").iloc[:-1]
        picked |= {rest["arch_id"].iloc[0], rest["arch_id"].iloc[-1]}
    assert len(picked) == 4
    zoo = set(archs.loc[archs["name"].isin(transfer.ZOO_MODELS), "arch_id"])
    winners = set(archs.loc[archs["role"] == transfer.WINNER, "arch_id"])  # the study's too
    assert winner["arch_id"] in winners
    models = picked | zoo | winners
    part = {j["arch_id"] for j in jobs if j["part"] == transfer.PART}
    assert part == models
    have = {(j["recipe"], j["seed"], j["arch_id"]) for j in jobs}
    for recipe, s, model in itertools.product((transfer.PROXY, transfer.LONG), (0, 1), models):
        assert (recipe, s, model) in have

    again = _transfer(trained_run, "--study", study)
    assert again.returncode == 0 and "added no winner" in again.stdout
    assert json.loads((study / "study.json").read_text())["jobs"] == jobs
    plan = subprocess.run(
        [sys.executable, "-m", "runners.study", "--out", str(study), "--parts", "transfer",
         "--plan-only"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr  # the study's settings hold the part's recipes
    trained = set(pd.read_csv(study / "runs.csv")["job"])
    pending = sum(j["part"] == transfer.PART and j["job"] not in trained for j in jobs)
    assert f"{pending} to train now" in plan.stdout


@pytest.mark.slow
def test_a_folder_that_is_no_finished_run_is_one_line(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    for name in ("study.json", "archs.csv", "runs.csv"):
        shutil.copy(STUDY_DIR / name, study / name)
    for folder in (tmp_path / "missing", study):
        out = _transfer(folder, "--study", study)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    empty = _transfer(tmp_path, "--study", tmp_path / "nothing")
    assert empty.returncode == 2 and "holds no study" in empty.stderr


def _runs() -> pd.DataFrame:
    """Two winners 2 points above the baseline at 2 epochs and 1 point below at 10; IGP-ResNet37
    4 points below at 2 epochs and 1 below at 10; every model 2 seeds."""
    rng = np.random.default_rng(1)
    means = {  # name: (2 epochs, 10 epochs)
        "winner-s0": (0.88, 0.89),
        "winner-s1": (0.88, 0.89),
        "bireal_resnet18": (0.86, 0.90),
        "igp_resnet37": (0.82, 0.89),
        "resnet-08": (0.70, 0.80),
    }
    rows = []
    for k, (name, pair) in enumerate(means.items()):
        for recipe, mean in zip((transfer.PROXY, transfer.LONG), pair, strict=True):
            for seed in (0, 1):
                top1 = mean + rng.normal(0, 0.003)
                rows.append(
                    {"arch_id": f"id{k}", "name": name, "space": "resnet", "depth": 18 + k,
                     "recipe": recipe, "seed": seed, "part": transfer.PART, "top1": top1,
                     "curve_top1": json.dumps([top1 - 0.05] * 9 + [top1])}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_differences_to_the_baseline_are_welchs_and_say_how_they_move():
    runs = _runs()
    diffs = transfer.against_baseline(runs).set_index(["model", "recipe"])
    top1 = runs.set_index(["name", "recipe"])["top1"]
    for model, members in (("the winners pooled", ["winner-s0", "winner-s1"]),
                           ("igp_resnet37", ["igp_resnet37"])):  # fmt: skip
        for recipe in (transfer.PROXY, transfer.LONG):
            a = np.concatenate([top1[(m, recipe)].to_numpy() for m in members])
            b = top1[("bireal_resnet18", recipe)].to_numpy()
            test = stats.ttest_ind(a, b, equal_var=False)
            lo, hi = test.confidence_interval(0.95)
            row = diffs.loc[(model, recipe)]
            assert row["difference"] == pytest.approx(100 * (a.mean() - b.mean()))
            assert (row["lo"], row["hi"]) == pytest.approx((100 * lo, 100 * hi))
            assert row["seeds"] == len(a) and row["baseline seeds"] == 2
    assert ("resnet-08", transfer.PROXY) not in diffs.index  # not a model against the baseline
    assert transfer.trend(2.0, -1.0) == "reverses"
    assert transfer.trend(-4.0, -1.0) == "shrinks"
    assert transfer.trend(-1.0, -3.0) == "grows"


def test_rank_agreement_counts_pairs_as_a_brute_force_does():
    runs = _runs()
    agreement = transfer.rank_agreement(runs, noise=0.01)
    means = runs.groupby(["arch_id", "recipe"])["top1"].mean().unstack()
    x, y = means[transfer.PROXY].to_numpy(), means[transfer.LONG].to_numpy()
    pairs = list(itertools.combinations(range(len(x)), 2))
    brute = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in pairs) / len(pairs)
    assert agreement["n"] == 5 and agreement["tau"] == pytest.approx(brute)
    assert agreement["lo"] <= agreement["hi"]


def test_the_model_table_is_sorted_by_the_long_recipe_in_percent():
    table = transfer.model_table(_runs())
    assert list(table["model"])[-1] == "resnet-08"
    long = table["10 epochs: top-1 %"].to_numpy()
    assert (np.diff(long) <= 0).all() and 75 < long[-1] < 85
    assert (table["2 epochs: seeds"] == 2).all()
    change = long - table["2 epochs: top-1 %"].to_numpy()
    assert table["change (points)"].to_numpy() == pytest.approx(change)


@pytest.mark.slow
def test_the_validation_document_has_the_transfer_section_and_its_plot(tmp_path):
    from test_validation import _study

    from results.validation import write_document

    _study(tmp_path / "study")
    runs = _runs()
    runs["job"] = runs["recipe"] + "-s" + runs["seed"].astype(str) + "-" + runs["arch_id"]
    archs = pd.read_csv(tmp_path / "study" / "archs.csv")
    extra = runs.drop_duplicates("arch_id")[["arch_id", "name", "space", "depth"]]
    pd.concat([archs, extra.assign(role="reference")]).to_csv(
        tmp_path / "study" / "archs.csv", index=False
    )
    old = pd.read_csv(tmp_path / "study" / "runs.csv")
    columns = ["job", "arch_id", "recipe", "seed", "top1", "curve_top1"]
    pd.concat([old, runs[columns]]).to_csv(tmp_path / "study" / "runs.csv", index=False)
    plan = json.loads((tmp_path / "study" / "study.json").read_text())
    plan["jobs"] += [{"job": j, "arch_id": a, "part": transfer.PART}
                     for j, a in zip(runs.job, runs.arch_id, strict=True)]  # fmt: skip
    (tmp_path / "study" / "study.json").write_text(json.dumps(plan))
    doc = tmp_path / "docs" / "validation.md"
    text = write_document(tmp_path / "study", doc)
    section = text[text.index("## Transfer") :]
    assert "So has the transfer part (20 of 20 jobs trained)" in text
    assert "Rank agreement** over the 5 models trained with both" in section
    pooled = next(r for r in section.splitlines() if r.startswith("| the winners pooled |"))
    assert pooled.endswith("| the difference reverses |")
    igp = next(r for r in section.splitlines() if r.startswith("| igp_resnet37 |"))
    assert igp.endswith("| the difference shrinks |")
    assert (doc.parent / "validation" / "transfer_curves.png").stat().st_size > 10_000
    assert "Over 12 sampled architectures" in text  # the rest of the analysis is unchanged


@pytest.mark.slow
def test_the_gpu_scripts_final_part_trains_the_final_recipe(tmp_path):
    """``runners.study_gpu --part final``: the seed-0 winner, Bi-Real ResNet18 and IGP-ResNet37
    with the final recipe, +1 padding; one of them trained here on the CPU for a few batches."""
    from runners.options import FINAL_RECIPE
    from runners.study_gpu import FINAL_MODELS, _work, jobs

    todo = jobs(STUDY_DIR, "final", 31)
    assert [j["name"] for j in todo] == list(FINAL_MODELS)
    assert all(j["recipe_options"] == {**FINAL_RECIPE, "padding": "one", "epochs": 31}
               for j in todo)  # fmt: skip
    job = todo[1] | {"recipe_options": todo[1]["recipe_options"] | {
        "epochs": 1, "train_subset": 256, "eval_subset": 256}}  # fmt: skip
    row = _work(job, None, "fp32", "cpu")
    assert (row["name"], row["epochs"], row["stem_stride"]) == ("bireal_resnet18", 1, 1)
    assert 0 <= row["top1"] <= 1 and row["images_per_s"] > 0
