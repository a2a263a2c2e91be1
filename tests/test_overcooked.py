"""Text Overcooked: text, dynamics, horizon, partial view, expert, reward loophole and bad input.

Spec: docs/overcooked-frozenlake.md §2–§13 (bare § numbers below refer to it).

These tests need no golden files; tests/test_overcooked_golden.py replays the reference's transitions.
"""

from __future__ import annotations

import random
import time
from functools import cache

import pytest

import envs
from envs.base import EpisodeFinishedError
from envs.overcooked import (
    HORIZON,
    TASKS,
    OvercookedState,
    TomatoLettuceOnionSalad,
    TomatoLettuceSalad,
    TomatoSalad,
    initial_state,
    obs2text,
    observation_vector,
    plan,
    step_state,
)
from envs.overcooked.core import macro_transition

NAMES = {0: "overcooked-tomato-salad", 3: "overcooked-tomato-lettuce-salad", 6: "overcooked-tomato-lettuce-onion-salad"}
ACTION_QUESTION = (
    ", what action should you take next? Based on your previous observations and actions, please select "
    "only one action for the next step from the admissible actions: {}. Action:"
)


def macro_reward(k: int, event: float = 0.0) -> float:
    """§5.5: R = -0.001 (1 - 0.99^k) / 0.01 + 0.99^(k-1) event."""
    return -0.001 * (1 - 0.99**k) / 0.01 + 0.99 ** (k - 1) * event


def play(env, labels):
    """Step by label text; returns [(reward, prim_steps, info)]."""
    out = []
    for label in labels:
        _, reward, _, _, info = env.step(label)
        out.append((reward, info["prim_steps"], info))
    return out


def reachable(task_id: int) -> set[tuple[int, ...]]:
    start = initial_state(task_id).world
    seen, frontier = {start}, [start]
    while frontier:
        world = frontier.pop()
        for a in range(TASKS[task_id].num_actions):
            result = macro_transition(task_id, world, a)
            if not result.success and result.next_world not in seen:
                seen.add(result.next_world)
                frontier.append(result.next_world)
    return seen


# -- text at reset (§6, §10, §11, §13) ---------------------------------------------------------------------------
def test_reset_observations_are_the_reference_text_word_for_word():
    obs, info = envs.make(NAMES[0]).reset(seed=0)
    assert obs.prompt == (
        "There is a fixed cutting board in the room. You notice a tomato on the table. Currently you "
        "don't have anything in hand. To serve the dish of a bowl only containing chopped tomato, "
        "you should first"
    )
    assert obs.actions == (
        "pick up the tomato",
        "take the bowl",
        "walk to the cutting board",
        "serve nothing",
        "chop nothing",
    )
    assert obs.task == "Your task is to serve the dish of a bowl only containing chopped tomato."
    assert obs.state == (
        "There is a fixed cutting board in the room. You notice a tomato on the table. Currently you "
        "don't have anything in hand."
    )
    assert (obs.family, obs.instruction, obs.extra) == ("overcooked", obs.task, {"task_id": 0})
    assert obs.action_prompt == "To serve the dish of a bowl containing only chopped tomatoes" + ACTION_QUESTION
    assert info["obs_vector"] == [0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 4, 1, 0, 0, 0, 0, 0, 0]
    assert (info["success"], info["prim_steps"], info["env_step"], info["macro"]) == (False, 0, 0, None)

    obs, info = envs.make(NAMES[3]).reset()
    assert obs.prompt == (
        "There are two fixed cutting boards in the room. You notice a tomato, a lettuce and an onion "
        "on the different tables. Currently you don't have anything in hand. To serve the dish of a "
        "bowl only containing chopped tomato and lettuce, you should first"
    )
    assert obs.actions == (
        "pick up the tomato",
        "pick up the lettuce",
        "pick up the onion",
        "take the empty bowl",
        "walk to the first cutting board",
        "walk to the second cutting board",
        "serve nothing",
        "chop nothing",
    )
    assert obs.task == "Your task is to serve the dish of a bowl only containing chopped tomato and lettuce."
    assert obs.action_prompt == (
        "To serve the dish of a bowl only containing chopped tomato and lettuce" + ACTION_QUESTION
    )
    # the paper's scripts format the template with the Python list repr of the labels
    assert obs.action_prompt.format(list(obs.actions)).endswith(
        "admissible actions: ['pick up the tomato', 'pick up the lettuce', 'pick up the onion', 'take the empty "
        "bowl', 'walk to the first cutting board', 'walk to the second cutting board', 'serve nothing', "
        "'chop nothing']. Action:"
    )
    assert info["obs_vector"] == [0, 5, 0, 1, 6, 0, 2, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 1, 0, 0, 0]


def test_task6_parameterises_the_goal_sentence_and_the_task_one_hot():
    obs, info = envs.make(NAMES[6]).reset()
    assert obs.prompt.endswith(
        "To serve the dish of a bowl only containing chopped tomato, lettuce and onion, you should first"
    )
    assert obs.task == "Your task is to serve the dish of a bowl only containing chopped tomato, lettuce and onion."
    assert obs.action_prompt.startswith(
        "To serve the dish of a bowl only containing chopped tomato, lettuce and onion, what action"
    )
    assert obs.state == envs.make(NAMES[3]).reset()[0].state  # same rendering as task 3 otherwise
    assert info["obs_vector"][-7:] == [0, 0, 0, 0, 0, 0, 1]


def test_seed_is_ignored_and_reset_restarts_the_episode():
    env = envs.make(NAMES[3])
    first = env.reset(seed=1)
    env.step(0)
    again = env.reset(seed=2)
    assert first[0] == again[0] and first[1] == again[1] and env.state == initial_state(3)


# -- dynamics of single macros (§4, §5) --------------------------------------------------------------------------
def test_macro_rewards_and_step_counts_match_the_spec_examples():
    env = envs.make(NAMES[0])
    env.reset()
    (r1, k1, _), (r2, k2, _), (r3, k3, i3) = play(
        env, ["pick up the tomato", "put the tomato on the cutting board", "chop the tomato"]
    )
    assert (k1, k2, k3) == (2, 5, 3)
    assert r1 == pytest.approx(-0.00199, abs=1e-12) and r2 == pytest.approx(macro_reward(5), abs=1e-12)
    assert r3 == pytest.approx(0.193050, abs=1e-6) and r3 == pytest.approx(macro_reward(3, 0.2), abs=1e-12)
    assert i3["world"] == (1, 0, 3, 6, 5, 1, 1)  # chopped tomato on the board, agent in front of it
    # a chop with nothing to chop is one "stay"; "chop the tomato" again finds only chopped food
    _, reward, *_ = env.step(4)
    assert env.state.world == (1, 0, 3, 6, 5, 1, 1) and reward == pytest.approx(-0.001)


def test_chop_while_holding_wastes_three_steps_and_chops_nothing():
    env = TomatoSalad()
    # unchopped tomato on the board, agent in front of it holding the bowl
    obs, _ = env.set_state([1, 0, 0, 1, 1, 1, 1])
    assert obs.actions[4] == "chop the tomato"  # the label offers a chop the macro cannot perform
    _, reward, _, _, info = env.step("chop the tomato")
    assert info["prim_steps"] == 3 and info["world"] == (1, 0, 0, 1, 1, 1, 1)
    assert reward == pytest.approx(macro_reward(3), abs=1e-12)


def test_food_in_an_out_of_view_bowl_walks_until_it_is_seen_then_stays():
    """§5.2 verified example: holding an onion at (2,5), tomato-bowl on board 2: "pick up the tomato" -> (2,2), k=4."""
    env = TomatoLettuceSalad()
    env.set_state([2, 0, 3, 1, 6, 0, 2, 5, 0, 2, 0, 2, 5])
    _, reward, _, _, info = env.step("pick up the tomato")
    assert info["prim_steps"] == 4 and info["world"] == (2, 0, 3, 1, 6, 0, 2, 2, 0, 2, 0, 2, 2)
    # in view now: the same macro is a one-step no-op
    _, _, _, _, info = env.step("pick up the tomato")
    assert info["prim_steps"] == 1 and info["world"] == (2, 0, 3, 1, 6, 0, 2, 2, 0, 2, 0, 2, 2)


def test_paths_go_vertically_first_then_horizontally():
    """The A* path shape (§5.2) shows when a food sits in a bowl out of view: the walk stops once it is seen."""
    env = TomatoLettuceSalad()
    # chopped lettuce in the bowl on board 2 (2,0); agent at (5,5), empty-handed
    env.set_state([0, 5, 0, 2, 0, 3, 2, 6, 0, 2, 0, 5, 5])
    _, _, _, _, info = env.step("pick up the lettuce")
    # up (4,5) (3,5) (2,5), then left (2,4) (2,3) (2,2): the board is first in view at (2,2); then one stay.
    # Horizontal-first would have stopped at (4,1) after 5 moves.
    assert info["world"][-2:] == (2, 2) and info["prim_steps"] == 3 + 3 + 1


def test_wrong_delivery_returns_the_food_unchopped_and_task6_needs_all_three_foods():
    # agent at (3,1) holding the bowl with chopped tomato and lettuce, in front of the delivery counter
    world = [3, 1, 3, 3, 1, 3, 2, 6, 0, 3, 1, 3, 1]
    env3, env6 = TomatoLettuceSalad(), TomatoLettuceOnionSalad()
    env3.set_state(world)
    _, reward, terminated, _, info = env3.step("serve the dish")
    assert terminated and info["success"] and reward == pytest.approx(0.999, abs=1e-12)
    env6.set_state(world)
    _, reward, terminated, _, info = env6.step("serve the dish")
    assert not terminated and not info["success"] and reward == pytest.approx(-0.101, abs=1e-12)
    assert info["world"] == (0, 5, 0, 1, 6, 0, 2, 6, 0, 6, 5, 3, 1)  # everything back where it started, unchopped


def test_onion_earns_the_subtask_reward_only_when_the_recipe_names_it():
    labels = ["pick up the onion", "put the onion on the first cutting board", "chop the onion"]
    env3, env6 = TomatoLettuceSalad(), TomatoLettuceOnionSalad()
    env3.reset()
    env6.reset()
    r3, r6 = play(env3, labels)[-1][0], play(env6, labels)[-1][0]
    assert r3 == pytest.approx(macro_reward(3), abs=1e-12) and r6 == pytest.approx(macro_reward(3, 0.2), abs=1e-12)


def test_reward_loophole_chop_serve_chop_pays_the_subtask_reward_again():
    """§8: a wrong delivery returns the tomato unchopped, and chopping it again earns +0.2 again."""
    env = TomatoSalad()
    env.reset()
    loop = [
        "pick up the tomato",
        "put the tomato on the cutting board",
        "chop the tomato",
        "pick up the tomato",
        "serve the dish",
    ]
    first = play(env, loop)
    assert first[-1][0] == pytest.approx(-0.100980, abs=1e-6)  # wrong serve after a 3-step walk (§5.5)
    assert first[-1][2]["world"][:3] == (0, 5, 0) and not first[-1][2]["success"]
    # the steady-state loop starts at the delivery counter: 19 primitive steps for about +0.08 (§8)
    second = play(env, loop)
    assert second[2][0] == pytest.approx(0.193050, abs=1e-6) == first[2][0]
    assert [k for _, k, _ in second] == [7, 5, 3, 1, 3]
    assert sum(r for r, _, _ in second) == pytest.approx(0.08, abs=0.002)
    assert not any(info["success"] for _, _, info in first + second)


# -- partial view (§6) -------------------------------------------------------------------------------------------
def test_partial_view_is_a_5x5_box_and_aliases_true_states():
    env = TomatoSalad()
    _, info = env.set_state([0, 5, 0, 6, 5, 1, 2])  # agent (1,2): knife (1,0) at |dy| = 2 is visible,
    assert info["obs_vector"][5:7] == [1, 0] and info["obs_vector"][:3] == [0, 0, 0]  # tomato (0,5) at |dy| = 3 not
    _, info = env.set_state([0, 5, 0, 6, 5, 1, 3])  # agent (1,3): the other way round
    assert info["obs_vector"][5:7] == [0, 0] and info["obs_vector"][:3] == [0, 5, 0]
    # standing at the bowl one cannot see the board: chopped and unchopped tomato there read the same
    unchopped, _ = env.set_state([1, 0, 0, 6, 5, 5, 5])
    chopped, info = env.set_state([1, 0, 3, 6, 5, 5, 5])
    assert unchopped == chopped and info["obs_vector"][:3] == [0, 0, 0]
    assert chopped.state == (
        "There is a fixed cutting board in the room. You notice a bowl on the table. Currently "
        "you don't have anything in hand."
    )
    # in front of the board the text tells them apart (and offers "chop the tomato" even for a chopped one)
    near, _ = env.set_state([1, 0, 3, 6, 5, 1, 1])
    assert "A chopped tomato is on the cutting board." in near.prompt and near.actions[4] == "chop the tomato"


def test_state_space_and_text_aliasing_sizes():
    """§3: 24 / 1,156 reachable true states, 21 / 801 observation vectors, 21 / 787 prompts."""
    for task_id, (n_states, n_vectors, n_prompts) in {0: (24, 21, 21), 3: (1156, 801, 787)}.items():
        worlds = reachable(task_id)
        vectors = {observation_vector(task_id, w) for w in worlds}
        prompts = {obs2text(v, task_id)[0] for v in vectors}
        assert (len(worlds), len(vectors), len(prompts)) == (n_states, n_vectors, n_prompts)
    assert reachable(6) == reachable(3)  # same map and dynamics; only the recipe differs (§13)


def test_primitive_step_ranges_per_macro():
    """§12.1: Tomato Salad: get tomato 1-9, get plate 1-10, go to knife 1-9, deliver 1-7, chop 1 or 3; max 10."""
    spans: dict[str, set[int]] = {}
    for world in reachable(0):
        for a, name in enumerate(TASKS[0].macros):
            spans.setdefault(name, set()).add(macro_transition(0, world, a).prim_steps)
    assert {n: (min(s), max(s)) for n, s in spans.items() if n != "chop"} == {
        "get tomato": (1, 9),
        "get plate 1": (1, 10),
        "go to knife 1": (1, 9),
        "deliver": (1, 7),
    }
    assert spans["chop"] == {1, 3}
    assert max(macro_transition(3, w, a).prim_steps for w in reachable(3) for a in range(8)) == 10


# -- horizon and termination (§5.1, §7) --------------------------------------------------------------------------
def test_a_macro_crossing_the_horizon_finishes_counts_and_terminates():
    env = TomatoSalad()
    env.set_state(initial_state(0).world, env_step=HORIZON - 1)
    _, reward, terminated, truncated, info = env.step("take the bowl")
    assert info["prim_steps"] == 6 and info["env_step"] == HORIZON + 5  # the whole macro ran
    assert reward == pytest.approx(macro_reward(6), abs=1e-12) and terminated and not truncated
    assert info["world"] == (0, 5, 0, 5, 5, 5, 5) and not info["success"]
    with pytest.raises(EpisodeFinishedError, match="reset"):
        env.step(0)
    # a correct delivery that crosses the horizon still pays +1 and counts as a success
    env.set_state([5, 5, 3, 5, 5, 5, 5], env_step=HORIZON - 5)
    _, reward, terminated, _, info = env.step("serve the dish")
    assert info["prim_steps"] == 7 and terminated and info["success"]
    assert reward == pytest.approx(0.934687, abs=1e-6)


def test_pure_step_state_keeps_done_true_past_the_horizon():
    s = OvercookedState(0, initial_state(0).world, HORIZON - 2)
    s, _, done, k = step_state(s, 4)  # "chop nothing": one stay
    assert (k, s.env_step, done) == (1, HORIZON - 1, False)
    s, _, done, _ = step_state(s, 4)
    assert (s.env_step, done) == (HORIZON, True)  # ending exactly on the horizon ends the episode
    s, _, done, _ = step_state(s, 4)
    assert done  # and it stays ended
    assert step_state(OvercookedState(0, initial_state(0).world, 0), 4, horizon=1)[2]


def test_without_a_macro_cap_episodes_end_at_the_200_step_horizon():
    env = TomatoLettuceSalad()  # random play almost never serves the dish here (§9: ~1%)
    rng = random.Random(0)
    ends = []
    for _ in range(20):
        env.reset()
        while True:
            _, _, terminated, truncated, info = env.step(rng.randrange(8))
            assert not truncated
            if terminated:
                break
        ends.append(info)
    for info in ends:
        if not info["success"]:
            assert info["env_step"] >= HORIZON > info["env_step"] - info["prim_steps"]
    assert sum(not i["success"] for i in ends) >= 15


def test_macro_cap_truncates_without_terminating():
    env = envs.make(NAMES[0], max_steps=3)
    env.reset()
    outcomes = [env.step("serve nothing")[2:4] for _ in range(3)]
    assert outcomes == [(False, False), (False, False), (False, True)]
    with pytest.raises(EpisodeFinishedError, match="reset"):
        env.step(0)
    # a success on the capped step is a termination, not a truncation
    env = envs.make(NAMES[0], max_steps=6)
    env.reset()
    for _ in range(6):
        _, _, terminated, truncated, info = env.step(env.expert_action())
    assert terminated and not truncated and info["success"]


# -- expert (§9) -------------------------------------------------------------------------------------------------
EXPERT = {
    0: dict(
        labels=[
            "pick up the tomato",
            "put the tomato on the cutting board",
            "chop the tomato",
            "pick up the tomato",
            "take the bowl",
            "serve the dish",
        ],
        steps=[2, 5, 3, 1, 10, 7],
        rewards=[-0.001990, -0.004901, 0.193050, -0.001000, -0.009562, 0.934687],
        total=1.110284,
        twosome=0.920518,
    ),
    3: dict(
        labels=[
            "pick up the tomato",
            "put the tomato on the first cutting board",
            "chop the tomato",
            "pick up the lettuce",
            "put the lettuce on the second cutting board",
            "chop the lettuce",
            "take the empty bowl",
            "put the lettuce in the bowl",
            "put the tomato in the bowl",
            "serve the dish",
        ],
        steps=[2, 5, 3, 5, 6, 3, 8, 8, 2, 3],
        rewards=[
            -0.001990,
            -0.004901,
            0.193050,
            -0.004901,
            -0.005852,
            0.193050,
            -0.007726,
            -0.007726,
            -0.001990,
            0.977130,
        ],
        total=1.328145,
        twosome=0.947656,
    ),
}


@pytest.mark.parametrize("task_id", [0, 3])
def test_expert_follows_the_fewest_step_plan_of_the_spec(task_id):
    want = EXPERT[task_id]
    env = envs.make(NAMES[task_id])
    env.reset()
    planned = env.expert_plan()
    assert (len(planned.actions), planned.total_prim_steps) == (len(want["labels"]), sum(want["steps"]))
    labels, steps, rewards, infos = [], [], [], []
    while True:
        action = env.expert_action()
        labels.append(env.observation.actions[action])
        _, reward, terminated, truncated, info = env.step(action)
        steps.append(info["prim_steps"])
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            break
    assert labels == want["labels"] and steps == want["steps"]
    assert rewards == pytest.approx(want["rewards"], abs=1e-6)
    assert sum(rewards) == pytest.approx(want["total"], abs=1e-6)
    assert terminated and infos[-1]["success"] and infos[-1]["env_step"] == sum(want["steps"])
    assert infos[-1]["twosome_return"] == pytest.approx(want["twosome"], abs=1e-6)
    # the info clock and the TWOSOME return are cumulative over primitive steps
    clock, twosome = 0, 0.0
    for info, reward in zip(infos, rewards):
        twosome += 0.99**clock * reward
        clock += info["prim_steps"]
        assert info["env_step"] == clock and info["twosome_return"] == pytest.approx(twosome, abs=1e-12)


def test_expert_task6_plan_and_its_three_food_bowl_text():
    env = TomatoLettuceOnionSalad()
    env.reset()
    p = env.expert_plan()
    assert (len(p.actions), p.total_prim_steps) == (16, 63)
    assert p.total_reward == pytest.approx(1.5065, abs=5e-5)
    prompts, total = [], 0.0
    for _ in p.actions:
        obs, reward, terminated, _, info = env.step(env.expert_action())
        prompts.append(obs.prompt)
        total += reward
    assert terminated and info["success"] and total == pytest.approx(p.total_reward, abs=1e-12)
    assert info["twosome_return"] == pytest.approx(0.9447, abs=5e-5)
    assert any("carrying a bowl containing chopped tomato, lettuce and onion in hand." in s for s in prompts)


@cache
def _fewest_steps_to_serve(task_id: int) -> dict[tuple[int, ...], int]:
    """Independent check of the planner: Bellman-Ford cost-to-go (primitive steps) over the reachable graph."""
    worlds = reachable(task_id)
    cost = {w: 10**9 for w in worlds}
    changed = True
    while changed:
        changed = False
        for w in worlds:
            for a in range(TASKS[task_id].num_actions):
                r = macro_transition(task_id, w, a)
                c = r.prim_steps + (0 if r.success else cost[r.next_world])
                if c < cost[w]:
                    cost[w], changed = c, True
    return cost


@pytest.mark.parametrize("task_id", [0, 3])
def test_expert_plans_are_shortest_and_consistent_from_any_state(task_id):
    cost = _fewest_steps_to_serve(task_id)
    worlds = sorted(cost)
    sample = worlds if task_id == 0 else random.Random(0).sample(worlds, 60)
    for world in sample:
        p = plan(task_id, world)
        assert p.total_prim_steps == cost[world]
        # executing the plan serves the dish exactly at its end, and re-planning on the way agrees with it
        node = world
        for i, a in enumerate(p.actions):
            assert plan(task_id, node).actions == p.actions[i:]
            result = macro_transition(task_id, node, a)
            assert result.success == (i == len(p.actions) - 1)
            node = result.next_world


def test_expert_recovers_after_random_play():
    env = TomatoLettuceSalad()
    rng = random.Random(3)
    for _ in range(5):
        env.reset()
        for _ in range(12):
            if env.step(rng.randrange(8))[2]:
                break
        else:
            expected = plan(3, env.state.world)
            n = 0
            while True:
                n += 1
                _, _, terminated, _, info = env.step(env.expert_action())
                if terminated:
                    break
            assert info["success"] and n == len(expected.actions)


# -- exact reference numbers (§8, §9) ----------------------------------------------------------------------------
def test_uniform_random_baseline_and_optimal_farming_value_task0():
    """Exact dynamic programming over (world, clock): random success 14.9% / mean Σ -0.139 within a 31-macro cap
    (the spec's 200k-episode Monte-Carlo figures), and the Σ-optimal value 1.5429, which farms chop rewards."""
    num_actions = TASKS[0].num_actions
    dist = {(initial_state(0).world, 0): 1.0}
    success = mean_sum = 0.0
    for _ in range(31):
        nxt: dict[tuple[tuple[int, ...], int], float] = {}
        for (world, clock), p in dist.items():
            for a in range(num_actions):
                r = macro_transition(0, world, a)
                q = p / num_actions
                mean_sum += q * r.reward
                if r.success:
                    success += q
                elif clock + r.prim_steps < HORIZON:
                    key = (r.next_world, clock + r.prim_steps)
                    nxt[key] = nxt.get(key, 0.0) + q
        dist = nxt
    assert success == pytest.approx(0.149, abs=0.002) and mean_sum == pytest.approx(-0.139, abs=0.002)

    @cache
    def best(world: tuple[int, ...], clock: int, t: int) -> float:
        if t == 31:
            return 0.0
        values = []
        for a in range(num_actions):
            r = macro_transition(0, world, a)
            done = r.success or clock + r.prim_steps >= HORIZON
            values.append(r.reward + (0.0 if done else best(r.next_world, clock + r.prim_steps, t + 1)))
        return max(values)

    assert best(initial_state(0).world, 0, 0) == pytest.approx(1.5429, abs=1e-4)


# -- bad input ---------------------------------------------------------------------------------------------------
def test_bad_actions_and_finished_episodes_are_clear_errors():
    env = envs.make(NAMES[0])
    with pytest.raises(EpisodeFinishedError, match="reset"):
        env.step(0)
    with pytest.raises(RuntimeError, match="reset"):
        env.expert_action()
    env.reset()
    with pytest.raises(ValueError, match=r"out of range 0..4; admissible actions are \['pick up the tomato'"):
        env.step(5)
    with pytest.raises(ValueError, match="unknown action text 'serve the dish'.*admissible actions are"):
        env.step("serve the dish")  # a label of another state ("serve nothing" here)
    for action in env.expert_plan().actions:
        env.step(action)
    with pytest.raises(EpisodeFinishedError, match="call reset"):
        env.step(0)
    with pytest.raises(RuntimeError, match="finished"):
        env.expert_action()


def test_bad_states_and_options_are_clear_errors():
    env = TomatoLettuceSalad()
    with pytest.raises(ValueError, match="13 ints"):
        env.set_state([0, 5, 0, 6, 5, 1, 4])
    with pytest.raises(ValueError, match="0..6"):
        env.set_state([0, 5, 0, 1, 6, 0, 2, 6, 0, 6, 5, 1, 7])
    with pytest.raises(ValueError, match="inner 5×5 floor"):
        env.set_state([0, 5, 0, 1, 6, 0, 2, 6, 0, 6, 5, 0, 4])
    with pytest.raises(ValueError, match="chop count"):
        env.set_state([0, 5, 4, 1, 6, 0, 2, 6, 0, 6, 5, 1, 4])
    with pytest.raises(ValueError, match="must be ints"):
        env.set_state([0, 5, 0, 1, 6, 0, 2, 6, 0, 6, 5, 1, 4.0])
    with pytest.raises(ValueError, match="task 0"):
        env.set_state(initial_state(0))
    with pytest.raises(ValueError, match="env_step"):
        env.set_state(initial_state(3).world, env_step=-1)
    with pytest.raises(ValueError, match=r"macro action must be in 0..7"):
        step_state(initial_state(3), 8)
    with pytest.raises(ValueError, match="unknown task id 4; supported task ids are"):
        initial_state(4)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        TomatoSalad(max_steps=0)
    with pytest.raises(ValueError, match="horizon"):
        TomatoSalad(horizon=0)
    with pytest.raises(ValueError, match="26 entries"):
        obs2text([0] * 18, 3)
    # a state whose dish is already served starts a finished episode
    env.set_state([3, 0, 3, 3, 0, 3, 2, 6, 0, 3, 0, 3, 1])
    with pytest.raises(EpisodeFinishedError):
        env.step(0)
    with pytest.raises(ValueError, match="already served"):
        plan(3, (3, 0, 3, 3, 0, 3, 2, 6, 0, 3, 0, 3, 1))


# -- speed -------------------------------------------------------------------------------------------------------
def test_env_steps_are_fast():
    """Warm caches make a macro step a few dict look-ups; require >= 20k macro steps/s (measured ~200k)."""
    env = TomatoLettuceSalad()
    rng = random.Random(0)
    actions = [rng.randrange(8) for _ in range(20_000)]
    best = 0.0
    for _ in range(3):  # best of three: the machine is shared
        env.reset()
        t0 = time.perf_counter()
        for a in actions:
            if env.step(a)[2]:
                env.reset()
        best = max(best, len(actions) / (time.perf_counter() - t0))
    assert best >= 20_000, f"{best:.0f} macro steps/s"
