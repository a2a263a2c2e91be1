"""envs.history.WithHistory: the last H (state, action) pairs ride in obs.history and reach the prompt."""

import pytest

import envs
from envs.history import WithHistory
from prior_rl.prior.prompts import PromptBuilder


def _env(length=2):
    return WithHistory(envs.make("overcooked-tomato-salad"), length)


def test_history_keeps_the_last_h_steps_and_resets():
    env = _env(2)
    obs, _ = env.reset(seed=0)
    assert obs.history == ()
    seen = []
    for i in range(3):
        seen.append((obs.state, obs.actions[i % len(obs.actions)]))
        obs, *_ = env.step(i % len(obs.actions))
        assert obs.history == tuple(seen[-2:])
        assert env.observation is obs
    obs, _ = env.reset(seed=1)
    assert obs.history == ()


def test_history_accepts_action_texts_and_rejects_bad_actions_without_recording():
    env = _env(3)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="admissible"):
        env.step("fly to the moon")
    assert env.observation.history == ()
    state, text = obs.state, obs.actions[-1]
    obs, *_ = env.step(text)
    assert obs.history == ((state, text),)
    assert env.expert_action() in range(len(obs.actions))  # the wrapped env's methods pass through


def test_history_appears_in_the_paper_prompt():
    env = _env(5)
    obs, _ = env.reset(seed=0)
    first = PromptBuilder()(obs)
    state, action = obs.state, obs.actions[0]
    obs, *_ = env.step(0)
    second = PromptBuilder()(obs)
    assert "History:\n\nCurrent Observation" in first
    assert f"History:\nObservation: {state}. Action: {action}.\nCurrent Observation: " in second


def test_bad_history_length_is_a_clear_error():
    with pytest.raises(ValueError, match="history length"):
        WithHistory(envs.make("overcooked-tomato-salad"), 0)


def test_train_config_history_wraps_the_env():
    from prior_rl.run import TrainConfig, make_env

    env = make_env(TrainConfig(history=3, progress=False))
    assert isinstance(env, WithHistory) and env.length == 3
    with pytest.raises(ValueError, match="history"):
        TrainConfig(history=-1)


def test_with_transcript_records_the_whole_episode_and_marks_it():
    from envs.history import WithTranscript

    env = WithTranscript(envs.make("overcooked-tomato-lettuce-salad"))
    obs, _ = env.reset(seed=0)
    assert obs.history == () and obs.extra["transcript_steps"] == 0
    seen = []
    for i in range(8):  # longer than any WithHistory length used here
        seen.append((obs.state, obs.actions[i % len(obs.actions)]))
        obs, *_ = env.step(i % len(obs.actions))
        assert obs.history == tuple(seen) and obs.extra["transcript_steps"] == len(seen)
        assert "map" not in obs.extra
    plain, _ = envs.make("overcooked-tomato-lettuce-salad").reset()
    assert "transcript_steps" not in plain.extra  # the shared observation's extra is copied, never mutated
    obs, _ = env.reset(seed=1)
    assert obs.history == () and obs.extra["transcript_steps"] == 0


def test_with_transcript_carries_the_frozen_lake_map():
    from envs.history import WithTranscript

    env = WithTranscript(envs.make("frozen-lake", map_name="8x8"))
    obs, _ = env.reset(seed=0)
    assert obs.extra["map"] == tuple(env.desc) and len(obs.extra["map"]) == 8
    assert obs.extra["position"] == 0  # the env's own extra survives
