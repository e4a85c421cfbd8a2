"""The successive-halving decision, without Ray: which candidates go on past the rung.

Every candidate trains to the rung (one epoch) and waits there; once all have (or left the
pool), the best ``1 / reduction_factor`` of them, rounded up (3 of 8), go on to the full recipe
and the rest stop. A candidate already past the rung was promoted earlier (a restored
experiment) and keeps its place; one that ended before the rung (it failed) is out of the pool.
:class:`runners.promotion.PromoteCandidates` asks this function from Ray Tune's scheduler."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

Candidate = TypeVar("Candidate", bound=Hashable)


@dataclass(frozen=True)
class Standing:
    """Where a candidate is: the epochs it has reported, its metric at the last of them, and
    whether it ended (failed or was stopped) without reporting more."""

    epochs: int
    value: float | None = None
    ended: bool = False


def promoted(
    standings: Mapping[Candidate, Standing],
    rung: int,
    reduction_factor: int,
    larger_is_better: bool = True,
) -> set[Candidate] | None:
    """The candidates that go on past ``rung``, or None while one is still on its way to it.
    Best first by ``value``; a missing or NaN value ranks last; ties keep the mapping's order."""
    past, at = [], []
    for candidate, standing in standings.items():
        if standing.epochs > rung:
            past.append(candidate)
        elif standing.epochs == rung:
            at.append(candidate)
        elif not standing.ended:
            return None
    keep = math.ceil((len(past) + len(at)) / reduction_factor)
    sign = 1.0 if larger_is_better else -1.0

    def rank(candidate: Candidate) -> tuple[int, float]:
        value = standings[candidate].value
        if value is None or not math.isfinite(value):
            return (1, 0.0)
        return (0, -sign * float(value))

    at.sort(key=rank)
    return set(past) | set(at[: max(0, keep - len(past))])
