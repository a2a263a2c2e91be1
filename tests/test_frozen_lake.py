"""Text Frozen Lake: gymnasium's rules, our rendering, the BFS expert."""

import itertools

import numpy as np
import pytest

import envs
from envs.frozen_lake import ACTIONS


def test_text_at_start_states_position_neighbours_and_goal():
    env = envs.make("frozen-lake")
    obs, _ = env.reset()
    assert obs.actions == ("move left", "move down", "move right", "move up")
    assert obs.task == "Reach the goal at row 3, column 3 without stepping into a hole."
    assert obs.state == (
        "You are at row 0, column 0 of a 4x4 frozen lake. Left of you is the edge of the lake. "
        "Below you is frozen ice. Right of you is frozen ice. Above you is the edge of the lake."
    )
    assert obs.task in obs.prompt and obs.state in obs.prompt and "move up" in obs.prompt


def test_text_names_holes_and_goal_next_to_the_agent():
    env = envs.make("frozen-lake")
    env.reset()
    obs, *_ = env.step("move down")  # (1,0): hole to the right at (1,1)
    assert "Right of you is a hole." in obs.state
    for a in ("move down", "move right", "move right"):
        obs, *_ = env.step(a)  # (2,0) -> (2,1) -> (2,2); below (3,2) is ice, right (2,3) is a hole
    assert "Right of you is a hole." in obs.state
    obs, *_ = env.step("move down")  # (3,2): the goal is to the right
    assert "Right of you is the goal." in obs.state


def test_rewards_and_termination_follow_gymnasium():
    env = envs.make("frozen-lake")
    env.reset()
    obs, reward, terminated, truncated, info = env.step("move left")  # bump the wall: stay
    assert (reward, terminated, info["position"]) == (0.0, False, 0)
    env.step("move down")
    obs, reward, terminated, truncated, info = env.step("move right")  # into the hole at (1,1)
    assert terminated and reward == 0.0 and not info["success"] and info["hole"]
    assert obs.state.startswith("You fell into a hole at row 1, column 1")


def test_exactly_three_shortest_solutions_and_expert_takes_one():
    env = envs.make("frozen-lake")
    wins = []
    for plan in itertools.product(range(4), repeat=6):
        env.reset()
        for a in plan:
            _, reward, terminated, _, info = env.step(a)
            if terminated:
                break
        if info["success"]:
            wins.append("".join("LDRU"[a] for a in plan))
    assert sorted(wins) == ["DDRDRR", "DDRRDR", "RRDDDR"]
    env.reset()
    plan = []
    while not plan or not terminated:
        a = env.expert_action()
        plan.append("LDRU"[a])
        _, reward, terminated, _, info = env.step(a)
    assert "".join(plan) in wins and reward == 1.0


def test_default_cap_is_twenty_steps_and_options():
    env = envs.make("frozen-lake")
    env.reset()
    for i in range(20):
        _, _, terminated, truncated, _ = env.step("move up")
    assert truncated and not terminated
    big = envs.make("frozen-lake", map_name="8x8", max_steps=None)
    obs, _ = big.reset()
    assert "8x8" in obs.state and "row 7, column 7" in obs.task
    steps = 0
    while True:
        _, _, terminated, truncated, info = big.step(big.expert_action())
        steps += 1
        if terminated:
            break
    assert info["success"] and steps == 14
    with pytest.raises(ValueError, match="map_name must be"):
        envs.make("frozen-lake", map_name="5x5")


def test_slippery_is_stochastic_but_seeded():
    def positions(seed):
        env = envs.make("frozen-lake", is_slippery=True, max_steps=None)
        env.reset(seed=seed)
        out = []
        for _ in range(10):
            obs, _, terminated, _, info = env.step("move right")
            out.append(info["position"])
            if terminated:
                break
        return out

    assert positions(0) == positions(0)
    assert len({tuple(positions(s)) for s in range(8)}) > 1


def test_uniform_random_success_rate_matches_the_spec():
    # docs/overcooked-frozenlake.md §15.2: 1.25% within 20 steps for a uniform-random policy
    env = envs.make("frozen-lake")
    rng = np.random.default_rng(0)
    wins, episodes = 0, 4000
    for _ in range(episodes):
        env.reset()
        while True:
            _, _, terminated, truncated, info = env.step(int(rng.integers(len(ACTIONS))))
            if terminated or truncated:
                break
        wins += info["success"]
    assert 0.008 < wins / episodes < 0.018
