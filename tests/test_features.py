"""Feature strings (exact, per style) and candidate feature arrays."""

from __future__ import annotations

import numpy as np
import pytest

from envs.base import TextObservation
from envs.frozen_lake import FrozenLake
from prior_rl.bridge.features import (
    FEATURE_STYLES,
    batch_candidate_features,
    candidate_features,
    candidate_texts,
    feature_text,
)
from prior_rl.llm.encoder import TextEncoder, load_encoder

OBS = TextObservation(
    prompt="You are a chef. ... Your next action is:",
    actions=("Chop", "Pick up the tomato", "Serve"),
    task="make a tomato salad.",
    state="There is a fresh tomato in the room",
)


def test_paper_style_is_the_reference_overcooked_string():
    # two spaces before "Action", a trailing period: byte-for-byte the reference's online Overcooked feature
    assert feature_text(OBS, "Chop") == "Observation: There is a fresh tomato in the room,  Action: Chop."
    assert feature_text(OBS, "Chop", style="paper") == feature_text(OBS, "Chop")


def test_task_style():
    assert (
        feature_text(OBS, "Serve", style="task")
        == "make a tomato salad. Observation: There is a fresh tomato in the room Action: Serve"
    )


def test_paper_alfworld_style():
    obs = TextObservation(
        prompt="p", actions=("open fridge 1",), task="put some apple in fridge.", state="You see a fridge 1."
    )
    assert (
        feature_text(obs, "open fridge 1", style="paper_alfworld")
        == "Task: put some apple in fridge.,  Action: open fridge 1, for Observation: You see a fridge 1.,"
    )
    prefixed = TextObservation(prompt="p", actions=("look",), task="Task: put some apple in fridge.", state="s")
    assert feature_text(prefixed, "look", style="paper_alfworld").startswith("Task: put some apple in fridge.,  Action")


def test_feature_text_errors():
    with pytest.raises(ValueError, match="valid"):
        feature_text(OBS, "Chop", style="fancy")
    with pytest.raises(TypeError, match="action text"):
        feature_text(OBS, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="obs.state is empty"):
        feature_text(TextObservation(prompt="p", actions=("a",), task="t"), "a")
    assert set(FEATURE_STYLES) == {"paper", "paper_alfworld", "task"}


def test_candidate_texts_order_duplicates_and_range():
    assert candidate_texts(OBS, [2, 0, 2]) == [
        feature_text(OBS, "Serve"),
        feature_text(OBS, "Chop"),
        feature_text(OBS, "Serve"),
    ]
    assert candidate_texts(OBS) == [feature_text(OBS, a) for a in OBS.actions]
    with pytest.raises(IndexError, match="out of range"):
        candidate_texts(OBS, [3])
    with pytest.raises(TypeError):
        candidate_texts(OBS, ["Chop"])  # type: ignore[list-item]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return load_encoder("minilm", batch_size=16)


def test_candidate_features_rows_follow_indices(encoder):
    feats = candidate_features(encoder, OBS, [1, 2, 1], style="task")
    assert feats.shape == (3, 384) and feats.dtype == np.float32
    single = encoder.encode([feature_text(OBS, "Pick up the tomato", style="task")])[0]
    np.testing.assert_allclose(feats[0], single, atol=1e-6)
    np.testing.assert_array_equal(feats[0], feats[2])
    assert not np.allclose(feats[0], feats[1])


def test_batch_candidate_features_padding_and_mask(encoder):
    env = FrozenLake()
    obs2, _ = env.reset(seed=0)
    observations = [OBS, obs2]
    feats, mask = batch_candidate_features(encoder, observations, [[0, 2], None])
    assert feats.shape == (2, 4, 384) and mask.shape == (2, 4)
    np.testing.assert_array_equal(mask, [[True, True, False, False], [True, True, True, True]])
    assert np.all(feats[0, 2:] == 0)
    np.testing.assert_allclose(feats[0, :2], candidate_features(encoder, OBS, [0, 2]), atol=1e-6)
    np.testing.assert_allclose(feats[1], candidate_features(encoder, obs2), atol=1e-6)

    feats8, mask8 = batch_candidate_features(encoder, observations, pad_to=8)
    assert feats8.shape == (2, 8, 384) and mask8.sum(axis=1).tolist() == [3, 4]
    with pytest.raises(ValueError, match="pad_to"):
        batch_candidate_features(encoder, observations, pad_to=2)
    with pytest.raises(ValueError, match="index lists"):
        batch_candidate_features(encoder, observations, [[0]])
    empty, empty_mask = batch_candidate_features(encoder, [])
    assert empty.shape == (0, 0, 384) and empty_mask.shape == (0, 0)
