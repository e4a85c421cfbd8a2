"""Ranking: the distinct candidates of a search and the spaces' reference models, ordered by the
scorer's key (smaller first; docs/design.md section 5), in the schema of
:data:`nas.core.candidates.COLUMNS`."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from nas.core.candidates import COLUMNS, score
from nas.core.graph import lower
from nas.core.spec import ArchSpec
from pipeline.settings import Settings
from search_spaces import SearchSpace


def sort_key(row: Mapping[str, Any]) -> tuple[float, ...]:
    """A row's key as a tuple to compare: a missing value ranks after every present one."""
    return tuple(math.inf if v is None else v for v in row["key"])


def rank_candidates(
    found: Iterable[dict[str, Any]],
    params: Mapping[int, dict[str, Any]],
    spaces: Mapping[str, SearchSpace],
    settings: Settings,
) -> pd.DataFrame:
    """The candidates table: ``found`` (the first result of each arch id; ``params`` gives each
    trial's sampled parameters) and every reference model of ``spaces``, ranked by the key, then
    the run's tie-break column (docs/ranking.md), then arch id."""
    rows = [
        {
            **result,
            "reference": "",
            "in_band": True,
            "structure": json.dumps(params[result["trial"]], sort_keys=True),
        }
        for result in found
    ]
    low, high = settings.band
    for name, space in spaces.items():
        for ref, (structure, width) in space.references().items():
            spec = space.build(structure, width, settings.input_size, settings.classes)
            row = {
                "space": name,
                "feasible": True,
                "width": width,
                "trial": None,
                **score(lower(spec), settings.scorer),
                "reference": ref,
                "structure": json.dumps(structure, sort_keys=True),
            }
            row["in_band"] = low <= row["flops"] <= high
            rows.append(row)
    sign = -1 if settings.tie_break_larger_first else 1
    rows.sort(
        key=lambda r: (sort_key(r), sign * r[settings.tie_break], r["arch_id"], r["reference"])
    )
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "rank"])
    table.insert(0, "rank", range(1, len(table) + 1))
    table["key"] = table["key"].map(json.dumps)
    table["trial"] = table["trial"].astype("Int64")
    return table


def training_pool(table: pd.DataFrame, size: int) -> pd.DataFrame:
    """The candidates that training decides among (successive halving, :mod:`runners.promotion`):
    the first candidate of each distinct key, taken in turn from each space (the ranking is
    surer within a space than between spaces: docs/ranking.md), ``size`` of them, in the order
    taken (so the spaces' candidates, often of different speeds, train side by side)."""
    found = table[table["reference"] == ""].drop_duplicates("key")
    # each space's candidates in rank order, the space of the best candidate first
    queues = sorted((list(rows.index) for _, rows in found.groupby("space")), key=lambda q: q[0])
    picked: list[int] = []
    while len(picked) < size and any(queues):
        for queue in queues:
            if queue and len(picked) < size:
                picked.append(queue.pop(0))
    return found.loc[picked]


def spec_of(
    row: Mapping[str, Any], spaces: Mapping[str, SearchSpace], settings: Settings
) -> ArchSpec:
    """The spec of a row of the candidates table."""
    structure = json.loads(row["structure"])
    structure.pop("space", None)
    return spaces[row["space"]].build(
        structure, int(row["width"]), settings.input_size, settings.classes
    )
