"""Scorers: how a network's measures (gradient paths, cost, depth) become a ranking key (smaller
ranks first).

The paper's key is :func:`stage_mean_n` (docs/design.md section 5): the mean over stages of
(N_1st, N_2nd, N_3rd), compared lexicographically, a missing value ranking worse than any present
one. Which key predicts trained accuracy is a measured question: the others are registered beside
it with ``@register_scorer``, and the default is the one the benchmark of trained networks
supports on architectures it was not chosen on (``python -m results.ranking``; docs/ranking.md).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nas._names import Registry
from nas.analysis import analyze_ops
from nas.cost import Cost, ops_total
from nas.graph import Op, ops_depth
from nas.metrics import PathReport, PathStats, missing_last


@dataclass(frozen=True)
class Measures:
    """What a scorer sees of a network, all without training: its gradient paths, its cost
    (whole network) and its depth (weighted operations on the longest path)."""

    paths: PathReport
    cost: Cost
    depth: int


def measure(ops: list[Op], paths: PathReport | None = None) -> Measures:
    """The :class:`Measures` of lowered ops (``paths``: their report, when already computed)."""
    return Measures(paths or analyze_ops(ops), ops_total(ops), ops_depth(ops))


Key = tuple[float, ...]
Scorer = Callable[[Measures], Key]
SCORERS: Registry[Scorer] = Registry("scorer")
PAPER_SCORER = "stage_mean_n"  # the paper's key (docs/design.md section 5)
# Scorers that read no gradient path: baselines the benchmark compares, never the default (the
# product ranks by gradient paths; docs/ranking.md says how the baselines fare).
BASELINE_SCORERS = frozenset({"fp_share"})

CHOICE_FILE = Path(__file__).with_name("ranking_choice.json")


@functools.cache
def ranking_choice() -> dict:
    """What ``python -m results.ranking`` chose from the benchmark (``nas/ranking_choice.json``):
    the default scorer, the tie-break column, and the weights of :func:`paths_capacity`."""
    return json.loads(CHOICE_FILE.read_text())


# The default ranking: the scorer that the benchmark supports (docs/ranking.md).
DEFAULT_SCORER: str = ranking_choice()["default"]
# Scorers whose weights were fitted on the benchmark (their model is in ranking_choice.json).
FITTED_SCORERS = frozenset({"paths_capacity"})


def fitted_model(name: str) -> dict | None:
    """The fitted weights the scorer ``name`` ranks with now (None for a scorer without any): a
    run records them at its start, so that a refit (``python -m results.ranking``) cannot change
    the ranking of a run half-way."""
    return ranking_choice()["model"] if name in FITTED_SCORERS else None


def register_scorer(fn: Scorer) -> Scorer:
    """Register a scorer under its function name."""
    return SCORERS.register(fn)


def list_scorers() -> list[str]:
    return SCORERS.names()


def get_scorer(name: str | None = None) -> Scorer:
    """The scorer ``name`` (default: :data:`DEFAULT_SCORER`); an unknown name is a KeyError
    naming the closest ones."""
    return SCORERS.get(name or DEFAULT_SCORER)


def _mean_key(stats: list[PathStats], field: str) -> Key:
    if not stats:
        return (math.inf,) * 3
    key = []
    for k in range(3):
        values = [missing_last(getattr(s, field)[k]) for s in stats]
        key.append(sum(values) / len(values))
    return tuple(key)


@register_scorer
def stage_mean_n(m: Measures) -> Key:
    """Mean over stages of (N_1st, N_2nd, N_3rd): the paper's key (docs/design.md section 5)."""
    return _mean_key(list(m.paths.stages.values()), "N")


@register_scorer
def block_mean_n(m: Measures) -> Key:
    """Mean over blocks of (N_1st, N_2nd, N_3rd): the paper's per-block numbers (its Fig. 2)."""
    return _mean_key(list(m.paths.blocks.values()), "N")


@register_scorer
def stage_mean_l(m: Measures) -> Key:
    """Mean over stages of (L_1st, L_2nd, L_3rd): binary convs instead of their cost."""
    return _mean_key(list(m.paths.stages.values()), "L")


@register_scorer
def network_n(m: Measures) -> Key:
    """(N_1st, N_2nd, N_3rd) of the whole network."""
    return tuple(missing_last(v) for v in m.paths.network.N)


@register_scorer
def worst_layer_n1(m: Measures) -> Key:
    """The largest N_1st over binary convs: what the gradient pays to reach the worst-served
    layer, then the mean N_1st over layers."""
    firsts = [missing_last(s.N[0]) for s in m.paths.layers.values()]
    if not firsts:
        return (math.inf, math.inf)
    return (max(firsts), sum(firsts) / len(firsts))


@register_scorer
def network_l(m: Measures) -> Key:
    """(L_1st, L_2nd, L_3rd) of the whole network: the fewest binary convs the gradient crosses
    on its way to the input, by distinct count."""
    return tuple(missing_last(v) for v in m.paths.network.L)


@register_scorer
def stage_share_n(m: Measures) -> Key:
    """:func:`stage_mean_n` divided by the network's binary FLOPs (BOPs / 64): the share of the
    binary compute that the gradient crosses on its cheapest paths, so a thin network does not
    rank first for being thin (the paper's key at equal binary compute)."""
    binary = m.cost.bops / 64
    return tuple(v / binary if binary else math.inf for v in stage_mean_n(m))


@register_scorer
def fp_share(m: Measures) -> Key:
    """The share of FLOPs spent in full-precision MACs, larger first: a capacity baseline without
    gradient paths (at equal FLOPs, every FP MAC costs 64 binary ones)."""
    return (-m.cost.fp_macs / m.cost.flops if m.cost.flops else math.inf,)


# The features of :func:`paths_capacity`: gradient-path terms (stage means of L and of log N, the
# log of the longest path) and one capacity term (log FP MACs), by name.
def features(m: Measures) -> dict[str, float]:
    """The torch-free features of a network that :func:`paths_capacity` weighs."""
    stats = list(m.paths.stages.values())
    out: dict[str, float] = {}
    for k, order in enumerate(("1st", "2nd", "3rd")):
        out[f"L_{order}"] = sum(missing_last(s.L[k]) for s in stats) / max(len(stats), 1)
        out[f"log_N_{order}"] = math.log1p(
            sum(missing_last(s.N[k]) for s in stats) / max(len(stats), 1)
        )
    out["log_depth"] = math.log(max(m.depth, 1))
    out["log_fp_macs"] = math.log(max(m.cost.fp_macs, 1))
    return out


@register_scorer
def paths_capacity(m: Measures) -> Key:
    """A linear model of the accuracy rank over gradient-path terms (stage means of L_1st..L_3rd
    and of log N_1st..N_3rd, log depth) and one capacity term (log FP MACs), its weights fitted
    on half of the benchmark of trained binary CNNs (docs/ranking.md); the key is minus the
    predicted rank.

    Features: :func:`features`; weights: ``nas/ranking_choice.json``, written by ``python -m
    results.ranking``."""
    model = ranking_choice()["model"]
    values = features(m)
    z = [
        (values[name] - mean) / sd
        for name, mean, sd in zip(model["features"], model["mean"], model["sd"], strict=True)
    ]
    if not all(math.isfinite(v) for v in z):
        return (math.inf,)
    return (-sum(w * v for w, v in zip(model["weights"], z, strict=True)),)
