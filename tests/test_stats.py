"""rliable-style aggregates: IQM, stratified bootstrap intervals, performance profiles, samples to a threshold."""

import numpy as np
import pytest

from prior_rl.run import stats


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm([0, 1, 2, 3, 4, 5, 6, 100]) == pytest.approx(3.5)  # cuts 2 from each end
    assert stats.iqm([1.0, 1.0, 1.0]) == 1.0
    # scipy.stats.trim_mean(x, 0.25) on [0..9]: cut int(2.5) = 2 from each end -> mean of 2..7
    assert stats.iqm(np.arange(10)) == pytest.approx(4.5)
    assert stats.iqm(np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(0.5)  # over all runs and tasks


def test_bootstrap_interval_covers_the_statistic_and_narrows_with_runs():
    rng = np.random.default_rng(0)
    small, big = rng.random(8), rng.random(256)
    lo, hi = stats.bootstrap_ci(small)
    assert lo <= stats.iqm(small) <= hi
    b_lo, b_hi = stats.bootstrap_ci(big)
    assert b_lo <= stats.iqm(big) <= b_hi and (b_hi - b_lo) < (hi - lo)
    assert stats.bootstrap_ci(np.ones(5)) == (1.0, 1.0)
    # stratified: each task column keeps its own runs, so a constant task never contributes variance
    two = np.stack([np.zeros(16), rng.random(16)], 1)
    lo2, hi2 = stats.bootstrap_ci(two, lambda x: float(x[:, 0].max()))
    assert lo2 == hi2 == 0.0


def test_performance_profile_and_samples_to_reach():
    frac, lo, hi = stats.performance_profile(np.array([0.0, 0.5, 1.0, 1.0]), [0.25, 0.75])
    np.testing.assert_allclose(frac, [0.75, 0.5])
    assert (lo <= frac).all() and (frac <= hi).all()
    curves = np.array([[0.0, 0.95, 0.2], [0.0, 0.0, 0.0], [0.9, 1.0, 1.0]])
    reach = stats.samples_to_reach(curves, np.array([0, 500, 1000]), 0.9)
    np.testing.assert_array_equal(reach, [500, np.inf, 0])
    summary = stats.reach_summary(reach, budget=1000)
    assert summary["median"] == 500 and summary["reached"] == pytest.approx(2 / 3)
    assert stats.reach_summary(np.full(4, np.inf), budget=1000)["median"] is None  # "more than the budget"
