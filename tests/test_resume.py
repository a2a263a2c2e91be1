"""Resume: every algorithm stopped after a checkpoint and resumed ends bit-identical to an uninterrupted run —
parameters, logged metrics (clock fields aside) and LLM-call counts; ``--resume`` with no checkpoint says so."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from prior_rl.run import ModelStore, OfflineConfig, TrainConfig, train, train_offline

CLOCK = ("wall_s", "env_steps_per_s", "llm_s")
QUIET = dict(progress=False, tensorboard=False, plot=False)


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def models():
    return ModelStore()  # weights shared by the tests; each run gets fresh priors (an empty prompt cache)


def _config(algo: str, run_dir) -> object:
    if algo in ("cql-prior", "cql"):
        return OfflineConfig(
            env="overcooked-tomato-salad",
            algo=algo,
            dataset_size=150,
            updates=120,
            updates_per_dispatch=20,
            eval_every=40,
            eval_episodes=1,
            batch_size=16,
            seed=7,
            checkpoint_every=40,
            run_dir=str(run_dir),
            **QUIET,
        )
    env = "overcooked-tomato-salad" if algo in ("dqn-prior", "llm") else "frozen-lake"
    ppo = algo.startswith("ppo")
    return TrainConfig(
        env=env,
        algo=algo,
        env_steps=96 if ppo else 120,
        num_envs=2,
        eval_every=48,
        eval_episodes=1,
        learning_starts=20,
        train_every=10,
        updates_per_train=4,
        rollout_steps=8,
        log_every=24,
        seed=5,
        checkpoint_every=16 if not algo == "llm" else 40,
        run_dir=str(run_dir),
        **QUIET,
    )


def _run(config, models, on_log=None):
    store = models.with_fresh_priors()
    if isinstance(config, OfflineConfig):
        return train_offline(config, store=store, on_log=on_log)
    return train(config, on_log=on_log, store=store)


def _rows(history):
    return [{k: v for k, v in row.items() if k not in CLOCK} for row in history]


@pytest.mark.parametrize("algo", ["dqn-prior", "dqn", "llm", "ppo-prior", "ppo", "cql-prior", "cql"])
def test_stopped_and_resumed_run_equals_an_uninterrupted_one(algo, models, tmp_path):
    straight = _run(_config(algo, tmp_path / "straight"), models)

    config = _config(algo, tmp_path / "stopped")
    seen = []

    def stop_after_a_checkpoint(row):
        seen.append(row)
        if list((tmp_path / "stopped" / "checkpoints").glob("step_*")) and len(seen) >= 2:
            raise Stop

    with pytest.raises(Stop):
        _run(config, models, on_log=stop_after_a_checkpoint)
    resumed = _run(dataclasses.replace(config, resume=True), models)

    assert _rows(resumed.history) == _rows(straight.history)
    for a, b in zip(jax.tree.leaves(straight.agent_state), jax.tree.leaves(resumed.agent_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    csv_rows = (tmp_path / "stopped" / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + len(straight.history)  # header + every row once: nothing lost or duplicated
    logged = {key for row in straight.history for key in row}
    assert set(csv_rows[0].split(",")) == logged  # every metric any row logged has its column (loss included)
    assert ("loss" in logged) == (algo != "llm")
    assert ("llm_calls" in logged) == (algo in ("dqn-prior", "llm", "ppo-prior", "cql-prior"))


def test_resume_without_a_checkpoint_says_so_and_starts_fresh(models, tmp_path, capsys):
    config = dataclasses.replace(_config("dqn", tmp_path / "empty"), resume=True, env_steps=20, eval_every=1000)
    result = _run(config, models)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"prior-rl: --resume: no checkpoint in {tmp_path / 'empty' / 'checkpoints'}; starting a new run"]
    assert result.history[-1]["env_steps"] == 20
