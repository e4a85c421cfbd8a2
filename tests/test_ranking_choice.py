"""The scorers that read cost beside the paths, the choice of the default ranking on half of the
benchmark (``python -m results.ranking_choice``) and the pool that training decides among."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from nas import model_spec, spec_cost
from nas.core.blocks import chain_block
from nas.core.graph import lower
from nas.core.scorers import (
    BASELINE_SCORERS,
    CHOICE_FILE,
    DEFAULT_SCORER,
    FITTED_FEATURES,
    FITTED_SCORERS,
    PAPER_SCORER,
    features,
    get_scorer,
    list_scorers,
    measure,
    ranking_choice,
)
from nas.core.spec import Stage
from pipeline.ranking import training_pool
from results.ranking_choice import agreement, choose, fit_model, key_ranks, predict, split
from speed.suite import chain_spec

ROOT = Path(__file__).resolve().parent.parent


def test_key_ranks_sort_lexicographically_and_share_ties():
    keys = [(2.0, 1.0), (1.0, 5.0), (2.0, 0.0), (1.0, 5.0), (math.inf, 0.0)]
    # by hand: (1,5) twice share ranks 1 and 2, then (2,0), (2,1), (inf,0)
    assert key_ranks(keys).tolist() == [4.0, 1.5, 3.0, 1.5, 5.0]


def test_agreement_is_plus_one_when_the_first_key_trains_best():
    keys = [(float(i),) for i in range(6)]
    accuracy = np.linspace(0.9, 0.4, 6)
    assert agreement(keys, accuracy) == pytest.approx(1.0)
    assert agreement(keys, accuracy[::-1]) == pytest.approx(-1.0)
    assert math.isnan(agreement([(1.0,)] * 6, accuracy))  # a constant key orders nothing


def test_fit_model_finds_the_feature_that_orders_accuracy():
    rng = np.random.default_rng(3)
    table = pd.DataFrame({"signal": rng.normal(size=40), "noise": rng.normal(size=40)})
    accuracy = 0.8 - 0.05 * table["signal"].to_numpy()  # larger signal, worse
    model = fit_model(table, accuracy)
    weights = dict(zip(model["features"], model["weights"], strict=True))
    assert weights["signal"] < 0 and abs(weights["signal"]) > 5 * abs(weights["noise"])
    tau = stats.kendalltau(predict(model, table), accuracy).statistic
    assert tau > 0.95


def test_split_halves_are_disjoint_cover_everything_and_stay_as_the_benchmark_grows():
    ids = [f"a{i:03d}" for i in range(200)]
    fit, held = split(ids, seed=4)
    assert not set(fit) & set(held) and sorted(fit + held) == ids
    assert 70 < len(fit) < 130  # about half
    grown_fit, grown_held = split([*ids, "b1", "b2", "b3"], seed=4)
    assert set(fit) <= set(grown_fit) and set(held) <= set(grown_held)
    assert split(ids, seed=5) != (fit, held)


def test_fp_share_and_stage_share_n_from_the_cost_model():
    spec = model_spec("bireal_resnet18")
    m = measure(lower(spec))
    total = spec_cost(spec).total  # the cost model, checked against forward hooks elsewhere
    assert get_scorer("fp_share")(m) == pytest.approx((-total.fp_macs / total.flops,))
    paper = get_scorer("stage_mean_n")(m)
    shares = get_scorer("stage_share_n")(m)
    assert shares == pytest.approx(tuple(v / (total.bops / 64) for v in paper))


def test_network_l_counts_binary_convs_on_the_fewest_paths():
    # a chain of 5 Bi-Real blocks: the shortcut path crosses none, the next ones 1 and 2 convs;
    # the same chain without shortcuts: every path crosses all 5
    bireal = chain_spec(5)
    assert get_scorer("network_l")(measure(lower(bireal))) == (0, 1, 2)
    plain = bireal.replace(
        stages=(Stage(blocks=(chain_block(64, 1, "none"),) * 5),), name="plain_chain5"
    )
    assert get_scorer("network_l")(measure(lower(plain)))[0] == 5


@pytest.mark.parametrize("name", sorted(FITTED_SCORERS))
def test_fitted_scorers_agree_with_the_fitting_code(name):
    """Each fitted scorer (pure Python, in the search) and results.ranking_choice.predict (numpy,
    where the weights were fitted) give the same score for the committed weights."""
    model = ranking_choice()["models"][name]
    assert tuple(model["features"]) == FITTED_FEATURES[name]
    names = ["bireal_resnet18", "igp_resnet37", "binary_densenet28", "binary_densenet45"]
    measures = [measure(lower(model_spec(n))) for n in names]
    table = pd.DataFrame([features(m) for m in measures])
    scorer = get_scorer(name)
    assert [scorer(m)[0] for m in measures] == pytest.approx(-predict(model, table))


def test_the_default_is_a_registered_scorer_and_the_paper_key_stays():
    assert DEFAULT_SCORER in list_scorers()
    assert PAPER_SCORER == "stage_mean_n" and PAPER_SCORER in list_scorers()
    assert "capacity" in BASELINE_SCORERS and "paths_only" not in BASELINE_SCORERS


def _chain(blocks: int, pattern: str):
    return chain_spec(blocks).replace(
        stages=(Stage(blocks=(chain_block(64, 1, pattern),) * blocks),), name=f"{pattern}{blocks}"
    )


@pytest.mark.parametrize(
    ("spec", "n_units", "l_values"),
    [
        # one distinct cost: a plain chain of 3 convs, every path crosses all of them
        (_chain(3, "none"), (3, None, None), (3, None, None)),
        # two: one Bi-Real block (the shortcut, the conv)
        (_chain(1, "bireal"), (0, 1, None), (0, 1, None)),
        # three: two Bi-Real blocks (0, c, 2c)
        (_chain(2, "bireal"), (0, 1, 2), (0, 1, 2)),
    ],
    ids=["one cost", "two costs", "three costs"],
)
def test_a_missing_path_cost_takes_the_networks_ceiling(spec, n_units, l_values):
    """By hand: c = one conv's BOPs / 64; the ceiling of N is the network's binary cost (every
    conv, c times their number), of L the number of binary convs; every key is finite."""
    m = measure(lower(spec))
    convs = len(spec.stages[0].blocks)
    c = spec_cost(spec).total.bops / 64 / convs
    report = m.paths.stages["stage1"]
    assert report.N == tuple(None if u is None else u * c for u in n_units)
    assert report.L == l_values
    ceiling_n, ceiling_l = convs * c, convs
    expected_n = tuple(ceiling_n if u is None else u * c for u in n_units)
    expected_l = tuple(ceiling_l if v is None else v for v in l_values)
    assert get_scorer("stage_mean_n")(m) == pytest.approx(expected_n)
    assert get_scorer("stage_mean_l")(m) == pytest.approx(expected_l)
    for name in list_scorers():
        assert all(math.isfinite(v) for v in get_scorer(name)(m)), name
    assert all(math.isfinite(v) for v in features(m).values())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["none", "bireal", "ebireal"]), min_size=1, max_size=5))
def test_a_missing_value_is_at_least_every_present_value_of_its_network(patterns):
    """The ceiling bounds every path: each stage's N and L values, present or filled in, are
    sorted, and no present value exceeds the network's ceiling."""
    spec = chain_spec(len(patterns)).replace(
        stages=(Stage(blocks=tuple(chain_block(64, 2, p) for p in patterns)),)
    )
    m = measure(lower(spec))
    for field in ("N", "L"):
        for stats_ in [*m.paths.stages.values(), m.paths.network]:
            values = [m.value(stats_, field, k) for k in range(3)]
            assert values == sorted(values) and values[-1] <= m.ceiling(field)


def test_training_pool_takes_each_space_in_turn_one_per_key():
    rows = [  # rank order
        ("r1", "resnet", "[1]"),
        ("r2", "resnet", "[1]"),  # same key as r1: left out
        ("r3", "resnet", "[2]"),
        ("r4", "resnet", "[3]"),
        ("d1", "densenet", "[4]"),
        ("x", "densenet", "[5]"),
    ]
    table = pd.DataFrame(
        [{"arch_id": a, "space": s, "key": k, "reference": ""} for a, s, k in rows]
        + [{"arch_id": "bireal", "space": "resnet", "key": "[0]", "reference": "bireal"}]
    )
    assert training_pool(table, 3)["arch_id"].tolist() == ["r1", "d1", "r3"]
    assert training_pool(table, 10)["arch_id"].tolist() == ["r1", "d1", "r3", "x", "r4"]


@pytest.mark.slow
def test_the_committed_choice_is_what_the_committed_benchmark_gives(tmp_path):
    """nas/core/ranking_choice.json and docs/ranking.md are the command's output on the committed
    study: rerun `python -m results.ranking_choice` after adding study results."""
    choice, _ = choose()
    committed = json.loads(CHOICE_FILE.read_text())
    assert committed["default"] == choice["default"]
    assert committed["tie_break"]["column"] == choice["tie_break"]["column"]
    assert committed["benchmark"]["fit"] == choice["benchmark"]["fit"]
    for name, model in choice["models"].items():
        assert committed["models"][name]["weights"] == pytest.approx(model["weights"])
    doc = tmp_path / "ranking.md"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "results.ranking_choice",
            "--doc",
            str(doc),
            "--choice",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert doc.read_text() == (ROOT / "docs" / "ranking.md").read_text()


def test_the_command_without_a_benchmark_is_a_usage_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "results.ranking_choice", "--study", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "runners.study" in out.stderr and len(out.stderr.strip().splitlines()) == 1
