"""The compiled DQN-Prior / DQN loop (prior_rl.run.jitted): update equivalence, seed vmap, learning, env errors."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from prior_rl import replay
from prior_rl.run import jitted


@pytest.fixture(scope="module")
def tables():
    return jitted.build_tables(jitted.JitConfig())  # cached on disk after the first build (smollm2 + minilm)


def test_update_inside_jit_equals_agent_update(tables):
    config = jitted.JitConfig()
    agent = jitted.make_agent(config)
    table = jitted.flat_features(jitted.Tables(*tables))
    state = agent.init(jax.random.key(0), table.shape[1])
    rng = np.random.default_rng(0)
    n, k = 256, config.k
    items = replay.IndexedTransition(
        rng.integers(0, table.shape[0], n).astype(np.int32),
        rng.integers(0, table.shape[0], (n, k)).astype(np.int32),
        np.ones((n, k), bool),
        rng.normal(size=n).astype(np.float32),
        (rng.random(n) > 0.1).astype(np.float32),
        rng.integers(0, table.shape[0], (n, k)).astype(np.int32),
        np.ones((n, k), bool),
    )
    buffer = replay.from_items(items)
    key = jax.random.key(1)
    inside = jax.jit(lambda s, b, t, kk: jitted.replay_update(agent, config, s, b, t, kk))
    got, m1 = inside(state, buffer, table, key)
    want, m2 = agent.update(state, replay.sample(buffer, key, config.updates_per_train, config.batch_size), table)
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    np.testing.assert_allclose(np.asarray(m1["td_loss"]), np.asarray(m2["td_loss"]), rtol=1e-6)


@pytest.mark.parametrize("algo", ["dqn-prior", "dqn"])
def test_vmap_over_seeds(tables, algo):
    config = jitted.JitConfig(algo=algo, env_steps=200, eval_every=100, learning_starts=40, eval_episodes=4)
    train = jitted.make_train(config, tables)
    metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 4))
    for name in ("eval_success", "eval_return", "env_steps"):
        assert metrics[name].shape == (4, 3)
    np.testing.assert_array_equal(np.asarray(metrics["env_steps"][0]), [0, 100, 200])
    assert np.isfinite(np.asarray(metrics["eval_return"])).all()


@pytest.mark.slow
def test_learns_tomato_salad(tables):
    config = jitted.JitConfig(env_steps=2000, eval_every=500)
    train = jitted.make_train(config, tables)
    metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
    success = np.asarray(metrics["eval_success"])
    # measured: 0.25 (2 of 8 seeds solve it); the Python loop at this config solved 1 of seeds 0..2 here
    assert success[:, 0].max() == 0.0 and success[:, -1].mean() >= 0.2


def test_options_run_and_report_every_eval_mode(tables):
    """One-hot features, semi-MDP discounting, the LLM policy and a synthetic prior, all in one compiled loop."""
    base = dict(env_steps=200, eval_every=100, learning_starts=40, eval_episodes=4)
    keys = jax.random.split(jax.random.key(0), 2)
    for extra in (dict(features="onehot"), dict(discount="smdp", algo="dqn"), dict(algo="llm")):
        config = jitted.JitConfig(**base, **extra)
        metrics = jax.jit(jax.vmap(jitted.make_train(config, jitted.build_tables(config))))(keys)
        for mode in jitted.EVAL_MODES:
            assert metrics[f"eval_success_{mode}"].shape == (2, 3)
        visited = np.asarray(metrics["distinct_prompts"])
        if extra.get("algo") == "llm":
            assert (visited == 0).all()
        else:
            assert (np.diff(visited, axis=1) >= 0).all() and visited[:, -1].min() >= 2


def test_updates_per_run_counts_the_gradient_steps(tables):
    config = jitted.JitConfig(env_steps=200, eval_every=100, learning_starts=40, eval_episodes=2)
    train = jitted.make_train(config, tables)
    # the agent's step counter is not returned; reproduce the loop's dispatch rule by hand
    steps = [s for s in range(4, 201, 4) if s >= 40 and s % 20 < 4]
    assert jitted.updates_per_run(config) == len(steps) * config.updates_per_train == 72
    assert jitted.updates_per_run(dataclasses.replace(config, algo="llm")) == 0
    assert train is not None


def test_expert_mix_prior_and_a_sweep_over_priors_in_one_program(tables):
    env = "overcooked-tomato-salad"
    expert, agreement = jitted.experts(env)
    mask = jitted.admissible_mask(env)
    assert expert.shape == (21,) and (expert >= 0).all() and (agreement > 0.4).all()
    for p in (0.0, 0.3, 1.0):
        logp = jitted.expert_mix_logp(mask, expert, p)
        np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, rtol=1e-5)
        want = p + (1 - p) / mask.sum(1)
        np.testing.assert_allclose(np.exp(logp[np.arange(21), expert]), want, rtol=1e-5)
    assert abs(jitted.mean_p_expert(env, jitted.expert_mix_logp(mask, expert, 0.7)) - 0.7 - 0.3 / 5) < 1e-3
    config = jitted.JitConfig(env_steps=200, eval_every=100, learning_starts=40, eval_episodes=4)
    logps = np.stack([jitted.expert_mix_logp(mask, expert, p) for p in (0.0, 1.0)])
    train = jitted.make_train(config, tables)
    sweep = jax.jit(jax.vmap(jax.vmap(train, (0, None)), (None, 0)))
    metrics = sweep(jax.random.split(jax.random.key(0), 3), logps)
    assert metrics["eval_success"].shape == (2, 3, 3)
    # with the perfect prior every candidate is the expert: the greedy policy succeeds from the start
    assert np.asarray(metrics["eval_success"])[1].min() == 1.0


def test_expert_of_each_tomato_salad_prompt_is_the_plan_of_its_states():
    from benchmarks.prior import tomato_salad_states

    table = jitted.jax_prompts.prompt_table(0)
    expert, agreement = jitted.experts("overcooked-tomato-salad")
    states = tomato_salad_states()
    hits = [expert[table.prompts.index(obs.prompt)] == e for obs, e in states]
    assert np.mean(hits) == pytest.approx(
        float(np.mean(agreement[[table.prompts.index(o.prompt) for o, _ in states]])), abs=0.05
    )
    assert np.mean(hits) > 0.9


def test_defaults_mirror_the_python_loop():
    from prior_rl.agents import QConfig
    from prior_rl.run import TrainConfig

    jit, py, q = jitted.JitConfig(), TrainConfig(progress=False), QConfig()
    schedule = (
        "num_envs",
        "buffer_capacity",
        "learning_starts",
        "train_every",
        "updates_per_train",
        "epsilon",
        "epsilon_final",
        "epsilon_decay_steps",
        "k",
        "eval_every",
        "eval_episodes",
        "llm",
        "encoder",
    )
    assert {f: getattr(jit, f) for f in schedule} == {f: getattr(py, f) for f in schedule}
    agent = ("batch_size", "learning_rate", "gamma", "tau")
    assert {f: getattr(jit, f) for f in agent} == {f: getattr(q, f) for f in agent}


@pytest.mark.slow
def test_reaches_what_the_python_loop_reaches_on_tomato_salad_16_seeds(tables):
    """Same configuration, 16 seeds each: the final greedy success's IQMs agree within their 95% intervals."""
    from prior_rl.run import ModelStore, TrainConfig, stats, sweep, train

    config = jitted.JitConfig(env_steps=3000, eval_every=1000)
    compiled = sweep.run_sweep(config, 16).curves["eval_success"][0][:, -1]
    store, python = ModelStore(), []
    for seed in range(16):
        tc = TrainConfig(env=config.env, env_steps=3000, eval_every=1000, seed=seed, progress=False, plot=False)
        rows = [r for r in train(tc, store=store).history if "eval_success" in r]
        python.append(rows[-1]["eval_success"])
    a, b = stats.bootstrap_ci(compiled), stats.bootstrap_ci(np.array(python))
    report = f"compiled IQM {stats.iqm(compiled):.2f} {a}, python IQM {stats.iqm(np.array(python)):.2f} {b}"
    assert a[0] <= stats.iqm(np.array(python)) <= a[1] or b[0] <= stats.iqm(compiled) <= b[1], report
    assert a[0] <= b[1] and b[0] <= a[1], report


@pytest.mark.parametrize("env", ["alfworld-pick", "overcooked-onion-soup"])
def test_env_without_jax_implementation(env):
    with pytest.raises(ValueError, match="overcooked-tomato-salad, overcooked-tomato-lettuce-salad, .*frozen-lake"):
        jitted.JitConfig(env=env)


def test_llm_hidden_state_features_differ_per_action_and_are_standardised():
    """features='llm': one 576-d SmolLM2 hidden state per admissible (prompt, action), z-scored over the table,
    zero where the action is not admissible; the actions of one state get different vectors."""
    t = jitted.build_tables(jitted.JitConfig(features="llm"))
    feat, mask = np.asarray(t.feat), np.asarray(t.mask)
    assert feat.shape == mask.shape + (576,)
    valid = feat[mask]
    np.testing.assert_allclose(valid.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(valid.std(0), 1.0, atol=1e-3)
    assert not feat[~mask].any()
    for p in range(mask.shape[0]):
        rows = feat[p, mask[p]]
        gaps = np.linalg.norm(rows[:, None] - rows[None], axis=-1)[np.triu_indices(len(rows), 1)]
        assert gaps.min() > 1.0, (p, gaps.min())
