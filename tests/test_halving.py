"""The successive-halving decision (:func:`runners.halving.promoted`), without Ray: the cases
the scheduler meets, each against the rule written out by hand (the best third at the rung,
rounded up, go on; earlier promotions keep their places; a failed candidate leaves the pool)."""

import math
import subprocess
import sys

import pytest

from runners.halving import Standing, promoted


def at_rung(*values: float | None) -> dict[str, Standing]:
    return {f"c{i}": Standing(epochs=1, value=v) for i, v in enumerate(values)}


def test_the_decision_waits_for_a_candidate_still_on_its_way_to_the_rung():
    standings = at_rung(0.5, 0.7) | {"late": Standing(epochs=0)}
    assert promoted(standings, rung=1, reduction_factor=3) is None


@pytest.mark.parametrize(
    ("n", "kept"), [(1, 1), (2, 1), (3, 1), (4, 2), (6, 2), (7, 3), (8, 3), (9, 3), (10, 4)]
)
def test_the_best_third_rounded_up_go_on(n, kept):
    values = [(7 * i) % 11 / 11 for i in range(n)]  # distinct, in no order
    standings = at_rung(*values)
    best = sorted(standings, key=lambda c: -standings[c].value)[:kept]
    assert promoted(standings, rung=1, reduction_factor=3) == set(best)


def test_a_smaller_metric_is_better_when_the_tuner_minimises():
    standings = at_rung(0.3, 0.1, 0.2, 0.9)
    assert promoted(standings, 1, 2, larger_is_better=False) == {"c1", "c2"}
    assert promoted(standings, 1, 2) == {"c3", "c0"}


def test_a_missing_or_nan_metric_ranks_last_and_ties_keep_their_order():
    standings = at_rung(None, math.nan, 0.4, 0.4, 0.1, 0.0)
    assert promoted(standings, 1, 3) == {"c2", "c3"}
    assert promoted(standings, 1, 6) == {"c2"}  # the first of the tied pair


def test_a_candidate_past_the_rung_keeps_its_place_and_counts_in_the_third():
    """A restored experiment: one candidate was promoted before the kill (it is at epoch 3);
    of the six, two go on: it and the best of those at the rung, whatever it scored."""
    standings = at_rung(0.1, 0.9, 0.5, 0.8, 0.2) | {"earlier": Standing(epochs=3, value=0.0)}
    assert promoted(standings, 1, 3) == {"earlier", "c1"}


def test_promotions_before_are_never_taken_back_even_beyond_the_third():
    standings = {f"p{i}": Standing(epochs=2, value=0.1) for i in range(3)} | at_rung(0.9)
    assert promoted(standings, 1, 3) == {"p0", "p1", "p2"}


def test_a_candidate_that_ended_before_the_rung_leaves_the_pool():
    standings = at_rung(0.2, 0.6, 0.4) | {"failed": Standing(epochs=0, ended=True)}
    assert promoted(standings, 1, 3) == {"c1"}  # a third of three, not of four


def test_the_decision_does_not_import_ray():
    code = (
        "import sys, runners.halving; print(sorted(m for m in sys.modules if m.startswith('ray')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
