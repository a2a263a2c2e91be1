"""The training loops' data-parallel path (offline CQL, PPO) gives the single-device result (2 forced CPU devices,
subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import jax, numpy as np
from prior_rl.run import ModelStore, OfflineConfig, TrainConfig, train, train_offline
store = ModelStore()
quiet = dict(progress=False, tensorboard=False, plot=False, eval_episodes=1)
out = {}
for devices in (1, 2):
    r = train_offline(OfflineConfig(env="frozen-lake", algo="cql", dataset_size=200, updates=60, eval_every=20,
                                    updates_per_dispatch=20, batch_size=32, devices=devices, seed=1, **quiet),
                      store=store.with_fresh_priors())
    # one rollout and one update: the sharded update agrees to ~1e-8, but over more Adam steps the biases whose
    # gradients are ~0 move by up to lr per step in either direction, so later steps amplify the last bits
    p = train(TrainConfig(env="frozen-lake", algo="ppo", env_steps=32, num_envs=2, rollout_steps=16, eval_every=64,
                          ppo_epochs=1, ppo_minibatches=1, devices=devices, seed=1, **quiet),
              store=store.with_fresh_priors())
    out[devices] = [np.asarray(x).tolist() for x in jax.tree.leaves((r.agent_state.params, p.agent_state.params))]
print("RESULT" + json.dumps(out))
"""


def test_offline_cql_and_ppo_on_two_devices_equal_one_device():
    env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    result = json.loads(line[len("RESULT") :])
    import numpy as np

    for a, b in zip(result["1"], result["2"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
