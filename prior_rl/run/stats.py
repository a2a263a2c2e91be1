"""Aggregate statistics over seeds, the way rliable reports them (Agarwal et al., 2021), in numpy.

    iqm(scores)                                   # interquartile mean over runs
    bootstrap_ci(scores, iqm)                     # 95% stratified bootstrap interval of any statistic
    performance_profile(scores, taus)             # fraction of runs scoring above each tau, with intervals
    samples_to_reach(curves, steps, 0.9)          # first evaluation point at which each run reaches 0.9

``scores`` is [runs] or [runs, tasks]; the bootstrap resamples runs with replacement *within each task* (the
stratified bootstrap), so a task with few runs is never dropped from a resample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import numpy as np


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all scores (``scipy.stats.trim_mean(x, 0.25)`` over the
    flattened array: int(0.25·n) cut from each end)."""
    x = np.sort(np.asarray(scores, np.float64).ravel())
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def _columns(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, np.float64)
    return x[:, None] if x.ndim == 1 else x


def bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over ``reps`` stratified bootstrap resamples of ``scores``
    [runs] or [runs, tasks]."""
    x = _columns(scores)
    rng = np.random.default_rng(seed)
    runs, tasks = x.shape
    idx = rng.integers(0, runs, (reps, runs, tasks))
    values = np.array([statistic(np.take_along_axis(x, i, 0)) for i in idx])
    tail = (1.0 - level) / 2.0
    return float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))


def performance_profile(
    scores: np.ndarray, taus: Sequence[float], reps: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fraction [T], lower [T], upper [T]): the fraction of runs whose score exceeds each tau, and its 95%
    stratified bootstrap interval."""
    x = _columns(scores)
    taus = np.asarray(taus, np.float64)
    frac = lambda s: (s.ravel()[:, None] > taus).mean(0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.shape[0], (reps,) + x.shape)
    boot = np.stack([frac(np.take_along_axis(x, i, 0)) for i in idx])
    return frac(x), np.quantile(boot, 0.025, 0), np.quantile(boot, 0.975, 0)


def samples_to_reach(curves: np.ndarray, steps: np.ndarray, threshold: float) -> np.ndarray:
    """[runs] float: the first of ``steps`` [E] at which each curve of ``curves`` [runs, E] is ≥ ``threshold``;
    ``inf`` for a run that never reaches it."""
    curves = np.asarray(curves)
    hit = curves >= threshold
    first = np.where(hit.any(1), np.argmax(hit, 1), -1)
    return np.where(first >= 0, np.asarray(steps, np.float64)[np.maximum(first, 0)], np.inf)


def reach_summary(reach: np.ndarray, budget: float, reps: int = 2000, seed: int = 0) -> dict[str, Optional[float]]:
    """Median samples-to-threshold over runs (a run that never reaches it counts as beyond the budget) with its
    bootstrap interval, and the fraction of runs that reach it with its interval. An interval end beyond the
    budget is reported as None (the data only say "more than the budget")."""
    r = np.asarray(reach, np.float64)
    r = np.where(np.isfinite(r), r, 2.0 * budget + 1.0)  # "never" as a finite value beyond the budget
    med = lambda s: float(np.median(s))
    lo, hi = bootstrap_ci(r, med, reps, seed=seed)
    reached = (r <= budget).astype(float)
    f_lo, f_hi = bootstrap_ci(reached, lambda s: float(s.mean()), reps, seed=seed)
    cap = lambda v: v if v <= budget else None
    return {
        "median": cap(med(r)),
        "median_lo": cap(lo),
        "median_hi": cap(hi),
        "reached": float(reached.mean()),
        "reached_lo": f_lo,
        "reached_hi": f_hi,
    }


__all__ = ["bootstrap_ci", "iqm", "performance_profile", "reach_summary", "samples_to_reach"]
