"""Scorers: how a gradient-path report becomes a ranking key (smaller ranks first).

The default is the ranking key of docs/design.md section 5: the mean over stages of (N_1st, N_2nd,
N_3rd), compared lexicographically, a missing value ranking worse than any present one. Which
aggregate predicts trained accuracy best is a measured question, so others are registered beside
it with ``@register_scorer`` and can be compared against training results.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from nas._names import Registry
from nas.metrics import PathReport, PathStats, missing_last

Key = tuple[float, ...]
Scorer = Callable[[PathReport], Key]
SCORERS: Registry[Scorer] = Registry("scorer")
DEFAULT_SCORER = "stage_mean_n"


def register_scorer(fn: Scorer) -> Scorer:
    """Register a scorer under its function name."""
    return SCORERS.register(fn)


def list_scorers() -> list[str]:
    return SCORERS.names()


def get_scorer(name: str = DEFAULT_SCORER) -> Scorer:
    """The scorer ``name``; an unknown name is a KeyError naming the closest ones."""
    return SCORERS.get(name)


def _mean_key(stats: list[PathStats], field: str) -> Key:
    if not stats:
        return (math.inf,) * 3
    key = []
    for k in range(3):
        values = [missing_last(getattr(s, field)[k]) for s in stats]
        key.append(sum(values) / len(values))
    return tuple(key)


@register_scorer
def stage_mean_n(report: PathReport) -> Key:
    """Mean over stages of (N_1st, N_2nd, N_3rd) (docs/design.md section 5; the default)."""
    return _mean_key(list(report.stages.values()), "N")


@register_scorer
def block_mean_n(report: PathReport) -> Key:
    """Mean over blocks of (N_1st, N_2nd, N_3rd): the paper's per-block numbers (its Fig. 2)."""
    return _mean_key(list(report.blocks.values()), "N")


@register_scorer
def stage_mean_l(report: PathReport) -> Key:
    """Mean over stages of (L_1st, L_2nd, L_3rd): binary convs instead of their cost."""
    return _mean_key(list(report.stages.values()), "L")


@register_scorer
def network_n(report: PathReport) -> Key:
    """(N_1st, N_2nd, N_3rd) of the whole network."""
    return tuple(missing_last(v) for v in report.network.N)


@register_scorer
def worst_layer_n1(report: PathReport) -> Key:
    """The largest N_1st over binary convs: what the gradient pays to reach the worst-served
    layer, then the mean N_1st over layers."""
    firsts = [missing_last(s.N[0]) for s in report.layers.values()]
    if not firsts:
        return (math.inf, math.inf)
    return (max(firsts), sum(firsts) / len(firsts))
