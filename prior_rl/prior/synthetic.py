"""A synthetic action prior of known quality, to measure what a stronger LLM would change.

The embedded 135M model is a weak prior on ALFWorld (mean p(expert) 0.11 along expert trajectories,
``benchmarks/RESULTS.md``). No larger model can be had here, so this prior stands in for one with a chosen quality:

    p(a | s) = p_expert · [a = expert(s)] + (1 − p_expert) / |A(s)|

over the admissible set A(s), where expert(s) is the environment's expert action, read from
``obs.expert_action`` (an index into ``obs.actions``; ``alfworld-pick`` fills it, and an observation without it
raises ``ValueError``; ``envs.base.NO_EXPERT_ACTION`` = no admissible expert action here, e.g. the goal is reached:
then p is uniform). It answers "how good must the prior be for DQN-Prior
to learn here?", not "does an LLM prior help?": it is not an LLM, and its mistakes are uniform, whereas an LLM's
are correlated with the text. Select it with ``--llm expert-mix:P`` (``prior_rl.run.ModelStore.prior``).

It offers the two methods the training loop uses from :class:`prior_rl.prior.ActionPrior`: :meth:`logprobs` and
:meth:`candidates` (mode "exact" only: there is no text to generate). It makes no LLM calls and has no cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envs.base import NO_EXPERT_ACTION, TextObservation

PREFIX = "expert-mix:"


def parse_spec(spec: str) -> float | None:
    """``"expert-mix:0.3"`` -> 0.3; any other spec -> None. A malformed probability is a clear error."""
    if not spec.startswith(PREFIX):
        return None
    text = spec[len(PREFIX) :]
    try:
        p = float(text)
    except ValueError:
        p = float("nan")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"--llm {spec!r}: the expert probability must be a number in [0, 1], e.g. expert-mix:0.3")
    return p


class ExpertMixturePrior:
    """p_expert on the expert's command, the rest uniform over the admissible set (see the module docstring)."""

    cache = None  # no LLM calls to save

    def __init__(self, p_expert: float, temperature: float = 1.0):
        if not 0.0 <= p_expert <= 1.0:
            raise ValueError(f"p_expert must be in [0, 1], got {p_expert}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.p_expert, self.temperature = float(p_expert), float(temperature)
        self.model_key = f"{PREFIX}{p_expert:g}"

    def _probs(self, obs: TextObservation) -> np.ndarray:
        expert = obs.expert_action
        if expert is None:
            raise ValueError(
                f"the {self.model_key} prior needs TextObservation.expert_action (the index of the environment's "
                f"expert action); this observation (family {obs.family!r}) has none. Use an environment that "
                f"provides it (alfworld-pick) or a real LLM prior."
            )
        n = len(obs.actions)
        if n == 0:
            raise ValueError("observation has no admissible actions")
        if isinstance(expert, bool) or not isinstance(expert, (int, np.integer)) or not -1 <= expert < n:
            raise ValueError(
                f"TextObservation.expert_action must be an index in 0..{n - 1} or NO_EXPERT_ACTION (-1), got {expert!r}"
            )
        p = np.full(n, (1.0 - self.p_expert) / n, np.float64)
        if expert != NO_EXPERT_ACTION:
            p[expert] += self.p_expert
        else:  # no admissible expert action (goal reached, or the planner's command is not admissible): uniform
            p[:] = 1.0 / n
        if self.temperature != 1.0:
            p = p ** (1.0 / self.temperature)
            p /= p.sum()
        return p

    def logprobs(self, observations: Sequence[TextObservation]) -> list[np.ndarray]:
        """Per observation, ``float32 [len(obs.actions)]`` log-probabilities."""
        with np.errstate(divide="ignore"):
            return [np.log(self._probs(obs)).astype(np.float32) for obs in observations]

    def candidates(self, rng: int, observations: Sequence[TextObservation], k: int, mode: str = "exact") -> np.ndarray:
        """``int32 [B, k]`` action indices drawn from the mixture (duplicates kept); ``rng`` is an int seed."""
        if mode != "exact":
            raise ValueError(f"the {self.model_key} prior has no text to generate: use prior mode 'exact'")
        if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)):
            raise TypeError(f"the {self.model_key} prior takes an int seed, got {type(rng).__name__}")
        gen = np.random.default_rng(int(rng))
        return np.array(
            [gen.choice(len(obs.actions), size=int(k), p=self._probs(obs)) for obs in observations], np.int32
        )
