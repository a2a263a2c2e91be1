"""Candidate actions and their features: the bridge from texts (env → prompt → prior) to arrays (features → Q).

A :class:`CandidateSource` picks, for each observation, the candidate action indices the Q-function chooses among:
k samples from the LLM prior (DQN-Prior / CQL-Prior), or every admissible action (DQN / CQL). A
:class:`Featurizer` turns (observation, action) pairs into rows of a growing feature table, so the replay buffer
stores small int32 rows instead of feature vectors, and each distinct string is encoded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import jax.numpy as jnp
import numpy as np

from envs.base import TextObservation
from prior_rl.bridge.features import candidate_texts
from prior_rl.replay import FeatureTable


def pad_width(n: int, multiple: int = 8) -> int:
    """Round a candidate count up to a multiple, so varying admissible-set sizes reuse compiled shapes."""
    return max(multiple, -(-int(n) // multiple) * multiple)


class CandidateSource(Protocol):
    """``(rng, observations) -> (indices [N, K] int32, mask [N, K] bool)``; ``k`` = K, fixed for a source."""

    k: int

    def __call__(
        self, rng: np.random.Generator, observations: Sequence[TextObservation]
    ) -> tuple[np.ndarray, np.ndarray]: ...


class AllActions:
    """Every admissible action, padded to ``k`` slots (DQN, CQL). More admissible actions than ``k`` raise."""

    def __init__(self, k: int):
        self.k = int(k)

    def __call__(self, rng, observations):
        idx = np.zeros((len(observations), self.k), np.int32)
        mask = np.zeros((len(observations), self.k), bool)
        for n, obs in enumerate(observations):
            m = len(obs.actions)
            if m > self.k:
                raise ValueError(
                    f"an observation has {m} admissible actions, more than the {self.k} candidate "
                    f"slots; raise max_candidates"
                )
            idx[n, :m] = np.arange(m)
            mask[n, :m] = True
        return idx, mask


class PriorCandidates:
    """k candidates per observation from the LLM prior (duplicates kept, as in the paper).

    mode "exact": drawn from the prior's exact distribution over the admissible set (one scoring pass per
    distinct prompt, cached); mode "generate": k generations mapped to admissible actions by the paper's rule.
    """

    def __init__(self, prior: Any, k: int, mode: str = "exact"):
        if mode not in ("exact", "generate"):
            raise ValueError(f"prior mode must be 'exact' or 'generate', got {mode!r}")
        self.prior, self.k, self.mode = prior, int(k), mode

    def __call__(self, rng, observations):
        # the host generator seeds the prior's jax key, so a run's candidates follow from its seed
        seed = int(rng.integers(2**31))
        idx = np.asarray(self.prior.candidates(seed, list(observations), self.k, mode=self.mode), np.int32)
        return idx, np.ones(idx.shape, bool)


class Featurizer:
    """Feature rows for (observation, action) pairs, encoded once per distinct string.

    ``rows(observations, indices [N, K]) -> [N, K] int32`` rows into ``table``; ``device_table()`` is the table as
    a device array padded to a power of two rows, so the jitted update recompiles only when the table doubles.
    """

    def __init__(self, encoder: Any, style: str = "paper"):
        self.encoder, self.style = encoder, style
        self.table = FeatureTable(encoder.dim)
        self._device: Any = None
        self._device_len = -1

    def rows(self, observations: Sequence[TextObservation], indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        texts = [candidate_texts(obs, [int(i) for i in row], self.style) for obs, row in zip(observations, indices)]
        missing = list(dict.fromkeys(t for ts in texts for t in ts if t not in self.table))
        if missing:
            for text, feat in zip(missing, self.encoder.encode(missing)):
                self.table.add(text, feat)
        return np.array([[self.table.index(t) for t in ts] for ts in texts], np.int32).reshape(indices.shape)

    def device_table(self) -> jnp.ndarray:
        n = len(self.table)
        if n != self._device_len:
            size = 1 << max(n - 1, 0).bit_length()
            padded = np.zeros((max(size, 1), self.table.dim), np.float32)
            padded[:n] = self.table.array
            self._device, self._device_len = jnp.asarray(padded), n
        return self._device
