"""The benchmark study (``python -m runners.study``): its sample, one row reproduced from scratch,
resuming after a kill, bad input; and the committed benchmark read by ``load_benchmark()``."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from nas.core.graph import lower, ops_arch_id
from nas.core.spec import ArchSpec
from results.trained_benchmark import STUDY_DIR, load_benchmark
from runners.study import proxy_metrics, spanning, strata_value, stratified_pick

ROOT = Path(__file__).parent.parent
TINY = {
    "short": {
        "epochs": 1,
        "train_subset": 256,
        "eval_subset": 256,
        "width_mult": 0.125,
        "stem_stride": 2,
        "batch_size": 64,
        "padding": "zero",  # as the study's own recipes
    },
    "long": {
        "epochs": 2,
        "train_subset": 256,
        "eval_subset": 256,
        "width_mult": 0.125,
        "stem_stride": 2,
        "batch_size": 64,
        "padding": "zero",
    },
    "short_one": {
        "epochs": 1,
        "train_subset": 256,
        "eval_subset": 256,
        "width_mult": 0.125,
        "stem_stride": 2,
        "batch_size": 64,
        "padding": "one",
    },
    "long10": {
        "epochs": 2,
        "train_subset": 256,
        "eval_subset": 256,
        "width_mult": 0.125,
        "stem_stride": 2,
        "batch_size": 64,
        "padding": "one",
    },
}
SMALL = ["--sample", "4", "--pool", "40", "--seeded", "2", "--long", "1"]


def _study(out: Path, *args: str, recipes: Path | None = None, **kw) -> subprocess.Popen:
    extra = ["--recipes", str(recipes)] if recipes else []
    return subprocess.Popen(
        [sys.executable, "-m", "runners.study", "--out", str(out), *SMALL, *extra, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _finish(proc: subprocess.Popen, timeout: int = 900) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def tiny_recipes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def test_stratified_pick_covers_the_range_evenly():
    """Against a brute-force reading of the definition: one pick in each of n equal bins where a
    bin has values, distinct picks, and different picks for different seeds."""
    rng = random.Random(0)
    values = [rng.lognormvariate(0, 1) for _ in range(500)]
    picked = stratified_pick(values, 10, random.Random(1))
    assert len(set(picked)) == 10
    lo, hi = min(values), max(values)
    bins = sorted(min(9, int((values[i] - lo) / ((hi - lo) / 10))) for i in picked)
    occupied = sorted({min(9, int((v - lo) / ((hi - lo) / 10))) for v in values})
    for b in occupied:  # every occupied bin gives at least one pick
        assert b in bins
    assert picked != stratified_pick(values, 10, random.Random(2))
    assert spanning(values, 3)[0] == values.index(lo) and spanning(values, 3)[-1] == values.index(
        hi
    )
    assert strata_value((1.0, None, 2.0)) == math.inf


@pytest.mark.slow
def test_a_study_row_is_reproduced_from_scratch_and_a_kill_loses_nothing(tmp_path, tiny_recipes):
    """A small study on a tiny recipe: the sample is in the band, from both spaces, with widths
    from the solver without the floor; killed after its first finished batch and run again, it
    trains nothing twice and ends with every job; one row's metrics and accuracy equal what the
    project's own functions compute from its spec and recipe."""
    from nas.core.candidates import score
    from runners.datasets import load_dataset
    from runners.options import TrainConfig
    from runners.train import proxy_spec, train
    from search_spaces import get_space

    out = tmp_path / "study"
    proc = _study(
        out,
        "--references",
        "bireal_resnet18",
        "--parts",
        "short",
        "--batch",
        "1",
        "--dashboard-port",
        "8291",
        recipes=tiny_recipes,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while not (out / "runs.csv").is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no job finished in 10 minutes"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the study and its Ray processes
    proc.wait()
    before = pd.read_csv(out / "runs.csv", dtype={"arch_id": str})
    assert len(before) >= 1
    code, stdout, stderr = _finish(
        _study(out, "--references", "bireal_resnet18", "--parts", "short",
               "--dashboard-port", "8291", recipes=tiny_recipes)
    )  # fmt: skip
    assert code == 0, stderr[-3000:]
    after = pd.read_csv(out / "runs.csv", dtype={"arch_id": str})
    jobs = json.loads((out / "study.json").read_text())["jobs"]
    short = [j["job"] for j in jobs if j["part"] == "short"]
    assert sorted(after["job"]) == sorted(short)  # every job of the part, once
    for job in before["job"]:  # finished before the kill: kept as it was, not trained again
        assert f"{job} (" not in stdout, stdout
        pd.testing.assert_frame_equal(
            after[after["job"] == job].reset_index(drop=True),
            before[before["job"] == job].reset_index(drop=True),
        )
    assert f"{len(before)} done" in stdout

    archs = pd.read_csv(out / "archs.csv", dtype={"arch_id": str})
    sample = archs[archs["role"] == "sample"]
    assert set(sample["space"]) == {"resnet", "densenet"} and len(set(sample["arch_id"])) == 4
    assert (sample["flops"] <= 0.16e9).all() and (sample["flops"] >= 0.16e9 * 0.95).all()
    for _, row in sample.iterrows():  # widths as the solver gives them with no floor
        solved = get_space(row["space"]).solve(
            json.loads(row["structure"]), 0.16e9, 0.05, 224, 1000, 1
        )
        assert solved.width == row["width"]
        assert ops_arch_id(lower(solved.spec)) == row["arch_id"]

    bench = load_benchmark(out)
    assert len(bench) == len(short) and bench["spec"].notna().all()
    row = bench[(bench["recipe"] == "short") & (bench["seed"] == 0)].iloc[0]
    spec = ArchSpec.from_json(row["spec"])
    expected = score(lower(spec), "stage_mean_n")
    for column in ("flops", "bops", "params", "storage_mbit", "depth"):
        assert row[column] == pytest.approx(expected[column])
    assert row["key_stage_mean_n_1"] == pytest.approx(expected["key"][1])
    splits = load_dataset("fashion_mnist")
    recipe = TINY["short"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a trial of one CPU: bf16 sums depend on the split of work
    try:
        history = train(
            proxy_spec(spec, splits, recipe["width_mult"], stem_stride=recipe["stem_stride"]),
            splits,
            TrainConfig(
                epochs=recipe["epochs"],
                batch_size=recipe["batch_size"],
                train_subset=recipe["train_subset"],
                eval_subset=recipe["eval_subset"],
                augment=False,
                seed=0,
            ),
        )
        proxy = proxy_spec(spec, splits, recipe["width_mult"], stem_stride=recipe["stem_stride"])
        proxies = proxy_metrics(proxy, splits, 0)
    finally:
        torch.set_num_threads(threads)
    for name, value in proxies.items():  # measured in the trial, at the init it trained from
        assert row[name] == pytest.approx(value, rel=1e-6), name
    assert row["top1"] == pytest.approx(history[-1].top1)
    assert json.loads(row["curve_top1"]) == pytest.approx([h.top1 for h in history], abs=1e-6)
    assert row["train_loss"] == pytest.approx(history[-1].train_loss, rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, words",
    [
        (["--spaces", "resnt"], ["--spaces", "resnet"]),
        (["--budget", "1MFLOPs"], ["resnet", "band", "--budget"]),
        (["--budget", "lots"], ["--budget", "0.16GFLOPs"]),
        (["--data-dir", "{empty}"], ["{empty}"]),
        (["--parts", "short,medium"], ["--parts", "long"]),
        (["--shard", "3/2"], ["shard"]),
        (["--references", "bireal_resnet81"], ["bireal_resnet18"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    empty = tmp_path / "no-data"
    empty.mkdir()
    args = [a.replace("{empty}", str(empty)) for a in args]
    words = [w.replace("{empty}", str(empty)) for w in words]
    code, _, stderr = _finish(_study(tmp_path / "out", "--plan-only", *args), timeout=600)
    assert code == 2, stderr[-2000:]
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    for word in words:
        assert word in stderr, (word, stderr)
    assert not (tmp_path / "out" / "study.json").exists()


@pytest.mark.slow
def test_a_directory_of_another_study_or_of_something_else_is_refused(tmp_path, tiny_recipes):
    out = tmp_path / "study"
    args = ["--references", "bireal_resnet18", "--plan-only"]
    code, _, stderr = _finish(_study(out, *args, recipes=tiny_recipes))
    assert code == 0, stderr[-2000:]
    planned = (out / "study.json").read_text()
    code, _, stderr = _finish(_study(out, *args, "--seed", "1", recipes=tiny_recipes))
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "another study" in stderr and "seed 0 (asked 1)" in stderr
    assert (out / "study.json").read_text() == planned
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, stderr = _finish(_study(other, *args, recipes=tiny_recipes))
    assert code == 2 and "not empty" in stderr and stderr.count("\n") == 1, stderr
    assert (other / "notes.txt").read_text() == "mine" and len(list(other.iterdir())) <= 2


@pytest.mark.skipif(
    not (STUDY_DIR / "runs.csv").is_file(), reason="the study has no committed results yet"
)
def test_the_committed_benchmark_loads_and_its_rows_are_consistent():
    """load_benchmark() on the committed study: one row per finished job, each joined to its
    architecture; the specs parse and their arch ids and FLOPs are what the project computes."""
    bench = load_benchmark()
    jobs = {j["job"]: j for j in json.loads((STUDY_DIR / "study.json").read_text())["jobs"]}
    assert bench["job"].is_unique and set(bench["job"]) <= set(jobs)
    assert (bench["part"] == bench["job"].map(lambda j: jobs[j]["part"])).all()
    assert set(bench["part"]) <= {"short", "seeds", "long", "prospective", "padding", "transfer"}
    assert ((bench["part"] == "prospective") == (bench["role"] == "prospective")).all()
    assert bench["spec"].notna().all() and bench["top1"].between(0, 1).all()
    for _, row in bench.drop_duplicates("arch_id").head(8).iterrows():
        ops = lower(ArchSpec.from_json(row["spec"]))
        assert ops_arch_id(ops) == row["arch_id"]
    curves = bench["curve_top1"].map(json.loads)
    assert (curves.map(len) == bench["epochs"]).all()
    assert (curves.map(max) == bench["top1_best"]).all()
