"""Compute budgets: ``0.16GFLOPs``, ``160MFLOPs``, ``1.6e8`` (units of docs/design.md section 3:
one FLOP is one multiply-accumulate; FLOPs = FP MACs + BOPs / 64)."""

from __future__ import annotations

import math
import re

_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_PATTERN = re.compile(
    r"^\s*([+-]?[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)\s*(?:flops?)?\s*$", re.I
)


def parse_budget(text: str) -> float:
    """FLOPs from a budget string; raises ValueError with a message saying what is accepted."""
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(
            f"cannot read the budget {text!r}; write it like 0.16GFLOPs, 160MFLOPs or 1.6e8"
        )
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value):
        raise ValueError(f"the budget must be a finite number, got {text!r}")
    if value <= 0:
        raise ValueError(f"the budget must be positive, got {text!r}")
    return value


def format_flops(flops: float) -> str:
    """A short label: 0.16GFLOPs, 160MFLOPs."""
    if flops >= 1e8:
        return f"{flops / 1e9:.4g}GFLOPs"
    return f"{flops / 1e6:.4g}MFLOPs"


def band(budget: float, tolerance: float) -> tuple[float, float]:
    """The FLOPs a candidate may have under ``budget``: ``[budget * (1 - tolerance), budget]``
    (the equal-FLOP comparison of docs/design.md section 3)."""
    return budget * (1 - tolerance), budget
