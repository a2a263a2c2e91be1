"""The compiled PPO / PPO-Prior loop (prior_rl.run.jitted_ppo), the Frozen Lake tables of the compiled loops and the
observation-only transcript prompt (``transcript-state``)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import jax_frozen_lake
from envs.frozen_lake import FrozenLake
from prior_rl import losses
from prior_rl.run import jitted, jitted_ppo, sweep

LAKE = jitted_ppo.PPOJitConfig(env="frozen-lake", llm="expert-mix:0.5", env_steps=7680, eval_every=1280)


def test_frozen_lake_table_renders_the_text_env_and_its_expert():
    table = jax_frozen_lake.prompt_table()
    env = FrozenLake()
    expert, _ = jax_frozen_lake.expert_actions()
    assert table.num_prompts == 11 and len(table.prompts) == 16  # 11 frozen cells, then 4 holes and the goal
    for pid in range(len(table.prompts)):
        cell = int(table.obs_vectors[pid, 0])
        assert table.text_observation(pid).prompt == env.observation_at(cell).prompt
        assert int(table.prompt_id(jnp.array([cell]))) == pid
        if pid < table.num_prompts:
            assert expert[pid] == env.expert_at(cell)
        else:
            assert expert[pid] == -1
    assert int(table.prompt_id(jnp.array([16]))) == -1  # outside the map: unknown, not a neighbour's id


def test_frozen_lake_dqn_prior_runs_in_the_compiled_loop():
    config = jitted.JitConfig(
        env="frozen-lake", llm="expert-mix:0.9", features="onehot", env_steps=400, eval_every=200, eval_episodes=2
    )
    out = jax.jit(jax.vmap(jitted.make_train(config)))(sweep.seed_keys(range(2)))
    assert out["eval_success"].shape == (2, 3)
    assert out["env_steps"][0].tolist() == [0, 200, 400]
    with pytest.raises(ValueError, match="macro actions"):
        jitted.JitConfig(env="frozen-lake", discount="smdp")


def test_ppo_learns_frozen_lake_with_one_hot_features():
    # 4 seeds of plain PPO (CleanRL settings): all solve the 4x4 lake within 7,680 samples on this code
    out = jax.jit(jax.vmap(jitted_ppo.make_train(LAKE)))(sweep.seed_keys(range(4)))
    success = np.asarray(out["eval_success"])
    assert success.shape == (4, 7)
    assert success[:, 0].max() == 0.0  # a random policy from scratch does not reach the goal greedily
    assert success[:, -1].mean() >= 0.75


def test_ppo_prior_starts_at_the_prior_and_the_kl_pulls_towards_it():
    strong = dataclasses.replace(LAKE, algo="ppo-prior", llm="expert-mix:0.9", kl_coef=1.0, env_steps=1280)
    out = jax.jit(jax.vmap(jitted_ppo.make_train(strong)))(sweep.seed_keys(range(2)))
    # the policy's logits start at the prior's, so its greedy policy is the expert's from the first evaluation
    assert np.asarray(out["eval_success"])[:, 0].min() == 1.0
    assert jitted_ppo.PPOJitConfig().online_view().features == "onehot"  # the defaults are a valid config
    assert jitted_ppo.PPOJitConfig(prior_floor=0.2).online_view().prior_floor == 0.2  # table options carry over
    with pytest.raises(ValueError, match="multiples of num_envs"):
        dataclasses.replace(LAKE, env_steps=1000)
    with pytest.raises(ValueError, match="algo must be"):
        dataclasses.replace(LAKE, algo="dqn")


def test_ppo_batch_flattens_time_major_and_bootstraps_truncations():
    t, n, a = 3, 2, 4
    rng = np.random.default_rng(0)
    steps = jitted_ppo.Step(
        rows=jnp.asarray(rng.integers(0, 10, (t, n, a)), jnp.int32),
        mask=jnp.ones((t, n, a), bool),
        prior=jnp.zeros((t, n, a)),
        action=jnp.asarray(rng.integers(0, a, (t, n)), jnp.int32),
        logp=jnp.asarray(rng.normal(size=(t, n)), jnp.float32),
        value=jnp.asarray(rng.normal(size=(t, n)), jnp.float32),
        reward=jnp.asarray(rng.random((t, n)), jnp.float32),
        terminated=jnp.array([[False, True], [False, False], [False, False]]),
        truncated=jnp.array([[False, False], [True, False], [False, False]]),
        final_value=jnp.asarray(rng.normal(size=(t, n)), jnp.float32),
    )
    last = jnp.asarray(rng.normal(size=n), jnp.float32)
    batch = jitted_ppo.ppo_batch(LAKE, steps, last)
    adv, ret = losses.gae_with_truncation(
        steps.reward, steps.terminated, steps.truncated, steps.value, steps.final_value, last, 0.99, 0.95
    )
    np.testing.assert_allclose(batch.returns, np.asarray(ret).reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(batch.value_old, np.asarray(steps.value).reshape(-1))  # row t * n + i = (t, i)
    assert batch.act_feat.shape == (t * n, a)
    assert abs(float(batch.advantage.mean())) < 1e-5  # normalised once over the whole rollout
    np.testing.assert_allclose(
        batch.advantage, (np.asarray(adv).reshape(-1) - adv.mean()) / (adv.std() + 1e-8), rtol=1e-5
    )


def test_transcript_state_prompt_is_a_function_of_the_observation():
    import envs
    from prior_rl.prior.transcripts import TranscriptPrompt

    obs = jax_frozen_lake.prompt_table().text_observation(3)
    later = dataclasses.replace(obs, history=(("You are at row 0, column 2 ...", "move right"),))
    prompt = TranscriptPrompt(2, make_env=envs.make, episode=False)
    assert prompt(obs) == prompt(later)  # the episode's earlier turns are not in it
    assert len(prompt(obs).turns) == 1 and obs.state in prompt(obs).turns[0]
    jitted.JitConfig(env="frozen-lake", prompt="transcript-state")  # accepted by the compiled loop
    with pytest.raises(ValueError, match="transcript-state"):
        jitted.JitConfig(prompt="transcript")
