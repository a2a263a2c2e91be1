"""The pure-JAX environments equal the text ones transition for transition; prompt ids; vmap + jit.

* :mod:`envs.jax_overcooked` against every golden row (docs/overcooked-frozenlake.md §14; skipped with the reason
  when the files are absent) and against :mod:`envs.overcooked` on seeded random episodes, uncapped (the 200-step
  horizon) and with the scripts' macro caps;
* :mod:`envs.jax_prompts`: the enumeration agrees with a BFS over the text env, ids round-trip, unknown vectors
  are flagged;
* :mod:`envs.jax_frozen_lake` against :class:`envs.frozen_lake.FrozenLake`: transition by transition without slip,
  in distribution with slip.

The JAX side runs batched (``step_many``: one compilation per map version, shared by all tests here).
"""

from __future__ import annotations

import gzip
import json
from functools import cache

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import jax_overcooked as jo
from envs.jax_frozen_lake import FrozenLakeState, make_frozen_lake
from envs.jax_prompts import prompt_table
from envs.overcooked import obs2text

NAMES = {0: "overcooked-tomato-salad", 3: "overcooked-tomato-lettuce-salad", 6: "overcooked-tomato-lettuce-onion-salad"}
CAPS = {0: 31, 3: 51, 6: 51}  # the paper scripts' macro caps (task 6 has no script; same as task 3)
GOLDEN_FILES = {0: "tomato_salad_transitions.jsonl.gz", 3: "tomato_lettuce_salad_transitions.jsonl.gz"}
EPISODES = 1000


def f32_close(a, b, tol: float = 1e-6) -> np.ndarray:
    """|float32(a) - float32(b)| <= tol, elementwise (the golden test's rule: rewards within 1e-6 in float32)."""
    return np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)) <= tol


# -- golden rows -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(GOLDEN_FILES))
def test_every_golden_row_is_reproduced(task):
    from tests.shared_data import golden_dir

    path = golden_dir(GOLDEN_FILES[task]) / GOLDEN_FILES[task]  # skips, naming where it looked, when absent
    with gzip.open(path, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    env = jo.make_overcooked(task)
    states = env.from_world(np.array([r["state"] for r in rows]))
    nxt, obs, reward, done, info = jo.step_many(states, np.array([r["a"] for r in rows]))
    col = lambda key: np.array([r[key] for r in rows])  # noqa: E731
    start_obs = np.asarray(jo.observation_batch(states))
    checks = {
        "obs": (start_obs == col("obs")).all(1),
        "next_state": (env.to_world(nxt) == col("next_state")).all(1),
        "next_obs": (obs == col("next_obs")).all(1),
        "reward": f32_close(reward, col("reward")),
        "done": done == col("done"),
        "success": info["success"] == col("done"),  # in these rows done is always a correct delivery
        "prim_steps": info["primitive_steps"] == col("prim_steps"),
        "not truncated": ~info["truncated"],
    }
    table = prompt_table(task)
    for key, vecs in (("", start_obs), ("next_", obs)):
        ids = table.checked_prompt_id(vecs)
        checks[key + "prompt"] = np.array([table.prompts[i] == r[key + "prompt"] for i, r in zip(ids, rows)])
        checks[key + "actions"] = np.array([list(table.actions[i]) == r[key + "actions"] for i, r in zip(ids, rows)])
    bad = {k: np.flatnonzero(~v) for k, v in checks.items() if not v.all()}
    assert not bad, {k: (len(v), rows[v[0]]) for k, v in bad.items()}
    assert len(rows) == {0: 120, 3: 9248}[task]


# -- random episodes side by side -------------------------------------------------------------------------------
def _text_rollouts(task: int, actions: np.ndarray, max_steps: int | None) -> dict[str, np.ndarray]:
    """Step the text env through ``actions`` [N, L] until each episode ends; arrays [N, L] (unused steps: -1/0)."""
    n, length = actions.shape
    env = envs.make(NAMES[task], max_steps=max_steps)
    dim = 18 if task == 0 else 26
    out = {
        "obs": np.zeros((n, length, dim), np.int32),
        "world": np.zeros((n, length, 7 if task == 0 else 13), np.int32),
        "reward": np.zeros((n, length)),
        "twosome": np.zeros((n, length)),
        "terminated": np.zeros((n, length), bool),
        "truncated": np.zeros((n, length), bool),
        "success": np.zeros((n, length), bool),
        "prim": np.zeros((n, length), np.int32),
        "clock": np.zeros((n, length), np.int32),
        "valid": np.zeros((n, length), bool),
        "prompt": np.empty((n, length), object),
        "labels": np.empty((n, length), object),
    }
    for i in range(n):
        env.reset()
        for t in range(length):
            obs, reward, terminated, truncated, info = env.step(int(actions[i, t]))
            out["obs"][i, t] = info["obs_vector"]
            out["world"][i, t] = info["world"]
            out["reward"][i, t], out["twosome"][i, t] = reward, info["twosome_reward"]
            out["terminated"][i, t], out["truncated"][i, t] = terminated, truncated
            out["success"][i, t], out["prim"][i, t], out["clock"][i, t] = (
                info["success"],
                info["prim_steps"],
                info["env_step"],
            )
            out["valid"][i, t] = True
            out["prompt"][i, t], out["labels"][i, t] = obs.prompt, obs.actions
            if terminated or truncated:
                break
        else:
            raise AssertionError(f"task {task} episode {i} did not end within {length} macro steps")
    return out


def _jax_rollouts(task: int, actions: np.ndarray, max_steps: int | None) -> dict[str, np.ndarray]:
    n, length = actions.shape
    env = jo.make_overcooked(task, max_steps=max_steps)
    state = env.from_world(np.tile(env.to_world(jo.initial_state(task)), (n, 1)))
    keys = ("obs", "world", "reward", "twosome", "terminated", "truncated", "success", "prim", "clock", "stepped")
    out = {k: [] for k in keys}
    for t in range(length):
        if t and not out["stepped"][-1].any():  # every episode has ended: the rest are no-ops (checked once)
            for k in keys:
                out[k].append(np.zeros_like(out[k][-1]) if k == "stepped" else out[k][-1])
            continue
        state, obs, reward, done, info = jo.step_many(state, actions[:, t], max_steps=max_steps)
        for k, v in zip(keys, (obs, env.to_world(state), reward, info["twosome_reward"], done)):
            out[k].append(v)
        out["truncated"].append(info["truncated"])
        out["success"].append(info["success"])
        out["prim"].append(info["primitive_steps"])
        out["clock"].append(info["env_step"])
        out["stepped"].append(info["stepped"])
    return {k: np.stack(v, 1) for k, v in out.items()}


@pytest.mark.parametrize("task", [0, 3, 6])
@pytest.mark.parametrize("capped", [False, True], ids=["horizon", "macro-cap"])
def test_random_episodes_match_the_text_env(task, capped):
    """1,000 seeded uniform-random episodes: every transition's observation vector, true state, reward, TWOSOME
    reward, done, truncation, success, primitive steps and clock agree; the prompt id of every observation renders
    the text env's prompt and labels; steps after the end are no-ops."""
    max_steps = CAPS[task] if capped else None
    length = max_steps or 200  # without a cap an episode ends within 200 macros (each takes >= 1 primitive step)
    rng = np.random.default_rng(1000 * task + capped)
    actions = rng.integers(0, 5 if task == 0 else 8, size=(EPISODES, length), dtype=np.int32)
    text = _text_rollouts(task, actions, max_steps)
    ours = _jax_rollouts(task, actions, max_steps)
    valid = text["valid"]
    assert (ours["stepped"] == valid).all()  # stepping past the end is a no-op
    checks = {
        "obs": (ours["obs"] == text["obs"]).all(-1),
        "world": (ours["world"] == text["world"]).all(-1),
        "reward": f32_close(ours["reward"], text["reward"]),
        "twosome": f32_close(ours["twosome"], text["twosome"]),
        "terminated": ours["terminated"] == text["terminated"],
        "truncated": ours["truncated"] == text["truncated"],
        "success": ours["success"] == text["success"],
        "prim": ours["prim"] == text["prim"],
        "clock": ours["clock"] == text["clock"],
    }
    bad = {k: np.argwhere(valid & ~v) for k, v in checks.items() if (valid & ~v).any()}
    assert not bad, {k: (len(v), tuple(v[0])) for k, v in bad.items()}
    table = prompt_table(task)
    ids = table.checked_prompt_id(ours["obs"][valid])
    assert [table.prompts[i] for i in ids] == list(text["prompt"][valid])
    assert [table.actions[i] for i in ids] == list(text["labels"][valid])
    # the episodes exercise what they should: served dishes, the horizon (uncapped) or the cap (capped)
    ends = valid & ~np.roll(valid, -1, axis=1) | valid & (np.arange(length) == length - 1)
    assert text["success"][ends].any() or task == 6  # random play essentially never serves task 6's dish
    if capped:
        assert text["truncated"][ends].any()
    else:
        assert (text["clock"][ends] >= 200).any() and not text["truncated"].any()
    print(f"task {task} {'capped' if capped else 'uncapped'}: {int(valid.sum())} transitions checked")


def test_a_macro_crossing_the_horizon_and_finished_states():
    """§7: the macro that crosses 200 finishes and terminates; a served or finished state then does not move."""
    env = jo.make_overcooked(0)
    text = envs.make(NAMES[0])
    cases = [((0, 5, 0, 6, 5, 1, 4), 199, 1), ((5, 5, 3, 5, 5, 5, 5), 195, 3), ((0, 5, 0, 6, 5, 1, 4), 198, 4)]
    states = env.from_world(np.array([c[0] for c in cases]), env_step=np.array([c[1] for c in cases]))
    nxt, obs, reward, done, info = jo.step_many(states, np.array([c[2] for c in cases]))
    for i, (world, clock, a) in enumerate(cases):
        text.set_state(list(world), env_step=clock)
        _, r, terminated, _, tinfo = text.step(a)
        assert (bool(done[i]), int(info["primitive_steps"][i]), int(info["env_step"][i])) == (
            terminated,
            tinfo["prim_steps"],
            tinfo["env_step"],
        )
        assert f32_close(reward[i], r) and bool(info["success"][i]) == tinfo["success"]
    assert list(done) == [True, True, False] and list(info["primitive_steps"][:2]) == [6, 7]
    again, obs2, reward2, done2, info2 = jo.step_many(nxt, np.array([0, 0, 4]))
    assert list(info2["stepped"]) == [False, False, True] and list(done2) == [True, True, True]
    assert (obs2[:2] == obs[:2]).all() and (reward2[:2] == 0).all() and (info2["primitive_steps"][:2] == 0).all()


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="task must be one of"):
        jo.make_overcooked(1)
    with pytest.raises(ValueError, match="max_steps"):
        jo.make_overcooked(0, max_steps=0)
    with pytest.raises(ValueError, match="13 ints"):
        jo.make_overcooked(3).from_world([0] * 7)
    with pytest.raises(ValueError, match="map_name"):
        make_frozen_lake("5x5")


# -- prompt ids -------------------------------------------------------------------------------------------------
@cache
def _text_bfs(task: int) -> tuple[set, set, set]:
    """BFS over the text env: (non-terminal vectors, terminal-only vectors, non-terminal (prompt, labels) pairs)."""
    env = envs.make(NAMES[task])
    obs, info = env.reset()
    start = info["world"]
    seen, frontier = {start}, [start]
    vectors, pairs, terminal = {tuple(info["obs_vector"])}, {(obs.prompt, obs.actions)}, set()
    while frontier:
        world = frontier.pop()
        for a in range(len(env.macros)):
            env.set_state(world)
            obs, _, _, _, info = env.step(a)
            vec = tuple(info["obs_vector"])
            if info["success"]:
                terminal.add(vec)
                continue
            vectors.add(vec)
            pairs.add((obs.prompt, obs.actions))
            if info["world"] not in seen:
                seen.add(info["world"])
                frontier.append(info["world"])
    return vectors, terminal - vectors, pairs


@pytest.mark.parametrize("task", [0, 3, 6])
def test_prompt_table_enumerates_exactly_the_text_envs_observations(task):
    table = prompt_table(task)
    vectors, terminal, pairs = _text_bfs(task)
    ours = {tuple(v) for v in table.obs_vectors[~table.terminal].tolist()}
    assert ours == vectors and {tuple(v) for v in table.obs_vectors[table.terminal].tolist()} == terminal
    assert table.num_prompts == len(pairs)
    assert set(zip(table.prompts[: table.num_prompts], table.actions[: table.num_prompts])) == pairs
    assert (len(vectors), len(pairs)) == {0: (21, 21), 3: (801, 787), 6: (801, 787)}[task]  # §3, §10.3
    assert table.num_obs == {0: 22, 3: 806, 6: 802}[task] and len(table.prompts) == len(pairs)  # terminal ones alias
    # ids round-trip, prompt ids are distinct pairs, and each id renders like the text env
    assert (np.asarray(table.obs_id(table.obs_vectors)) == np.arange(table.num_obs)).all()
    assert len(set(zip(table.prompts, table.actions))) == len(table.prompts)
    for vec, pid in zip(table.obs_vectors, table.prompt_of_obs):
        assert obs2text(tuple(vec.tolist()), task) == (table.prompts[pid], table.actions[pid])
    obs = table.text_observation(3)
    assert (obs.prompt, obs.actions, obs.state) == (table.prompts[3], table.actions[3], table.states[3])
    assert obs.state and table.prompts[3].startswith(obs.state)


def test_prompt_lookup_runs_in_jit_and_flags_unknown_vectors():
    table = prompt_table(3)
    lookup = jax.jit(jax.vmap(table.prompt_id))
    assert (np.asarray(lookup(table.obs_vectors)) == table.prompt_of_obs).all()
    known = {tuple(v) for v in table.obs_vectors.tolist()}
    rng = np.random.default_rng(0)
    unknown = []
    for vec in table.obs_vectors:  # one entry changed, a wrong task one-hot, random vectors
        v = vec.copy()
        v[rng.integers(0, 19)] += 7
        unknown.append(v)
        w = vec.copy()
        w[19:] = np.eye(7, dtype=np.int32)[6]
        unknown.append(w)
    unknown += list(rng.integers(0, 7, size=(500, 26), dtype=np.int32))
    unknown = np.array([u for u in unknown if tuple(u.tolist()) not in known])
    assert len(unknown) > 1500
    assert (np.asarray(lookup(unknown)) == -1).all() and (np.asarray(table.obs_id(unknown)) == -1).all()
    with pytest.raises(ValueError, match="not among the 806 reachable observations"):
        table.checked_prompt_id(np.concatenate([table.obs_vectors[:5], unknown[:1]]))
    with pytest.raises(ValueError, match="26 entries"):
        table.prompt_id(np.zeros((2, 18), np.int32))
    assert prompt_table(6).prompt_id(table.obs_vectors[:1])[0] == -1  # task 3's one-hot is unknown to task 6


# -- vmap + jit ----------------------------------------------------------------------------------------------------
def test_jitted_vmapped_rollout_of_64_copies_with_auto_reset():
    """The pattern of a compiled training loop: lax.scan over jax.vmap(env.step) with auto-reset, in one jit; its
    transitions equal step_many's from the same states and actions."""
    env = jo.make_overcooked(3, max_steps=51)
    table = prompt_table(3)
    n, length = 64, 60

    @jax.jit
    def rollout(key):
        state, _ = jax.vmap(env.reset)(jax.random.split(key, n))
        reset_state = state

        def body(state, key):
            k_act, k_env = jax.random.split(key)
            action = jax.random.randint(k_act, (n,), 0, env.num_actions)
            nxt, obs, reward, done, info = jax.vmap(env.step)(jax.random.split(k_env, n), state, action)
            over = done | info["truncated"]
            carry = jax.tree.map(lambda r, s: jnp.where(over.reshape(-1, *[1] * (s.ndim - 1)), r, s), reset_state, nxt)
            return carry, (state, action, obs, reward, done, info["truncated"], table.prompt_id(obs))

        return jax.lax.scan(body, state, jax.random.split(key, length))[1]

    states, actions, obs, reward, done, truncated, pid = jax.device_get(rollout(jax.random.key(0)))
    assert obs.shape == (length, n, 26) and obs.dtype == np.int32 and reward.dtype == np.float32
    assert done.dtype == bool and (pid >= 0).all() and (done | truncated).any()
    flat = jax.tree.map(lambda x: x.reshape(length * n, *x.shape[2:]), states)
    _, obs2, reward2, done2, info2 = jo.step_many(flat, actions.reshape(-1), max_steps=51)
    assert (obs2 == obs.reshape(-1, 26)).all() and (reward2 == reward.reshape(-1)).all()
    assert (done2 == done.reshape(-1)).all() and (info2["truncated"] == truncated.reshape(-1)).all()


# -- Frozen Lake ---------------------------------------------------------------------------------------------------
def _gym_probs(map_name: str, slippery: bool) -> np.ndarray:
    P = gym.make("FrozenLake-v1", map_name=map_name, is_slippery=slippery).unwrapped.P
    n = len(P)
    probs = np.zeros((n, 4, n))
    for s in range(n):
        for a in range(4):
            for p, s2, _, _ in P[s][a]:
                probs[s, a, s2] += p
    return probs


@pytest.mark.parametrize("map_name", ["4x4", "8x8"])
@pytest.mark.parametrize("slippery", [False, True])
def test_frozen_lake_tables_are_gymnasiums(map_name, slippery):
    env = make_frozen_lake(map_name, is_slippery=slippery)
    np.testing.assert_allclose(env.probs, _gym_probs(map_name, slippery), atol=1e-12)


@pytest.mark.parametrize("map_name, max_steps", [("4x4", 20), ("8x8", 100)])
def test_frozen_lake_random_episodes_match_the_text_env(map_name, max_steps):
    n = EPISODES
    rng = np.random.default_rng(7)
    actions = rng.integers(0, 4, size=(n, max_steps), dtype=np.int32)
    text = envs.make("frozen-lake", map_name=map_name, max_steps=max_steps)
    want = np.zeros((n, max_steps, 6), np.int64)  # position, reward, terminated, truncated, success, hole
    valid = np.zeros((n, max_steps), bool)
    for i in range(n):
        text.reset()
        for t in range(max_steps):
            _, reward, terminated, truncated, info = text.step(int(actions[i, t]))
            want[i, t] = info["position"], reward, terminated, truncated, info["success"], info["hole"]
            valid[i, t] = True
            if terminated or truncated:
                break
    env = make_frozen_lake(map_name, max_steps=max_steps)
    step = jax.jit(jax.vmap(env.step))
    state, obs = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), n))
    assert (np.asarray(obs) == 0).all()
    got, stepped = [], []
    for t in range(max_steps):
        state, obs, reward, done, info = step(jax.random.split(jax.random.key(t), n), state, actions[:, t])
        got.append(np.stack([obs, reward, done, info["truncated"], info["success"], info["hole"]], -1))
        stepped.append(info["stepped"])
    got = np.stack(got, 1).astype(np.int64)
    assert (np.stack(stepped, 1) == valid).all()
    mismatch = np.argwhere(valid & (got != want).any(-1))
    assert not len(mismatch), (len(mismatch), tuple(mismatch[0]))
    assert want[..., 4].any() and want[..., 5].any() and want[..., 3].any()  # goals, holes and caps all occur
    print(f"frozen lake {map_name}: {int(valid.sum())} transitions checked")


def test_slippery_frozen_lake_matches_in_distribution():
    """Each (cell, action)'s next-cell frequencies over 4,000 JAX samples lie within 5 sigma of gymnasium's P; the
    text env's own samples from the start agree with both; and whole episodes under a fixed random policy end in
    the goal / a hole / the cap at rates that agree."""
    env = make_frozen_lake("4x4", is_slippery=True, max_steps=20)
    probs = env.probs
    n_samples = 4000
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, None)))
    cells = np.flatnonzero(~(env.hole | env.goal))
    freq = np.zeros_like(probs)
    for a in range(4):
        for s in cells:
            state = FrozenLakeState(jnp.full(n_samples, s, jnp.int32), jnp.zeros(n_samples, jnp.int32))
            _, nxt, *_ = step(jax.random.split(jax.random.key(100 * a + int(s)), n_samples), state, a)
            freq[s, a] = np.bincount(np.asarray(nxt), minlength=env.num_states) / n_samples
    sigma = np.sqrt(probs * (1 - probs) / n_samples)
    assert (np.abs(freq - probs)[cells] <= 5 * sigma[cells] + 1e-9).all()
    # the text env (gymnasium's own sampling) from the start cell
    text = envs.make("frozen-lake", is_slippery=True, max_steps=None)
    text.reset(seed=0)
    n_text = 1500
    for a in range(4):
        counts = np.zeros(env.num_states)
        for _ in range(n_text):
            text.reset()
            counts[text.step(a)[4]["position"]] += 1
        p = probs[0, a]
        assert (np.abs(counts / n_text - p) <= 5 * np.sqrt(p * (1 - p) / n_text) + 1e-9).all()
    # whole episodes: outcome rates under one random action sequence per episode
    n_ep, rng = 3000, np.random.default_rng(3)
    actions = rng.integers(0, 4, size=(n_ep, 20), dtype=np.int32)
    text = envs.make("frozen-lake", is_slippery=True, max_steps=20)
    text.reset(seed=1)
    text_out = np.zeros(3)
    for i in range(n_ep):
        text.reset()
        for a in actions[i]:
            _, _, terminated, truncated, info = text.step(int(a))
            if terminated or truncated:
                text_out += (info["success"], info["hole"], truncated)
                break
    full_step = jax.jit(jax.vmap(env.step))
    state, _ = jax.vmap(env.reset)(jax.random.split(jax.random.key(1), n_ep))
    for t in range(20):
        state, _, _, done, info = full_step(jax.random.split(jax.random.key(1000 + t), n_ep), state, actions[:, t])
    ours = np.array([info["success"].sum(), info["hole"].sum(), info["truncated"].sum()])
    p = (text_out + ours) / (2 * n_ep)
    assert (np.abs(text_out - ours) / n_ep <= 5 * np.sqrt(2 * p * (1 - p) / n_ep) + 1e-9).all(), (text_out, ours)
