"""The online training loop: resumable after SIGKILL, stops on a non-finite loss, CLI errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from prior_rl.io import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--eval-episodes", "2", "--no-progress", "--seed", "3"]
RUNS = {  # (command, steps); each checkpoints often enough to be killed between two checkpoints
    "dqn": [
        "train",
        "--env",
        "frozen-lake",
        "--algo",
        "dqn",
        "--env-steps",
        "400",
        "--num-envs",
        "2",
        "--checkpoint-every",
        "40",
        "--eval-every",
        "200",
        *COMMON,
    ],
    "ppo-prior": [
        "train",
        "--env",
        "frozen-lake",
        "--algo",
        "ppo-prior",
        "--env-steps",
        "512",
        "--num-envs",
        "2",
        "--checkpoint-every",
        "16",
        "--eval-every",
        "256",
        *COMMON,
    ],
    "cql-prior": [
        "offline",
        "--env",
        "overcooked-tomato-salad",
        "--algo",
        "cql-prior",
        "--dataset-size",
        "300",
        "--updates",
        "600",
        "--eval-every",
        "100",
        "--checkpoint-every",
        "100",
        *COMMON,
    ],
}


def _run(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "prior_rl", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def _final_params(run_dir: Path):
    step = ckpt.latest(run_dir / "checkpoints")
    path = ckpt.step_path(run_dir / "checkpoints", step)
    import orbax.checkpoint as ocp

    restored = ocp.Checkpointer(ocp.CompositeCheckpointHandler()).restore(path.absolute())
    return step, restored


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(RUNS))
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, algo):
    RUN = RUNS[algo]
    straight = _run([*RUN, "--run-dir", str(tmp_path / "straight")])
    out, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, out

    killed_dir = tmp_path / "killed"
    proc = _run([*RUN, "--run-dir", str(killed_dir)])
    deadline = time.time() + 600
    while time.time() < deadline and len(ckpt.list_steps(killed_dir / "checkpoints")) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps_at_kill = ckpt.list_steps(killed_dir / "checkpoints")
    assert steps_at_kill and steps_at_kill[-1] < _final_params(tmp_path / "straight")[0], "killed too late"

    resumed = _run([*RUN, "--run-dir", str(killed_dir), "--resume"])
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out

    step_a, a = _final_params(tmp_path / "straight")
    step_b, b = _final_params(killed_dir)
    assert step_a == step_b
    for x, y in zip(_leaves(a["state"]["state"]["agent"]), _leaves(b["state"]["state"]["agent"])):
        np.testing.assert_array_equal(x, y)
    # the metrics file of the resumed run has no duplicated rows
    import csv

    rows = list(csv.DictReader(open(killed_dir / "metrics.csv")))
    straight_rows = list(csv.DictReader(open(tmp_path / "straight" / "metrics.csv")))
    clock = ("wall_s", "env_steps_per_s", "llm_s")
    assert [{k: v for k, v in r.items() if k not in clock} for r in rows] == [
        {k: v for k, v in r.items() if k not in clock} for r in straight_rows
    ]


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import jax.numpy as jnp

    from prior_rl import train as train_mod
    from prior_rl.run import value_loop

    real = value_loop.make_q_agent

    def poisoned(config):
        agent = real(config)

        def update(state, batches, table=None):  # traced in the loop's jit: poison every dispatch past 60 updates
            state, metrics = agent.update(state, batches, table)
            loss = jnp.where(state.step > 60, jnp.nan, metrics["loss"])
            return state, dict(metrics, loss=loss)

        return agent._replace(update=update)

    monkeypatch.setattr(value_loop, "make_q_agent", poisoned)
    config = train_mod.TrainConfig(
        env="frozen-lake",
        algo="dqn",
        env_steps=400,
        num_envs=2,
        train_every=20,
        updates_per_train=20,
        learning_starts=20,
        checkpoint_every=20,
        run_dir=str(tmp_path / "run"),
        progress=False,
        eval_every=10_000,
        eval_episodes=1,
    )
    with pytest.raises(train_mod.NonFiniteLossError, match=r"loss became nan .*last good checkpoint is kept"):
        train_mod.train(config)
    assert ckpt.list_steps(tmp_path / "run" / "checkpoints") == [20, 40, 60]  # the bad state is never saved


def test_cli_rejects_unknown_names_and_lists_valid_ones(capsys):
    from prior_rl.cli import main

    assert main(["train", "--env", "kitchen", "--no-progress"]) == 2
    assert "valid names are: alfworld-pick, frozen-lake" in capsys.readouterr().err
    assert main(["train", "--env", "frozen-lake", "--algo", "sarsa", "--no-progress"]) == 2
    assert "valid algorithms are: dqn-prior, dqn, llm, ppo-prior, ppo" in capsys.readouterr().err
    from prior_rl.train import TrainConfig

    with pytest.raises(ValueError, match="need a run directory"):
        TrainConfig(env="frozen-lake", resume=True)
