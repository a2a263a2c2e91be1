"""The protocol every text environment follows (envs.base), checked on each registered pure-Python env."""

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.gym_wrapper import GYM_IDS

# ALFWorld runs a real engine and has its own protocol tests (tests/test_alfworld*.py).
FAST_ENVS = [n for n in envs.names() if n != "alfworld-pick"]


def test_registry_lists_every_env_and_rejects_unknown_names():
    assert {"overcooked-tomato-salad", "overcooked-tomato-lettuce-salad",
            "overcooked-tomato-lettuce-onion-salad", "frozen-lake", "alfworld-pick"} <= set(envs.names())
    with pytest.raises(ValueError, match="valid names are: .*frozen-lake"):
        envs.make("overcooked-pasta")


@pytest.mark.parametrize("name", FAST_ENVS)
def test_reset_step_contract(name):
    env = envs.make(name)
    obs, info = env.reset(seed=0)
    assert isinstance(obs, envs.TextObservation)
    assert obs.prompt and obs.task and obs.state and len(obs.actions) >= 2
    assert all(isinstance(a, str) and a for a in obs.actions)
    assert info["success"] is False
    # by text and by index give the same transition from the same state
    env2 = envs.make(name)
    env2.reset(seed=0)
    out_text = env.step(obs.actions[1])
    out_index = env2.step(1)
    assert out_text[0] == out_index[0] and out_text[1:4] == out_index[1:4]
    obs2, reward, terminated, truncated, info = out_text
    assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    assert "success" in info


@pytest.mark.parametrize("name", FAST_ENVS)
def test_bad_actions_name_the_admissible_ones(name):
    env = envs.make(name)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"out of range.*admissible actions are \["):
        env.step(len(obs.actions))
    with pytest.raises(ValueError, match=r"out of range"):
        env.step(-1)
    with pytest.raises(ValueError, match=r"unknown action text 'dance'.*admissible actions are"):
        env.step("dance")
    with pytest.raises(ValueError, match="int index or one of the admissible texts"):
        env.step(1.5)
    # a rejected action loses nothing: the episode continues from the same state
    assert env.observation == obs
    env.step(0)


@pytest.mark.parametrize("name", FAST_ENVS)
def test_expert_solves_and_finished_episode_refuses_steps(name):
    env = envs.make(name)
    env.reset(seed=0)
    total, info, steps = 0.0, {}, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(env.expert_action())
        total += reward
        steps += 1
        if terminated or truncated:
            break
    assert terminated and info["success"], f"{name}: expert failed after {steps} steps"
    with pytest.raises(envs.EpisodeFinishedError, match="call reset"):
        env.step(0)
    env.reset(seed=1)  # and reset makes it usable again
    env.step(0)


def test_step_before_reset_is_a_clear_error():
    env = envs.make("frozen-lake")
    with pytest.raises(envs.EpisodeFinishedError, match="reset"):
        env.step(0)


@pytest.mark.parametrize("name", FAST_ENVS)
def test_episode_step_cap_truncates_without_terminating(name):
    option = "max_episode_steps" if name == "frozen-lake" else "max_macro_steps"
    env = envs.make(name, **{option: 2})
    env.reset(seed=0)
    *_, terminated, truncated, _ = env.step(env.action_index(env.observation.actions[-1]))
    assert not terminated and not truncated
    *_, terminated, truncated, info = env.step(env.action_index(env.observation.actions[-1]))
    assert truncated and not terminated and not info["success"]
    with pytest.raises(envs.EpisodeFinishedError):
        env.step(0)


def test_vector_env_stacks_arrays_and_autoresets():
    vec = envs.VectorEnv("frozen-lake", 3)
    observations, infos = vec.reset(seed=7)
    assert len(observations) == 3 and len(infos) == 3
    # copy 0 walks into the hole at (1,1) via down, right; copies 1, 2 wander on safe ice
    step = vec.step([1, 3, 0])
    assert step.rewards.shape == (3,) and step.rewards.dtype == np.float32
    assert step.terminated.dtype == bool and step.num_actions.tolist() == [4, 4, 4]
    step = vec.step(np.array([2, 3, 0]))
    assert step.terminated.tolist() == [True, False, False]
    assert step.final_observations[0] is not None and "hole" in step.final_observations[0].state
    assert step.final_observations[1] is None
    assert step.observations[0].state.startswith("You are at row 0, column 0")  # auto-reset
    assert len(step.prompts) == 3 and step.actions[0] == envs.make("frozen-lake").reset()[0].actions
    with pytest.raises(ValueError, match="expected 3 actions"):
        vec.step([0, 0])


def test_vector_env_is_reproducible_from_the_seed():
    def run(seed):
        vec = envs.VectorEnv("frozen-lake", 2, is_slippery=True)
        vec.reset(seed=seed)
        trace = []
        for _ in range(30):
            step = vec.step([2, 1])
            trace.append([o.extra["position"] for o in step.observations])
        return trace

    assert run(3) == run(3)
    assert run(3) != run(4)


@pytest.mark.parametrize("gym_id", [g for g, (n, _) in GYM_IDS.items() if n in FAST_ENVS])
def test_gymnasium_ids(gym_id):
    env = gym.make(gym_id)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"prompt", "task", "state", "actions"}
    assert env.observation_space.contains(obs)
    assert len(obs["actions"]) <= env.action_space.n
    obs, reward, terminated, truncated, info = env.step(0)
    assert env.observation_space.contains(obs) and "success" in info
