"""The one place that decides which string is embedded for a (state, action) pair.

The Q-network scores one feature vector per candidate action, ``Q(φ(s, a))``, where φ embeds a string built from
the observation and the action text (docs/method.md §3.5, ``--action_normalize True``). Styles:

* ``"paper"``: the reference's online Overcooked string ``"Observation: {state},  Action: {action}."`` (two spaces
  before "Action", exactly as in the released code).
* ``"paper_alfworld"``: the reference's ALFWorld string ``"Task: {task},  Action: {action}, for Observation: {state},"``
  (the reference's task text is "Task: put X in/on Y."; "Task: " is not doubled if ``obs.task`` already has it).
* ``"task"``: ``"{task} Observation: {state} Action: {action}"``, for ALFWorld and goal-generalisation experiments
  where the goal varies between episodes and must be part of the feature.

``state`` is ``obs.state`` (the observation text without task framing), never the full LLM prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from envs.base import TextObservation

if TYPE_CHECKING:
    from prior_rl.llm.encoder import TextEncoder

__all__ = ["FEATURE_STYLES", "batch_candidate_features", "candidate_features", "candidate_texts", "feature_text"]

FEATURE_STYLES = ("paper", "paper_alfworld", "task")


def feature_text(obs: TextObservation, action: str, style: str = "paper") -> str:
    """The string embedded for ``(obs, action)`` under ``style`` (see the module docstring)."""
    if not isinstance(action, str):
        raise TypeError(f"action must be the action text, got {type(action).__name__} {action!r}")
    if not obs.state:
        raise ValueError(
            "obs.state is empty: the environment must fill TextObservation.state (the observation text "
            "without task framing) for Q features"
        )
    if style == "paper":
        return f"Observation: {obs.state},  Action: {action}."
    if style == "paper_alfworld":
        task = obs.task if obs.task.startswith("Task:") else f"Task: {obs.task}"
        return f"{task},  Action: {action}, for Observation: {obs.state},"
    if style == "task":
        return f"{obs.task} Observation: {obs.state} Action: {action}"
    raise ValueError(f"unknown feature style {style!r}; valid: {list(FEATURE_STYLES)}")


def _indices(obs: TextObservation, action_indices: Sequence[int] | None) -> list[int]:
    if action_indices is None:
        return list(range(len(obs.actions)))
    out = []
    for i in action_indices:
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise TypeError(f"action indices must be ints, got {type(i).__name__} {i!r}")
        i = int(i.__index__())
        if not 0 <= i < len(obs.actions):
            raise IndexError(f"action index {i} is out of range 0..{len(obs.actions) - 1} for actions {obs.actions}")
        out.append(i)
    return out


def candidate_texts(
    obs: TextObservation, action_indices: Sequence[int] | None = None, style: str = "paper"
) -> list[str]:
    """One feature string per candidate index (all admissible actions when ``action_indices`` is None).

    Duplicated indices give duplicated strings: the reference keeps duplicate LLM samples as separate candidates.
    """
    return [feature_text(obs, obs.actions[i], style) for i in _indices(obs, action_indices)]


def candidate_features(
    encoder: TextEncoder,
    obs: TextObservation,
    action_indices: Sequence[int] | None = None,
    style: str = "paper",
) -> np.ndarray:
    """Features of the candidates at one observation: ``[k, D]`` float32, row j ↔ ``action_indices[j]``."""
    return encoder.encode(candidate_texts(obs, action_indices, style))


def batch_candidate_features(
    encoder: TextEncoder,
    observations: Sequence[TextObservation],
    action_indices: Sequence[Sequence[int] | None] | None = None,
    style: str = "paper",
    pad_to: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate features for many observations in one encoder call, padded to a fixed candidate count.

    observations:   N observations.
    action_indices: per observation, the candidate indices (None → all admissible actions);
                    None → all admissible actions for every observation.
    pad_to:         K, the padded candidate count (None → the largest k_n); a larger k_n raises ``ValueError``.
    Returns ``(features [N, K, D] float32, mask [N, K] bool)``; padded slots are zero and ``mask`` False.
    """
    if action_indices is None:
        action_indices = [None] * len(observations)
    if len(action_indices) != len(observations):
        raise ValueError(f"{len(observations)} observations but {len(action_indices)} index lists")
    per_obs = [candidate_texts(o, idx, style) for o, idx in zip(observations, action_indices)]
    counts = [len(t) for t in per_obs]
    k = max(counts, default=0) if pad_to is None else int(pad_to)
    if counts and max(counts) > k:
        raise ValueError(f"an observation has {max(counts)} candidates, more than pad_to={k}")
    flat = encoder.encode([t for texts in per_obs for t in texts])  # one call: shared batches, one cache pass
    feats = np.zeros((len(observations), k, encoder.dim), np.float32)
    mask = np.zeros((len(observations), k), bool)
    start = 0
    for n, c in enumerate(counts):
        feats[n, :c] = flat[start : start + c]
        mask[n, :c] = True
        start += c
    return feats, mask
