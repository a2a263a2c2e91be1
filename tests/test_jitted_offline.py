"""The compiled offline loop (prior_rl.run.jitted_offline): dataset mapping, frozen candidates, seeds × datasets."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from envs import jax_prompts
from prior_rl.io import datasets
from prior_rl.run import jitted, jitted_offline, sweep

ENV = "overcooked-tomato-salad"


@pytest.fixture(scope="module")
def data() -> list[datasets.Transition]:
    return datasets.generate(ENV, 600, seed=0)


@pytest.fixture(scope="module")
def tables():
    return jitted.build_tables(jitted.JitConfig())  # cached on disk (smollm2 + minilm on Tomato Salad)


def test_dataset_arrays_index_the_prompt_table_and_refuse_foreign_states(data):
    d = jitted_offline.dataset_arrays(ENV, data)
    table = jax_prompts.prompt_table(0)
    assert [table.states[p] for p in d.pid] == [t.state for t in data]
    assert [table.states[p] for p in d.next_pid] == [t.next_state for t in data]
    assert d.action.tolist() == [t.action_index for t in data]
    assert d.done.sum() == sum(t.done for t in data) > 0
    foreign = dataclasses.replace(data[3], state="Nothing here but a teapot.")
    with pytest.raises(ValueError, match="teapot.*not a state of the JAX env; 1 of 2 unmatched"):
        jitted_offline.dataset_arrays(ENV, [data[0], foreign])


def test_frozen_candidates_cql_takes_the_admissible_set_cql_prior_the_prior_samples(data, tables):
    d = jitted_offline.dataset_arrays(ENV, data)
    t = jitted.Tables(*tables)
    num_actions = t.mask.shape[1]
    for algo in jitted_offline.OFFLINE_ALGOS:
        view = jitted_offline.OfflineJitConfig(env=ENV, algo=algo).online_view()
        items, coverage = jitted_offline.frozen_items(view, t, jax.random.key(0), d)
        np.testing.assert_array_equal(items.obs_idx, d.pid * num_actions + d.action)
        acts, pids = np.asarray(items.cand_idx) % num_actions, np.asarray(items.cand_idx) // num_actions
        assert (pids == d.pid[:, None]).all()
        valid = np.asarray(t.mask)[d.pid[:, None], acts] | ~np.asarray(items.cand_mask)
        assert valid.all(), "a candidate outside the admissible set"
        np.testing.assert_array_equal(items.discount, 1.0 - d.done)
        if algo == "cql":
            assert float(coverage) == 1.0 and items.cand_idx.shape[1] == view.max_candidates
        else:
            assert items.cand_idx.shape[1] == view.k and 0.2 < float(coverage) < 1.0


def test_one_hot_cql_learns_from_expert_heavy_data_and_seeds_follow_their_own_dataset(data):
    """Seeds 0 and 1 share a key and a dataset (identical curves); seed 2 has another dataset. With one-hot features
    CQL recovers the behaviour policy's successes (75% of the episodes) on Tomato Salad."""
    config = jitted_offline.OfflineJitConfig(
        env=ENV, algo="cql", features="onehot", updates=400, eval_every=200, updates_per_dispatch=100, eval_episodes=4
    )
    other = jitted_offline.dataset_arrays(ENV, datasets.generate(ENV, 600, seed=1))
    mine = jitted_offline.dataset_arrays(ENV, data)
    stacked = jitted_offline.OfflineData(*(np.stack([a, a, b]) for a, b in zip(mine, other)))
    result = jitted_offline.run_offline_sweep(config, stacked, [0, 0, 1])
    success = result.curves["eval_success_greedy"][0]  # [S, E]
    assert result.steps.tolist() == [0, 200, 400]
    for name, c in result.curves.items():
        np.testing.assert_array_equal(c[0, 0], c[0, 1], err_msg=name)
    assert (success[:, -1] >= 0.75).all(), success
    assert result.curves["coverage"][0, :, 0].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="3 datasets for 2 seeds"):
        jitted_offline.run_offline_sweep(config, stacked, [0, 1])


def test_summary_rows_carry_the_dataset_size_and_coverage(tmp_path):
    config = jitted_offline.OfflineJitConfig(env=ENV, updates=20, eval_every=10, updates_per_dispatch=10)
    steps = np.array([0, 10, 20])
    curves = {f"eval_success_{m}": np.array([[[0, 0.5, 1.0], [0, 0, 1.0]]]) for m in jitted.EVAL_MODES}
    curves.update(coverage=np.full((1, 2, 3), 0.4), distinct_prompts=np.full((1, 2, 3), 9))
    result = sweep.SweepResult(config, [0, 1], ["smollm2"], [0.2], steps, curves, 1.0, 2.0, 3.0)
    summary = jitted_offline.write_offline_sweep(result, tmp_path, 123)
    assert (tmp_path / "curves.csv").stat().st_mode & 0o044, "written readable, not mkstemp's 0600"
    assert {r["eval"] for r in summary["rows"]} == set(jitted.EVAL_MODES)
    assert all(r["dataset_size"] == 123 and r["coverage"] == pytest.approx(0.4) for r in summary["rows"])
    assert summary["updates_per_s"] == pytest.approx(2 * 20 / 3.0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"algo": "dqn"}, "algo must be one of"),
        ({"updates": 1000, "eval_every": 300}, "eval_every must divide updates"),
        ({"td_reduction": "max"}, "td_reduction must be"),
        ({"env": "alfworld-pick"}, "no pure-JAX implementation"),
        ({"prompt": "transcript"}, "not a function of the observation"),
    ],
)
def test_bad_configs_name_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        jitted_offline.OfflineJitConfig(**change)
