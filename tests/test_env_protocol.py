"""The protocol every text environment follows (envs.base), checked on each registered pure-Python env; the
uniform ``max_steps`` cap on every registered env (ALFWorld included when its engine is installed); the typed
observation fields that prompts and priors require."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.gym_wrapper import GYM_IDS

# ALFWorld runs a real engine and has its own protocol tests (tests/test_alfworld*.py).
FAST_ENVS = [n for n in envs.names() if n != "alfworld-pick"]


def test_registry_lists_every_env_and_rejects_unknown_names():
    assert {
        "overcooked-tomato-salad",
        "overcooked-tomato-lettuce-salad",
        "overcooked-tomato-lettuce-onion-salad",
        "frozen-lake",
        "alfworld-pick",
    } <= set(envs.names())
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
    env = envs.make(name, max_steps=2)
    env.reset(seed=0)
    *_, terminated, truncated, _ = env.step(env.action_index(env.observation.actions[-1]))
    assert not terminated and not truncated
    *_, terminated, truncated, info = env.step(env.action_index(env.observation.actions[-1]))
    assert truncated and not terminated and not info["success"]
    with pytest.raises(envs.EpisodeFinishedError):
        env.step(0)


def _make_capped(name, max_steps):
    if name == "alfworld-pick":
        pytest.importorskip("envs.alfworld", reason="the ALFWorld engine is not installed")
        return envs.make(name, split="train", data="generated", max_steps=max_steps)
    return envs.make(name, max_steps=max_steps)


@pytest.mark.parametrize("name", envs.names())
def test_every_env_takes_max_steps_and_truncates_there(name):
    env = _make_capped(name, 3)
    try:
        assert env.max_steps == 3
        obs, _ = env.reset(seed=0)
        outcomes = []
        for _ in range(3):
            # "look" (ALFWorld) or the last action (Overcooked "chop nothing", Frozen Lake "move up" at the edge)
            action = "look" if "look" in obs.actions else obs.actions[-1]
            obs, _, terminated, truncated, info = env.step(action)
            outcomes.append((terminated, truncated))
        assert outcomes == [(False, False), (False, False), (False, True)]
        assert info["episode_steps"] == 3 and not info["success"]
        with pytest.raises(envs.EpisodeFinishedError):
            env.step(0)
    finally:
        env.close()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_max_steps_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="max_steps must be a positive integer or None"):
        envs.make("frozen-lake", max_steps=bad)


def test_max_steps_none_and_the_old_names_are_gone():
    assert envs.make("frozen-lake").max_steps == 20  # each env keeps its own default cap
    assert envs.make("overcooked-tomato-salad").max_steps is None
    assert envs.make("frozen-lake", max_steps=None).max_steps is None
    for name, old in (("overcooked-tomato-salad", "max_macro_steps"), ("frozen-lake", "max_episode_steps")):
        with pytest.raises(TypeError, match=old):  # one option for every env, no per-env spelling
            envs.make(name, **{old: 4})
    assert envs.VectorEnv("overcooked-tomato-lettuce-salad", 2, max_steps=5).envs[1].max_steps == 5


def test_prompt_family_missing_its_required_field_raises_naming_it():
    from prior_rl.prior import synthetic
    from prior_rl.prior.prompts import PromptBuilder

    obs, _ = envs.make("overcooked-tomato-salad").reset(seed=0)
    assert obs.family == "overcooked" and obs.action_prompt and PromptBuilder()(obs)
    with pytest.raises(ValueError, match=r"action_prompt.*family 'overcooked'"):
        PromptBuilder()(dataclasses.replace(obs, action_prompt=None))
    lake, _ = envs.make("frozen-lake").reset(seed=0)
    with pytest.raises(ValueError, match=r"action_prompt.*family 'frozen-lake'"):
        PromptBuilder(style="overcooked")(lake)  # a forced family checks its fields too
    with pytest.raises(ValueError, match=r"expert_action.*family 'frozen-lake'"):
        synthetic.ExpertMixturePrior(0.5).logprobs([lake])


def test_typed_fields_are_refused_in_extra():
    with pytest.raises(ValueError, match=r"'family', 'action_prompt' are fields of TextObservation.*family=\.\.\."):
        envs.TextObservation(
            prompt="p", actions=("a",), task="t", extra={"family": "overcooked", "action_prompt": "{}"}
        )
    obs = envs.TextObservation(prompt="p", actions=("a",), task="t", history=[("s", "a")], extra={"position": 1})
    assert obs.history == (("s", "a"),) and hash(obs) == hash(dataclasses.replace(obs, extra={}))
    assert obs != dataclasses.replace(obs, history=())  # the typed fields count in equality; extra does not


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
