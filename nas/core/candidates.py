"""A candidate's row: its cost and gradient-path metrics (:func:`score`), and the schema of the
candidates table that the search writes (``candidates.csv``), the report reads and the tests
check (:data:`COLUMNS`). Definitions: docs/design.md sections 3 (cost) and 5 (paths, key)."""

from __future__ import annotations

import math
from typing import Any

from nas.core.graph import Op, ops_arch_id
from nas.core.scorers import DEFAULT_SCORER, get_scorer, measure

# The gradient-path columns: means over stages (docs/design.md section 5).
PATH_COLUMNS = ("N_1st", "N_2nd", "N_3rd", "L_1st", "L_2nd", "L_3rd")

# candidates.csv, in order: one row per distinct candidate and reference model, ranked.
COLUMNS = (
    "rank",  # 1 = best by the ranking key
    "arch_id",  # the network's identity (same graph, same id)
    "space",  # the search space it comes from
    "reference",  # the zoo model it is ("" for a searched candidate)
    "in_band",  # FLOPs within [budget * (1 - tolerance), budget]
    "flops",  # FP MACs + BOPs / 64
    "bops",
    "fp_macs",
    "storage_mbit",
    "params",
    "binary_params",
    "fp_params",
    "width",  # the base width the space's solver chose
    "depth",  # operations on the longest path
    *PATH_COLUMNS,
    "key",  # the scorer's key, JSON (smaller ranks first)
    "trial",  # the Optuna trial that found it (empty for a reference)
    "structure",  # the space's parameters, JSON
)


def score(ops: list[Op], scorer_name: str = DEFAULT_SCORER, aid: str | None = None) -> dict:
    """Cost and gradient-path metrics of a lowered spec: a candidate's row without its rank and
    provenance (every column of :data:`COLUMNS` from ``arch_id`` to ``key``, less ``space``,
    ``reference``, ``in_band`` and ``width``)."""
    measures = measure(ops)
    key = get_scorer(scorer_name)(measures)
    total = measures.cost
    stages = list(measures.paths.stages.values())

    def mean(field: str, k: int) -> float | None:
        values = [getattr(s, field)[k] for s in stages]
        return None if not values or None in values else sum(values) / len(values)

    row: dict[str, Any] = {
        "arch_id": aid or ops_arch_id(ops),
        "flops": total.flops,
        "bops": total.bops,
        "fp_macs": total.fp_macs,
        "storage_mbit": total.storage_mbit,
        "params": total.params,
        "binary_params": total.binary_params,
        "fp_params": total.fp_params,
        "depth": measures.depth,
    }
    for name in PATH_COLUMNS:
        field, order = name.split("_")
        row[name] = mean(field, ("1st", "2nd", "3rd").index(order))
    row["key"] = [v if math.isfinite(v) else None for v in key]
    return row
