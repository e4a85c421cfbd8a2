"""The report's first paragraph (the verdict against the baseline) and its point labels."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from nas.core.scorers import ranking_choice
from results.report import _label_points, model_name, verdict

SETTINGS = {
    "scorer": "stage_mean_n",
    "training": {"epochs": 3, "baseline": "bireal_resnet18"},
}


def _trained(rows):
    return pd.DataFrame(
        rows, columns=["arch_id", "rank", "space", "reference", "status", "epoch", "top1"]
    )


def test_verdict_names_the_best_full_candidate_and_the_difference():
    trained = _trained(
        [
            ("a", 1, "resnet", "", "trained", 3, 0.8612),
            ("b", 2, "resnet", "", "stopped", 1, 0.9000),  # stopped early: not a full run
            ("c", 5, "densenet", "", "trained", 3, 0.8701),
            ("z", 60, "resnet", "bireal_resnet18", "trained", 3, 0.8550),
        ]
    )
    headline, rest = verdict(SETTINGS, trained)
    assert headline.startswith("Verdict: the best trained candidate, #5 (densenet, arch c)")
    assert "87.01% test top-1 after 3 epochs, 1.51 points above the baseline" in headline
    assert "bireal_resnet18 (85.50%" in headline and "**" not in headline
    assert rest.startswith("3 candidates were trained by successive halving")
    text = headline + rest
    tau = ranking_choice()["held_out_tau"]["stage_mean_n"]
    assert f"{tau[0]:+.2f} [{tau[1]:+.2f}, {tau[2]:+.2f}]" in text
    sd = ranking_choice()["benchmark"]["seed_sd"]
    assert ("the seed noise is not measured yet" in text) == (not sd)


def test_verdict_below_the_baseline_and_without_one():
    trained = _trained(
        [
            ("a", 1, "resnet", "", "trained", 3, 0.80),
            ("z", 60, "resnet", "bireal_resnet18", "trained", 3, 0.85),
        ]
    )
    assert "5.00 points below the baseline" in verdict(SETTINGS, trained)[0]
    alone = verdict(SETTINGS, trained.iloc[:1])[0]
    assert "no baseline was trained" in alone
    nothing = verdict(SETTINGS, trained.assign(status="stopped"))[0]
    assert "no candidate finished its 3 epochs" in nothing
    one = {**SETTINGS, "training": {"epochs": 1, "baseline": "bireal_resnet18"}}
    headline, rest = verdict(one, trained.assign(epoch=1))
    assert "after 1 epoch, 5.00 points below" in headline  # one epoch, not "1 epochs"
    assert rest.startswith("1 candidate was trained")


def test_models_are_named_by_zoo_name_or_rank():
    assert model_name(3, "") == "#3" and model_name(60.0, "bireal_resnet18") == "bireal_resnet18"


def test_close_points_share_one_label():
    fig, ax = plt.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 1)
    _label_points(ax, [1.0, 1.1, 8.0], [0.5, 0.51, 0.5], ["#1", "#2", "#3"])
    labels = sorted(t.get_text() for t in ax.texts)
    plt.close(fig)
    assert labels == ["#1, #2", "#3"]


def test_verdict_weighs_the_difference_against_the_benchmark_seed_noise(monkeypatch):
    """With a seed deviation sd on the benchmark, a difference of two single runs varies by
    2 * sqrt(2) * sd (two standard deviations): 0.5 points is within it for sd = 0.3 points
    (+/-0.85) and beyond it for sd = 0.1 points (+/-0.28)."""
    import results.report as report

    trained = _trained(
        [
            ("a", 1, "resnet", "", "trained", 3, 0.8650),
            ("z", 60, "resnet", "bireal_resnet18", "trained", 3, 0.8600),
        ]
    )
    for sd, word, band in ((0.003, "within", "0.85"), (0.001, "beyond", "0.28")):
        choice = {**ranking_choice(), "benchmark": {"seed_sd": sd}}
        monkeypatch.setattr(report, "ranking_choice", lambda c=choice: c)
        text = verdict(SETTINGS, trained)[0]
        assert "0.50 points above the baseline" in text
        assert f"{word} the seed noise" in text and f"+/-{band} points" in text
