"""Scorers: how a network's measures (gradient paths, cost, depth) become a ranking key (smaller
ranks first).

The paper's key is :func:`stage_mean_n` (docs/design.md section 5): the mean over stages of
(N_1st, N_2nd, N_3rd), compared lexicographically. Which key predicts trained accuracy is a
measured question: the others are registered beside it with ``@register_scorer``, and the default
is the one that predicts best on half of the benchmark of trained networks, measured on the other
half and on architectures nobody had trained (``python -m results.ranking_choice``;
docs/ranking.md).

Every key is finite. A missing k-th distinct path cost or length (a scope with fewer than k
distinct values) takes the network's *ceiling*: its total binary cost (BOPs / 64) for N, its number
of binary convs for L. No gradient path can cost more or cross more binary convs, so a missing
value still ranks at least as badly as any present one of that network (docs/design.md section 5).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nas.core.analysis import analyze_ops
from nas.core.cost import Cost, ops_total
from nas.core.graph import Op, ops_depth
from nas.core.metrics import PathReport, PathStats
from nas.core.names import Registry


@dataclass(frozen=True)
class Measures:
    """What a scorer sees of a network, all without training: its gradient paths, its cost
    (whole network), its depth (weighted operations on the longest path), its number of binary
    convs and their mean output channels (its width)."""

    paths: PathReport
    cost: Cost
    depth: int
    binary_convs: int
    width: float

    def ceiling(self, field: str) -> float:
        """What a missing N (``field`` "N") or L ("L") value counts as: the network's total binary
        cost, or its number of binary convs (no path exceeds either)."""
        return self.cost.bops / 64 if field == "N" else float(self.binary_convs)

    def value(self, stats: PathStats, field: str, k: int) -> float:
        """The k-th (0-based) distinct N or L of ``stats``, its ceiling where it is missing."""
        v = getattr(stats, field)[k]
        return self.ceiling(field) if v is None else float(v)


def measure(ops: list[Op], paths: PathReport | None = None) -> Measures:
    """The :class:`Measures` of lowered ops (``paths``: their report, when already computed)."""
    channels = [op.cout for op in ops if op.kind == "binconv"]
    return Measures(
        paths or analyze_ops(ops),
        ops_total(ops),
        ops_depth(ops),
        len(channels),
        sum(channels) / len(channels) if channels else 0.0,
    )


Key = tuple[float, ...]
Scorer = Callable[[Measures], Key]
SCORERS: Registry[Scorer] = Registry("scorer")
# Roles, declared where each scorer is registered (register_scorer): the paper's key, and the
# baselines that read no gradient path, which a gradient-path ranking has to beat (docs/ranking.md
# says by how much one does); a fitted scorer's features (its weights: ranking_choice.json).
PAPER = "paper"
BASELINE = "baseline"
ROLES: dict[str, str] = {}
FITTED_FEATURES: dict[str, tuple[str, ...]] = {}

CHOICE_FILE = Path(__file__).with_name("ranking_choice.json")


@functools.cache
def ranking_choice() -> dict:
    """What ``python -m results.ranking_choice`` chose from the benchmark
    (``nas/core/ranking_choice.json``): the default scorer, the tie-break column, and the
    weights of :func:`paths_capacity`."""
    return json.loads(CHOICE_FILE.read_text())


# The default ranking: the scorer that predicted best on the benchmark's fit half (docs/ranking.md).
DEFAULT_SCORER: str = ranking_choice()["default"]


def fitted_model(name: str) -> dict | None:
    """The fitted weights the scorer ``name`` ranks with now (None for a scorer without any): a
    run records them at its start, so that a refit (``python -m results.ranking_choice``) cannot
    change the ranking of a run half-way."""
    return ranking_choice()["models"].get(name)


def register_scorer(
    fn: Scorer | None = None, *, role: str = "", fitted: tuple[str, ...] = ()
) -> Scorer | Callable[[Scorer], Scorer]:
    """Register a scorer under its function name, as ``@register_scorer`` or
    ``@register_scorer(role=..., fitted=...)``: ``role`` is :data:`PAPER` or :data:`BASELINE`;
    ``fitted`` names the :func:`features` of a fitted scorer, whose key is then minus its
    model's predicted score (the decorated function gives its name and docstring only)."""

    def register(fn: Scorer) -> Scorer:
        name = fn.__name__
        if role:
            ROLES[name] = role
        if fitted:
            FITTED_FEATURES[name] = fitted

            @functools.wraps(fn)
            def fn(m: Measures) -> Key:
                return (-predicted_score(ranking_choice()["models"][name], features(m)),)

        return SCORERS.register(fn)

    return register(fn) if fn is not None else register


def with_role(role: str) -> list[str]:
    """The registered scorers of ``role``."""
    return [name for name in list_scorers() if ROLES.get(name) == role]


def list_scorers() -> list[str]:
    return SCORERS.names()


def get_scorer(name: str | None = None) -> Scorer:
    """The scorer ``name`` (default: :data:`DEFAULT_SCORER`); an unknown name is a KeyError
    naming the closest ones."""
    return SCORERS.get(name or DEFAULT_SCORER)


def _mean_key(m: Measures, stats: list[PathStats], field: str) -> Key:
    """The mean over ``stats`` of each of the three values of ``field`` (a missing one at its
    ceiling); the network's own values where there are no such scopes."""
    stats = stats or [m.paths.network]
    return tuple(sum(m.value(s, field, k) for s in stats) / len(stats) for k in range(3))


@register_scorer(role=PAPER)
def stage_mean_n(m: Measures) -> Key:
    """Mean over stages of (N_1st, N_2nd, N_3rd): the paper's key (docs/design.md section 5)."""
    return _mean_key(m, list(m.paths.stages.values()), "N")


@register_scorer
def block_mean_n(m: Measures) -> Key:
    """Mean over blocks of (N_1st, N_2nd, N_3rd): the paper's per-block numbers (its Fig. 2)."""
    return _mean_key(m, list(m.paths.blocks.values()), "N")


@register_scorer
def stage_mean_l(m: Measures) -> Key:
    """Mean over stages of (L_1st, L_2nd, L_3rd): binary convs instead of their cost."""
    return _mean_key(m, list(m.paths.stages.values()), "L")


@register_scorer
def network_n(m: Measures) -> Key:
    """(N_1st, N_2nd, N_3rd) of the whole network."""
    return tuple(m.value(m.paths.network, "N", k) for k in range(3))


@register_scorer
def worst_layer_n1(m: Measures) -> Key:
    """The largest N_1st over binary convs: what the gradient pays to reach the worst-served
    layer, then the mean N_1st over layers."""
    firsts = [m.value(s, "N", 0) for s in m.paths.layers.values()] or [0.0]
    return (max(firsts), sum(firsts) / len(firsts))


@register_scorer
def network_l(m: Measures) -> Key:
    """(L_1st, L_2nd, L_3rd) of the whole network: the fewest binary convs the gradient crosses
    on its way to the input, by distinct count."""
    return tuple(m.value(m.paths.network, "L", k) for k in range(3))


@register_scorer
def stage_share_n(m: Measures) -> Key:
    """:func:`stage_mean_n` divided by the network's binary FLOPs (BOPs / 64): the share of the
    binary compute that the gradient crosses on its cheapest paths, so a thin network does not
    rank first for being thin (the paper's key at equal binary compute)."""
    binary = m.cost.bops / 64
    return tuple(v / binary if binary else 0.0 for v in stage_mean_n(m))


@register_scorer(role=BASELINE)
def fp_share(m: Measures) -> Key:
    """The share of FLOPs spent in full-precision MACs, larger first: a capacity baseline without
    gradient paths (at equal FLOPs, every FP MAC costs 64 binary ones)."""
    return (-m.cost.fp_macs / m.cost.flops if m.cost.flops else 0.0,)


# The features of the fitted scorers, by name: gradient-path terms (stage means of L and of log N,
# a missing value at its ceiling) and capacity terms (log depth, log FP MACs, log parameters, log
# width). Every feature is finite.
PATH_FEATURES = ("L_1st", "log_N_1st", "L_2nd", "log_N_2nd", "L_3rd", "log_N_3rd")
CAPACITY_FEATURES = ("log_depth", "log_fp_macs", "log_params", "log_width")


def features(m: Measures) -> dict[str, float]:
    """The torch-free features of a network that the fitted scorers weigh."""
    stats = list(m.paths.stages.values()) or [m.paths.network]
    out: dict[str, float] = {}
    for k, order in enumerate(("1st", "2nd", "3rd")):
        out[f"L_{order}"] = sum(m.value(s, "L", k) for s in stats) / len(stats)
        out[f"log_N_{order}"] = math.log1p(sum(m.value(s, "N", k) for s in stats) / len(stats))
    out["log_depth"] = math.log(max(m.depth, 1))
    out["log_fp_macs"] = math.log(max(m.cost.fp_macs, 1))
    out["log_params"] = math.log(max(m.cost.params, 1))
    out["log_width"] = math.log(max(m.width, 1.0))
    return out


def predicted_score(model: dict, values: dict[str, float]) -> float:
    """A fitted model's score of a network's :func:`features` (larger: predicted to train
    better): the weighted sum of its standardised features."""
    return sum(
        w * (values[name] - mean) / sd
        for name, mean, sd, w in zip(
            model["features"], model["mean"], model["sd"], model["weights"], strict=True
        )
    )


@register_scorer(role=BASELINE, fitted=CAPACITY_FEATURES)
def capacity(m: Measures) -> Key:
    """A linear model of the accuracy rank over capacity alone (log depth, log FP MACs, log
    parameters, log width), fitted on half of the benchmark (docs/ranking.md): the bar a
    gradient-path ranking has to clear. The key is minus the predicted score."""


@register_scorer(fitted=PATH_FEATURES)
def paths_only(m: Measures) -> Key:
    """A linear model of the accuracy rank over gradient-path terms alone (stage means of
    L_1st..L_3rd and of log N_1st..N_3rd), fitted on half of the benchmark (docs/ranking.md)."""


@register_scorer(fitted=PATH_FEATURES + CAPACITY_FEATURES)
def paths_capacity(m: Measures) -> Key:
    """A linear model of the accuracy rank over the gradient-path terms of :func:`paths_only` and
    the capacity terms of :func:`capacity`, fitted on half of the benchmark (docs/ranking.md).

    Features: :func:`features`; weights: ``nas/core/ranking_choice.json``, written by ``python -m
    results.ranking_choice``."""


(PAPER_SCORER,) = with_role(PAPER)  # the paper's key (docs/design.md section 5)
BASELINE_SCORERS = frozenset(with_role(BASELINE))
CAPACITY_SCORER = capacity.__name__  # capacity alone: the bar a gradient-path ranking has to clear
FITTED_SCORERS = frozenset(FITTED_FEATURES)
