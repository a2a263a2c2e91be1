"""Environment copies in worker processes give the transitions of the in-process VectorEnv, resets, snapshots
and a whole training run included."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import envs
from envs.workers import WorkerError, WorkerVectorEnv


def _play(vec, steps: int, seed: int = 3):
    rng = np.random.default_rng(0)
    obs, _ = vec.reset(seed=seed)
    out = [[o.prompt for o in obs]]
    for _ in range(steps):
        step = vec.step([int(rng.integers(len(o.actions))) for o in vec.observations])
        out.append(
            (
                [o.prompt for o in step.observations],
                step.rewards.tolist(),
                step.terminated.tolist(),
                step.truncated.tolist(),
                [None if f is None else f.prompt for f in step.final_observations],
            )
        )
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_step_like_the_in_process_vector_env(workers):
    factory = functools.partial(envs.make, "overcooked-tomato-salad", max_steps=6)
    local = envs.VectorEnv(factory, 3)
    remote = WorkerVectorEnv(factory, 3, workers)
    try:
        assert _play(remote, 20) == _play(local, 20)  # 6-step cap: several automatic resets per copy
        snap = remote.snapshot()
        assert snap == local.snapshot()
        again = WorkerVectorEnv(factory, 3, workers)
        try:
            assert [o.prompt for o in again.restore(snap)] == [o.prompt for o in local.observations]
        finally:
            again.close()
    finally:
        remote.close()


def test_a_failing_worker_is_one_error_with_its_traceback():
    remote = WorkerVectorEnv(functools.partial(envs.make, "frozen-lake", max_steps=4), 2, 2)
    try:
        remote.reset(seed=0)
        with pytest.raises(WorkerError, match="environment worker failed"):
            remote.step([99, 0])  # no such action
    finally:
        remote.close()


def test_a_run_with_env_workers_equals_the_in_process_run():
    from prior_rl.run import TrainConfig, train

    quiet = dict(progress=False, tensorboard=False, plot=False)
    base = dict(env="frozen-lake", algo="dqn", env_steps=60, num_envs=2, eval_every=30, eval_episodes=1, seed=1)
    clock = ("wall_s", "env_steps_per_s", "llm_s")
    rows = [
        [
            {k: v for k, v in r.items() if k not in clock}
            for r in train(TrainConfig(env_workers=w, **base, **quiet)).history
        ]
        for w in (0, 2)
    ]
    assert rows[0] == rows[1]


def test_more_workers_than_copies_is_one_clear_error(tmp_path, capsys):
    from prior_rl import cli

    code = cli.main(
        ["train", "--num-envs", "2", "--env-workers", "3", "--run-dir", str(tmp_path / "r"), "--no-progress"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].endswith("--env-workers must be between 0 (in this process) and --num-envs (2), got 3")
