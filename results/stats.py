"""The statistics of the benchmark's analyses: seed noise, rank correlations with a bootstrap
interval that includes it, and Welch t intervals of a difference of seed means."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

BOOTSTRAP = 2000  # resamples of a bootstrap interval


def seed_table(short: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Per architecture trained with 2 or more seeds: its seeds, mean and standard deviation of
    final top-1; and the pooled deviation (root mean of the per-architecture variances)."""
    groups = short.groupby("arch_id")["top1"]
    table = pd.DataFrame(
        {
            "seeds": groups.count(),
            "mean": groups.mean(),
            "sd": groups.std(),
            "span": groups.max() - groups.min(),
        }
    )
    table = table[table["seeds"] >= 2]
    pooled = float(np.sqrt((table["sd"] ** 2).mean())) if len(table) else float("nan")
    return table, pooled


def kendall_spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return float(stats.kendalltau(x, y).statistic), float(stats.spearmanr(x, y).statistic)


def correlate(
    x: pd.Series,
    seeds: dict[str, np.ndarray],
    noise: float,
    rng: np.random.Generator,
    resamples: int = BOOTSTRAP,
) -> tuple[int, float, float, float, float, float, float]:
    """(n, tau, lo, hi, rho, lo, hi) of ``x`` against the mean accuracy in ``seeds`` (arch id ->
    its seeds' accuracies), with a bootstrap interval that includes seed noise: each resample
    draws architectures with replacement and, for each, one of its seeds' accuracies, or, where
    it has one seed, that accuracy plus Gaussian noise of sd ``noise``."""
    ids = [a for a in x.index if a in seeds and math.isfinite(x[a])]
    n = len(ids)
    if n < 4:
        return n, *(float("nan"),) * 6
    xs = x[ids].to_numpy(dtype=float)
    accs = [seeds[a] for a in ids]
    tau, rho = kendall_spearman(xs, np.array([a.mean() for a in accs]))
    if math.isnan(tau):
        return n, *(float("nan"),) * 6
    taus, rhos = [], []
    sd = noise if math.isfinite(noise) else 0.0
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        y = np.array(
            [
                accs[i][rng.integers(len(accs[i]))]
                if len(accs[i]) > 1
                else accs[i][0] + rng.normal(0, sd)
                for i in pick
            ]
        )
        t, r = kendall_spearman(xs[pick], y)
        if not math.isnan(t):
            taus.append(t)
            rhos.append(r)
    tl, th = np.percentile(taus, [2.5, 97.5])
    rl, rh = np.percentile(rhos, [2.5, 97.5])
    return n, tau, float(tl), float(th), rho, float(rl), float(rh)


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean(a) - mean(b), lo, hi): the difference of two groups of seed accuracies with its
    95% Welch t interval (nan bounds where a group has one value)."""
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if not se:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    return diff, diff - half, diff + half


def format_ci(v: float, lo: float, hi: float, digits: int = 2) -> str:
    if math.isnan(v):
        return "-"
    if math.isnan(lo):  # one seed: no interval
        return f"{v:+.{digits}f} [no interval]"
    return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
