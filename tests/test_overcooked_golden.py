"""Conformance with the reference Overcooked: replay every golden (state, action) transition.

Spec: docs/overcooked-frozenlake.md §14. The golden files were produced by running TWOSOME's
``gym-macro-overcooked`` exhaustively (9,368 rows: 24 states × 5 actions for task 0, 1,156 × 8 for task 3); each
row is replayed from its true state with the clock at 0 (``env.set_state``). They are not shipped (TWOSOME's
environment is non-commercial; see NOTICE): :func:`tests.shared_data.golden_dir` reads them from
``$PRIOR_RL_GOLDEN_DIR``, else from ``../shared/overcooked_golden/`` beside the repository root, and skips this
module when they are absent.
"""

from __future__ import annotations

import gzip
import json
from functools import cache

import numpy as np
import pytest

import envs
from envs.overcooked import OvercookedState, observation_vector, step_state
from tests.shared_data import golden_dir

GOLDEN = golden_dir()  # skips this module, naming $PRIOR_RL_GOLDEN_DIR and the default folder, when absent
FILES = {
    0: ("overcooked-tomato-salad", "tomato_salad_transitions.jsonl.gz", 120, 24),
    3: ("overcooked-tomato-lettuce-salad", "tomato_lettuce_salad_transitions.jsonl.gz", 9248, 1156),
}


@cache
def _rows(task_id: int) -> tuple[dict, ...]:
    path = GOLDEN / FILES[task_id][1]
    with gzip.open(path, "rt") as fh:
        return tuple(json.loads(line) for line in fh)


@pytest.mark.parametrize("task_id", sorted(FILES))
def test_every_golden_transition_is_reproduced_exactly(task_id):
    name, _, n_rows, n_states = FILES[task_id]
    rows = _rows(task_id)
    assert len(rows) == n_rows and len({tuple(r["state"]) for r in rows}) == n_states
    env = envs.make(name)
    mismatches = []
    for i, row in enumerate(rows):
        obs, info = env.set_state(row["state"])
        a = row["a"]
        here = (info["obs_vector"], obs.prompt, list(obs.actions), obs.actions[a], env.macros[a])
        want = (row["obs"], row["prompt"], row["actions"], row["label"], row["macro"])
        nobs, reward, terminated, truncated, ninfo = env.step(a)
        there = (
            list(ninfo["world"]),
            ninfo["obs_vector"],
            nobs.prompt,
            list(nobs.actions),
            terminated,
            ninfo["prim_steps"],
            ninfo["success"],
        )
        want_there = (
            row["next_state"],
            row["next_obs"],
            row["next_prompt"],
            row["next_actions"],
            row["done"],
            row["prim_steps"],
            row["done"],
        )  # in these rows done is always a correct delivery
        # reward "within 1e-6 in float32": compare the float32 values
        reward_ok = abs(float(np.float32(reward)) - float(np.float32(row["reward"]))) <= 1e-6
        if here != want or there != want_there or not reward_ok or truncated:
            mismatches.append((i, row["state"], a, here, want, there, want_there, reward, row["reward"]))
        # the state text is the prompt without the goal sentence
        assert nobs.prompt.startswith(nobs.state) and obs.state == obs.prompt[: len(obs.state)].strip()
    assert not mismatches, f"{len(mismatches)} of {len(rows)} golden transitions differ; first: {mismatches[0]}"


@pytest.mark.parametrize("task_id", sorted(FILES))
def test_pure_step_state_agrees_with_the_golden_rows(task_id):
    rows = _rows(task_id)
    for row in rows:
        state = OvercookedState(task_id, tuple(row["state"]), 0)
        nxt, reward, done, k = step_state(state, row["a"])
        assert (list(nxt.world), done, k, nxt.env_step) == (row["next_state"], row["done"], row["prim_steps"], k)
        assert abs(reward - row["reward"]) < 1e-9  # float64 like the reference
        assert list(observation_vector(task_id, nxt.world)) == row["next_obs"]


@pytest.mark.parametrize("task_id", sorted(FILES))
def test_our_reachable_state_space_is_exactly_the_golden_one(task_id):
    """BFS over our own dynamics from reset finds exactly the golden files' states (no more, no fewer)."""
    from tests.test_overcooked import reachable

    golden_states = {tuple(r["state"]) for r in _rows(task_id)}
    assert reachable(task_id) == golden_states
