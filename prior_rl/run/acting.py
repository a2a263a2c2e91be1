"""The one acting path of every loop, evaluation and experiment: observations → candidates → feature rows → the
agent's pure ``act`` with the parameters passed in → action indices.

``Policy.act(agent_state, key, observations, rng)`` acts for a batch; ``Policy.bind(agent_state)`` is the
``(rng, observations) -> actions`` callable that evaluation plays episodes with (greedy, its jax key drawn from the
episode generator). Three kinds share it: ``"q"`` (DQN-Prior, DQN, CQL-Prior, CQL: Q chooses a candidate slot),
``"ppo"`` (PPO, PPO-Prior: a policy over the admissible set, with the prior's log-probs for PPO-Prior) and
``"llm"`` (the prior itself: its argmax, or a draw from it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from envs.base import TextObservation
from prior_rl.bridge.candidates import AllActions, CandidateSource, Featurizer, PriorCandidates, pad_width

KINDS = ("q", "ppo", "llm")


class Explore(NamedTuple):
    """How a Q policy explores over its candidates: ε-greedy, then argmax (``inv_temperature`` None) or
    softmax(inv_temperature · Q). PPO samples from π unless ``greedy``."""

    epsilon: float = 0.0
    inv_temperature: Optional[float] = None
    greedy: bool = True


GREEDY = Explore()


class Candidates(NamedTuple):
    """Per observation: candidate action indices [N, K] int32 into ``obs.actions``, their mask [N, K] bool, feature
    rows [N, K] int32 (None for the LLM policy) and the prior's log-probs [N, K] (PPO-Prior only, else None)."""

    indices: np.ndarray
    mask: np.ndarray
    rows: Optional[np.ndarray] = None
    prior_logp: Optional[np.ndarray] = None


class Acted(NamedTuple):
    """actions [N] (indices into each ``obs.actions``), slots [N] (the chosen candidate slot), the candidates,
    and for PPO the action log-probs and values [N] (None otherwise)."""

    actions: np.ndarray
    slots: np.ndarray
    candidates: Candidates
    logp: Optional[jax.Array] = None
    value: Optional[jax.Array] = None


def padded_logprobs(prior: Any, observations: Sequence[TextObservation], k: int) -> np.ndarray:
    """log p_LLM over each admissible set, padded with -1e9 to [N, k]."""
    out = np.full((len(observations), k), -1e9, np.float32)
    for n, lp in enumerate(prior.logprobs(list(observations))):
        out[n, : len(lp)] = lp
    return out


class Policy:
    """What acting needs besides parameters: the candidate source, the featurizer, the agent and the prior.

    kind "q": ``source`` gives k prior samples (DQN-Prior, CQL-Prior) or every admissible action (DQN, CQL);
    kind "ppo": every admissible action, with ``prior_logp`` when ``use_prior_logp``; kind "llm": the prior's argmax
    (or a draw, ``sample``). The featurizer's table grows as new strings are seen; parameters never live here.
    """

    def __init__(
        self,
        kind: str,
        source: Optional[CandidateSource] = None,
        featurizer: Optional[Featurizer] = None,
        agent: Any = None,
        prior: Any = None,
        *,
        use_prior_logp: bool = False,
        sample: bool = False,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown policy kind {kind!r}; valid kinds are: {', '.join(KINDS)}")
        if kind != "llm" and (source is None or featurizer is None or agent is None):
            raise ValueError(f"a {kind!r} policy needs a candidate source, a featurizer and an agent")
        if kind == "llm" and prior is None:
            raise ValueError("the 'llm' policy needs a prior")
        self.kind, self.source, self.featurizer, self.agent, self.prior = kind, source, featurizer, agent, prior
        self.use_prior_logp, self.sample = use_prior_logp, sample

    @property
    def k(self) -> int:
        return self.source.k if self.source is not None else 0

    def candidates(self, rng: np.random.Generator, observations: Sequence[TextObservation]) -> Candidates:
        """Candidates for ``observations``; prior samples draw their seed from ``rng``."""
        idx, mask = self.source(rng, observations)
        rows = self.featurizer.rows(observations, idx)
        prior_logp = padded_logprobs(self.prior, observations, self.k) if self.use_prior_logp else None
        return Candidates(idx, mask, rows, prior_logp)

    def act(
        self,
        agent_state: Any,
        key: Optional[jax.Array],
        observations: Sequence[TextObservation],
        rng: np.random.Generator,
        *,
        explore: Explore = GREEDY,
        candidates: Optional[Candidates] = None,
    ) -> Acted:
        """Act for a batch of observations with the parameters in ``agent_state``.

        key: the agent's jax key; None draws one from ``rng`` (evaluation). ``candidates``: reuse ones computed
        already (the value loop computes the next state's candidates for the TD target and acts on them).
        """
        if self.kind == "llm":
            return self._act_llm(rng, observations)
        c = candidates if candidates is not None else self.candidates(rng, observations)
        if key is None:
            key = jax.random.key(int(rng.integers(2**31)))
        feats = self.featurizer.device_table()[c.rows]
        if self.kind == "q":
            slots = np.asarray(
                self.agent.act(agent_state, key, feats, jnp.asarray(c.mask), explore.epsilon, explore.inv_temperature)
            )
            return Acted(c.indices[np.arange(len(observations)), slots], slots, c)
        prior_logp = jnp.asarray(c.prior_logp) if c.prior_logp is not None else None
        slots, logp, value = self.agent.act(
            agent_state, key, feats, jnp.asarray(c.mask), prior_logp, greedy=explore.greedy
        )
        slots = np.asarray(slots)
        return Acted(c.indices[np.arange(len(observations)), slots], slots, c, logp, value)

    def _act_llm(self, rng: np.random.Generator, observations: Sequence[TextObservation]) -> Acted:
        out = []
        for lp in self.prior.logprobs(list(observations)):
            if self.sample:
                p = np.exp(lp - lp.max())
                out.append(int(rng.choice(len(p), p=p / p.sum())))
            else:
                out.append(int(np.argmax(lp)))
        actions = np.array(out)
        return Acted(actions, actions, Candidates(actions[:, None], np.ones((len(actions), 1), bool)))

    def bind(self, agent_state: Any) -> Callable[[np.random.Generator, Sequence[TextObservation]], np.ndarray]:
        """``(rng, observations) -> actions``: greedy acting with these parameters (what evaluation plays)."""
        return lambda rng, observations: self.act(agent_state, None, observations, rng).actions


def make_policy(
    kind: str,
    config: Any,
    agent: Any = None,
    prior: Any = None,
    featurizer: Any = None,
    *,
    prior_candidates: bool = False,
    sample: bool = False,
) -> Policy:
    """A policy for a run: k prior candidates when ``prior_candidates`` (DQN-Prior, CQL-Prior), else every
    admissible action padded to ``config.max_candidates`` slots; PPO policies read the prior's log-probs when a
    prior is given."""
    if kind == "llm":
        return Policy("llm", prior=prior, sample=sample)
    source = (
        PriorCandidates(prior, config.k, config.prior_mode)
        if prior_candidates
        else AllActions(pad_width(config.max_candidates))
    )
    return Policy(kind, source, featurizer, agent, prior, use_prior_logp=(kind == "ppo" and prior is not None))
