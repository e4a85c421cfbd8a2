"""The study's analysis (``python -m results.validation``) on a synthetic benchmark whose answers
are known: rank correlations against a brute-force pair count, seed noise against numpy, the
claims' differences against scipy's Welch test, and the document written in a fresh process."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from results.stats import correlate, seed_table
from results.validation import claims, metric_values

ROOT = Path(__file__).parent.parent


def _brute_kendall(x, y) -> float:
    """tau-a by counting pairs (no ties in these tests, so tau-a = tau-b)."""
    s = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        s += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return s / (len(x) * (len(x) - 1) / 2)


def _study(
    folder: Path, n: int = 12, long_slope: float = 0.02
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n sampled architectures whose accuracy rises with ``params`` and falls with the key's
    first value; every third also trained with the long recipe, its accuracy rising with
    ``long_slope``; three zoo models with 3 seeds each, igp_resnet37 2 points above bireal."""
    rng = np.random.default_rng(0)
    rows, runs = [], []
    for i in range(n):
        rows.append(
            {
                "arch_id": f"a{i:02d}",
                "name": f"resnet-{i:02d}",
                "space": "resnet" if i % 2 else "densenet",
                "role": "sample",
                "width": 16 + 4 * i,
                "params": 1000 + 10 * i,
                "depth": 20,  # constant: no correlation to report
                "key_stage_mean_n_0": float(n - i),
                "key_stage_mean_n_1": 5.0,
                "key_stage_mean_n_2": None,
            }
        )
        for seed in (0, 1, 2) if i < 4 else (0,):
            job = f"short-s{seed}-a{i:02d}"
            top1 = 0.5 + 0.02 * i + 0.001 * seed
            runs.append(_run(job, f"a{i:02d}", "short", seed, top1, naswot=rng.normal()))
        if i % 3 == 0:
            runs.append(_run(f"long-s0-a{i:02d}", f"a{i:02d}", "long", 0, 0.6 + long_slope * i))
    for name, base in (("bireal_resnet18", 0.70), ("igp_resnet37", 0.72), ("binary_resnet18", 0.6)):
        rows.append({"arch_id": name[:6] + "id", "name": name, "space": "zoo", "role": "reference"})
        for seed, noise in zip((0, 1, 2), (-0.01, 0.0, 0.01), strict=True):
            job = f"short-s{seed}-{name[:6]}id"
            runs.append(_run(job, name[:6] + "id", "short", seed, base + noise * (1 + seed)))
    archs, table = pd.DataFrame(rows), pd.DataFrame(runs)
    folder.mkdir(parents=True, exist_ok=True)
    archs.to_csv(folder / "archs.csv", index=False)
    table.to_csv(folder / "runs.csv", index=False)
    jobs = [{"job": j, "arch_id": a} for j, a in zip(table["job"], table["arch_id"], strict=True)]
    (folder / "study.json").write_text(json.dumps({"settings": {}, "jobs": jobs}))
    return archs, table


def _run(job, aid, recipe, seed, top1, **proxies) -> dict:
    return {
        **proxies,
        "job": job,
        "arch_id": aid,
        "recipe": recipe,
        "seed": seed,
        "epochs": 2,
        "top1": top1,
        "top1_best": top1,
        "curve_top1": json.dumps([top1 - 0.1, top1]),
    }


def test_correlate_matches_a_brute_force_count_and_its_interval_holds_it():
    rng = np.random.default_rng(3)
    x = pd.Series(rng.normal(size=15), index=[f"a{i}" for i in range(15)])
    accs = {a: np.array([v + rng.normal(0, 0.5)]) for a, v in x.items()}
    n, tau, lo, hi, rho, rlo, rhi = correlate(x, accs, 0.05, np.random.default_rng(0), 300)
    y = np.array([accs[a][0] for a in x.index])
    assert n == 15 and tau == pytest.approx(_brute_kendall(x.to_numpy(), y))
    ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert rho == pytest.approx(np.corrcoef(ranks(x.to_numpy()), ranks(y))[0, 1])
    assert lo <= tau <= hi and rlo <= rho <= rhi and hi - lo > 0.05


def test_a_key_enters_as_its_negated_lexicographic_rank(tmp_path):
    archs, _ = _study(tmp_path)
    values = metric_values(archs[archs["role"] == "sample"], "key:stage_mean_n")
    # the first value decreases with i, so the key's order puts a11 first: largest value
    assert list(values.sort_values().index) == [f"a{i:02d}" for i in range(12)]


def test_seed_noise_and_claims_against_numpy_and_scipy(tmp_path):
    from scipy import stats

    _, runs = _study(tmp_path)
    runs = runs.merge(
        pd.read_csv(tmp_path / "archs.csv")[["arch_id", "name", "role"]], on="arch_id"
    )
    short = runs[runs["recipe"] == "short"]
    table, pooled = seed_table(short)
    sds = [np.std(short[short["arch_id"] == a]["top1"], ddof=1) for a in table.index]
    assert list(table["sd"]) == pytest.approx(sds)
    assert pooled == pytest.approx(np.sqrt(np.mean(np.square(sds))))
    found = claims(runs).set_index("model")
    a = runs[runs["name"] == "igp_resnet37"]["top1"].to_numpy()
    b = runs[runs["name"] == "bireal_resnet18"]["top1"].to_numpy()
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    row = found.loc["igp_resnet37"]
    assert row["difference"] == pytest.approx(a.mean() - b.mean())
    assert (row["lo"], row["hi"]) == pytest.approx((welch.low, welch.high))
    assert "igp_resnet21" not in found.index  # not trained: no row


def test_retest_is_the_mean_tau_of_the_seed_pairs_by_brute_force():
    from results.validation import retest

    rng = np.random.default_rng(5)
    acc = rng.normal(size=(7, 3))  # 7 architectures x seeds 0, 1, 2, no ties
    rows = [{"arch_id": f"a{i}", "seed": s, "top1": acc[i, s]} for i in range(7) for s in range(3)]
    rows.append({"arch_id": "two-seeds", "seed": 0, "top1": 0.0})  # not in the retest
    rows.append({"arch_id": "two-seeds", "seed": 1, "top1": 1.0})
    short = pd.DataFrame(rows)
    pairs = [_brute_kendall(acc[:, a], acc[:, b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert len(set(pairs)) > 1  # the seeds disagree, differently per pair
    assert retest(short) == (7, pytest.approx(np.mean(pairs)))
    assert retest(short[short["seed"] < 2])[0] == 0  # two seeds: no retest


@pytest.mark.slow
def test_the_document_is_written_with_its_tables_and_figures(tmp_path):
    _study(tmp_path / "study")
    doc = tmp_path / "docs" / "validation.md"
    out = subprocess.run(
        [sys.executable, "-m", "results.validation", "--study", str(tmp_path / "study"),
         "--doc", str(doc)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    text = doc.read_text()
    # params rises with accuracy, the key's order agrees with it: tau +1 exactly
    assert "| `params` | baseline | 12 | +1.00 [" in text
    assert "| `key:stage_mean_n` | scorer key | 12 | +1.00 [" in text
    assert "| `depth` | baseline | 12 | constant | constant |" in text
    assert "| `naswot` | zero-cost proxy | 12 |" in text  # from the runs of seed 0
    assert "**its order agrees with accuracy**" in text
    assert "| igp_resnet37 | bireal_resnet18 | 3 / 3 |" in text
    # the long recipe ranks a00, a03, a06, a09 as the short one does: the short recipe leads
    assert text.startswith("Over 12 sampled", text.index("## Conclusion") + 15)
    assert "rank 4 architectures with Kendall tau +1.00 [" in text
    assert "| `params` | baseline | 4 | +1.00 [" in text  # short and long columns
    assert "| `depth` | baseline | 4 | constant | constant | constant |" in text
    for figure in ("accuracy_vs_metrics.png", "tau.png", "curves.png"):
        assert (doc.parent / "validation" / figure).stat().st_size > 1000
        assert f"](validation/{figure})" in text
    missing = subprocess.run(
        [sys.executable, "-m", "results.validation", "--study", str(tmp_path / "nothing")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "runners.study" in missing.stderr


@pytest.mark.slow
def test_a_long_recipe_that_ranks_otherwise_takes_the_headline(tmp_path):
    from results.validation import write_document

    _study(tmp_path / "study", long_slope=-0.02)  # the long recipe reverses a00 < a03 < ...
    text = write_document(tmp_path / "study", tmp_path / "docs" / "validation.md")
    conclusion = text[text.index("## Conclusion") :]
    first = conclusion.splitlines()[2]
    assert first.startswith("The short recipe ranks the 4 architectures trained with both")
    # the key agrees with the short recipe, so it runs against the long one: tau -1 on 4 nets
    assert "has Kendall tau -1.00 [" in first and "(on the short recipe, the same " in first
    assert "**its order runs against accuracy**" in first
    key_row = "| `key:stage_mean_n` | scorer key | 4 |"
    row = next(r for r in text.splitlines() if r.startswith(key_row)).split(" | ")
    assert row[3].startswith("+1.00") and row[4].startswith("-1.00")  # short, long
    assert "Over 12 sampled architectures" in conclusion  # the short result follows it


@pytest.mark.slow
def test_the_status_says_provisional_until_every_job_is_trained(tmp_path):
    from results.validation import write_document

    _, runs = _study(tmp_path / "study")
    doc = tmp_path / "docs" / "validation.md"
    assert "provisional" not in write_document(tmp_path / "study", doc)  # every job trained
    study = tmp_path / "study" / "study.json"
    plan = json.loads(study.read_text())
    plan["jobs"].append({"job": "long-s0-a01", "arch_id": "a01"})  # planned, not trained
    study.write_text(json.dumps(plan))
    status = write_document(tmp_path / "study", doc).split("## Status")[1].split("##")[0]
    assert f"{len(runs)} of {len(runs) + 1} jobs trained" in status
    assert "every figure below is provisional" in status


def test_fidelity_within_each_space_against_a_brute_force_count():
    """Two families far apart: pooled, short and long agree (the gap); within the densenets the
    long recipe reverses the short one's order, within the resnets it keeps it."""
    from results.validation import fidelity, fidelity_by_space

    rows, seeds = [], {}
    for i in range(5):
        for space, base, sign in (("densenet", 0.9, -1), ("resnet", 0.5, 1)):
            aid = f"{space}{i}"
            short = base + 0.01 * i
            seeds[aid] = np.array([short])
            rows.append({"arch_id": aid, "space": space, "recipe": "short", "top1": short})
            rows.append(
                {"arch_id": aid, "space": space, "recipe": "long", "top1": base + sign * 0.01 * i}
            )
    bench = pd.DataFrame(rows)
    pooled = fidelity(bench, seeds, 0.0)
    within = fidelity_by_space(bench, seeds, 0.0)
    long = bench[bench["recipe"] == "long"].set_index("arch_id")["top1"]
    ids = sorted(seeds)
    assert pooled["tau"] == pytest.approx(
        _brute_kendall([long[a] for a in ids], [seeds[a][0] for a in ids])
    )
    assert pooled["tau"] > 0.5  # the two families apart
    assert within["densenet"]["tau"] == pytest.approx(-1.0)
    assert within["resnet"]["tau"] == pytest.approx(1.0)
    assert within["densenet"]["n"] == within["resnet"]["n"] == 5


def test_padding_pairs_match_scipys_paired_t_test():
    """Each +1-padded run is paired with the zero-padded run of its architecture and seed; the
    mean difference and its interval are scipy's paired t test's."""
    import pandas as pd
    from scipy import stats

    from results.validation import padding_pairs

    rng = np.random.default_rng(5)
    rows = []
    for arch in ("a", "b", "c"):
        for seed in (0, 1):
            zero, one = rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9)
            rows += [
                {"arch_id": arch, "name": f"net-{arch}", "seed": seed, "recipe": "short",
                 "part": "short", "top1": zero},
                {"arch_id": arch, "name": f"net-{arch}", "seed": seed, "recipe": "short_one",
                 "part": "padding", "top1": one},
            ]  # fmt: skip
    rows.append({"arch_id": "d", "name": "net-d", "seed": 0, "recipe": "short_one",
                 "part": "padding", "top1": 0.5})  # fmt: skip
    # the transfer part's +1-padded runs are not the padding part's
    rows.append({"arch_id": "a", "name": "net-a", "seed": 0, "recipe": "short_one",
                 "part": "transfer", "top1": 0.5})  # fmt: skip
    pairs, summary = padding_pairs(pd.DataFrame(rows))
    assert len(pairs) == summary["n"] == 6  # net-d has no zero-padded run to pair with
    test = stats.ttest_rel(pairs["+1 padding"], pairs["zero padding"])
    low, high = test.confidence_interval(0.95)
    assert summary["lo"] == pytest.approx(low) and summary["hi"] == pytest.approx(high)
    assert summary["mean"] == pytest.approx((pairs["+1 padding"] - pairs["zero padding"]).mean())
