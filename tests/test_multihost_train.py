"""A value-based run across two processes equals the one-process run.

Two local CPU processes (one device each, coordinator on 127.0.0.1) run DQN-Prior on Frozen Lake with a tiny random
LLM prior: each steps one of the two environment copies and scores its share of the new prompts, and the update
runs over both processes' devices. A third process runs the same config alone. The logged metrics and final
parameters agree (the update's float reassociation aside), both processes did part of the work, and only process
0 wrote the run folder.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from tests.test_scaling import _free_port, run_scripts_together

SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path
    import numpy as np
    mode, out, run_dir = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    from prior_rl import distributed
    shares = []  # (how many items this process contributed) per all-gather
    if mode == "worker":
        distributed.initialize(f"127.0.0.1:{sys.argv[5]}", 2, int(sys.argv[4]))
        group = distributed.process_group()
        def counting(obj):
            shares.append(len(obj))
            return distributed.allgather_objects(obj)
        group = group._replace(allgather=counting)
    else:
        group = distributed.local_group()
    import jax
    from prior_rl.run import ModelStore, TrainConfig, train_value_based
    from tests.test_prior import make_tiny_llm
    from tests.test_prior_context import CFG, WORDS
    store = ModelStore()
    store.add_llm("tiny", make_tiny_llm(Path(tempfile.mkdtemp()), CFG, WORDS))
    config = TrainConfig(
        env="frozen-lake", algo="dqn-prior", llm="tiny", k=3, num_envs=2, env_steps=120, batch_size=16,
        learning_starts=20, train_every=20, updates_per_train=2, eval_every=60, eval_episodes=2, log_every=40,
        run_dir=run_dir, checkpoint_every=6, progress=False, tensorboard=False, plot=False, seed=3,
    )
    result = train_value_based(config, store=store, group=group)
    leaves = [np.asarray(x) for x in jax.tree.leaves(result.agent_state)]
    np.savez(out.with_suffix(".npz"), *leaves)
    out.write_text(json.dumps({"history": result.history, "shares": shares}))
    print("done", mode)
""")

CLOCKS = ("wall_s", "llm_s", "samples_per_s", "env_steps_per_s")  # wall-clock fields differ run to run


@pytest.mark.slow  # ~60 s on 2 cores: three processes load JAX, MiniLM and a tiny LLM at once
def test_two_process_value_based_run_equals_one_process(tmp_path):
    port = _free_port()
    runs = [["worker", str(tmp_path / f"p{i}.json"), str(tmp_path / f"run{i}"), str(i), str(port)] for i in (0, 1)]
    runs.append(["single", str(tmp_path / "single.json"), str(tmp_path / "single_run")])
    run_scripts_together(SCRIPT, runs, timeout_s=400)
    single = json.loads((tmp_path / "single.json").read_text())
    for i in (0, 1):
        got = json.loads((tmp_path / f"p{i}.json").read_text())
        assert len(got["history"]) == len(single["history"]) > 2
        for row, ref in zip(got["history"], single["history"]):
            assert row.keys() == ref.keys()
            for key, value in ref.items():
                if key in CLOCKS:
                    continue
                if isinstance(value, float):
                    assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (i, key, row, ref)
                else:
                    assert row[key] == value, (i, key, row, ref)
        params, ref_params = np.load(tmp_path / f"p{i}.npz"), np.load(tmp_path / "single.npz")
        assert params.files == ref_params.files
        for name in ref_params.files:
            np.testing.assert_allclose(params[name], ref_params[name], rtol=1e-4, atol=1e-5)
        # both processes contributed: their environment copy's steps and their share of the prompts
        assert sum(got["shares"]) > 0
    assert any(row.get("llm_calls", 0) > 0 for row in single["history"])
    # one writer: process 0's run folder has the logs and checkpoints, process 1 wrote nothing
    assert (tmp_path / "run0" / "metrics.csv").exists() and any((tmp_path / "run0" / "checkpoints").iterdir())
    assert not (tmp_path / "run1").exists()
