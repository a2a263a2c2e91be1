"""Step N copies of a text environment and hand back stacked numpy arrays plus the texts.

The learners consume fixed-shape arrays (rewards, terminations, admissible-action counts), while the prior and
the encoder consume the texts; this runner produces both in one call. Finished copies reset automatically:
the returned observation of a finished copy is the first observation of its next episode, and the last
observation of the finished episode is kept in ``final_observations`` (as gymnasium's vector envs do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.base import TextEnv, TextObservation
from envs.registry import make


@dataclass
class VectorStep:
    """One step of N copies. Arrays have shape [N]."""

    observations: list[TextObservation]
    rewards: np.ndarray  # float32 [N]
    terminated: np.ndarray  # bool [N]
    truncated: np.ndarray  # bool [N]
    success: np.ndarray  # bool [N]
    num_actions: np.ndarray  # int32 [N], admissible actions of each returned observation
    final_observations: list[TextObservation | None]  # last observation of a finished episode, else None
    infos: list[dict[str, Any]]

    @property
    def prompts(self) -> list[str]:
        return [o.prompt for o in self.observations]

    @property
    def actions(self) -> list[tuple[str, ...]]:
        return [o.actions for o in self.observations]


class VectorEnv:
    """N independent copies of one environment, stepped in lock-step (sequentially, in this process).

    ``VectorEnv("overcooked-tomato-salad", 8, max_steps=31)`` or ``VectorEnv(factory, 8)``.
    """

    def __init__(self, env: str | Callable[[], TextEnv], num_envs: int, **options: Any):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        factory = (lambda: make(env, **options)) if isinstance(env, str) else env
        self.envs: list[TextEnv] = [factory() for _ in range(num_envs)]
        self.num_envs = num_envs
        self._seed: int | None = None
        self._episodes = np.zeros(num_envs, dtype=np.int64)
        self._actions: list[list[int]] = [[] for _ in range(num_envs)]  # each copy's actions since its last reset
        self.observations: list[TextObservation] = []

    def _episode_seed(self, i: int, episode: int | None = None) -> int | None:
        """Copy i's seed for ``episode`` (default: its current one)."""
        episode = int(self._episodes[i]) if episode is None else episode
        if self._seed is None:
            return None
        return int(np.random.SeedSequence([self._seed, i, episode]).generate_state(1)[0])

    def reset(self, seed: int | None = None) -> tuple[list[TextObservation], list[dict[str, Any]]]:
        self._seed = seed
        self._episodes[:] = 0
        self._actions = [[] for _ in range(self.num_envs)]
        results = self._each_copy(lambda i: self.envs[i].reset(seed=self._episode_seed(i)))
        self.observations = [obs for obs, _ in results]
        return self.observations, [info for _, info in results]

    def step(self, actions: Sequence[int | str] | np.ndarray) -> VectorStep:
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions (one per copy), got {len(actions)}")
        n = self.num_envs
        indices = self._indices(actions)
        results = self._step_copies(indices)
        rewards = np.zeros(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        success = np.zeros(n, bool)
        observations, finals, infos = [], [], []
        for i, (obs, reward, term, trunc, info, final) in enumerate(results):
            self._actions[i].append(indices[i])
            rewards[i], terminated[i], truncated[i], success[i] = reward, term, trunc, info["success"]
            if term or trunc:
                self._episodes[i] += 1
                self._actions[i] = []
            observations.append(obs)
            finals.append(final)
            infos.append(info)
        self.observations = observations
        num_actions = np.array([len(o.actions) for o in observations], np.int32)
        return VectorStep(observations, rewards, terminated, truncated, success, num_actions, finals, infos)

    def _indices(self, actions: Sequence[int | str] | np.ndarray) -> list[int]:
        """Each copy's action as an index (texts resolved, anything else refused by the env)."""
        return [env.action_index(a if isinstance(a, str) else int(a)) for env, a in zip(self.envs, actions)]

    def _step_copies(self, indices: list[int]) -> list[tuple]:
        """Step every copy; a finished one is reset with its next episode's seed. Per copy: (observation, reward,
        terminated, truncated, info, the finished episode's last observation or None)."""
        return self._each_copy(lambda i: self._step_copy(i, indices[i]))

    def _step_copy(self, i: int, index: int) -> tuple:
        obs, reward, term, trunc, info = self.envs[i].step(index)
        final = None
        if term or trunc:
            final = obs
            obs, _ = self.envs[i].reset(seed=self._episode_seed(i, int(self._episodes[i]) + 1))
        return obs, reward, term, trunc, info, final

    def _each_copy(self, fn: Callable[[int], Any]) -> list[Any]:
        """``[fn(i) for every copy i]`` (:class:`SplitVectorEnv` computes its own copies' and gathers the rest)."""
        return [fn(i) for i in range(self.num_envs)]

    def snapshot(self) -> dict[str, Any]:
        """What it takes to continue these copies elsewhere (JSON): the seed, each copy's episode count and its
        actions since the last reset. No environment object is stored: :meth:`restore` replays the actions."""
        return {"seed": self._seed, "episodes": self._episodes.tolist(), "actions": [list(a) for a in self._actions]}

    def restore(self, snapshot: dict[str, Any]) -> list[TextObservation]:
        """Bring the copies to the state of :meth:`snapshot` by resetting each with its episode's seed and replaying
        its actions (the environments are deterministic given the seed); returns the current observations."""
        if len(snapshot["episodes"]) != self.num_envs:
            raise ValueError(f"snapshot of {len(snapshot['episodes'])} copies, this VectorEnv has {self.num_envs}")
        self._seed = snapshot["seed"]
        self._episodes = np.asarray(snapshot["episodes"], np.int64)
        self._actions = [[int(a) for a in actions] for actions in snapshot["actions"]]

        def replay(i: int) -> TextObservation:
            obs, _ = self.envs[i].reset(seed=self._episode_seed(i))
            for index in self._actions[i]:
                obs, *_ = self.envs[i].step(index)
            return obs

        self.observations = self._each_copy(replay)
        return self.observations

    def close(self) -> None:
        for env in self.envs:
            if env is not None:
                env.close()


class SplitVectorEnv(VectorEnv):
    """``num_envs`` copies split over the processes of a run: copy i lives in process ``i % group.size``.

    Every process holds the same :class:`VectorEnv` state (seeds, episode counts, observations) and is given the
    same actions; each steps only its own copies' engines, and ``group.map`` (a
    :class:`prior_rl.distributed.ProcessGroup`, or anything with ``rank``, ``size``, ``owns(i)`` and ``map``)
    gathers every copy's result to every process. So the transitions are those of ``VectorEnv(factory,
    num_envs)`` in one process, with the engine time divided by the process count."""

    def __init__(self, factory: Callable[[], TextEnv], num_envs: int, group: Any):
        super().__init__(lambda: None, num_envs)  # type: ignore[arg-type,return-value]
        self.group = group
        self.envs = [factory() if group.owns(i) else None for i in range(num_envs)]  # type: ignore[misc]

    def _indices(self, actions: Sequence[int | str] | np.ndarray) -> list[int]:
        # from the copies' current observations, which every process has (a bad index fails in its owner's step)
        return [self.observations[i].actions.index(a) if isinstance(a, str) else int(a) for i, a in enumerate(actions)]

    def _each_copy(self, fn: Callable[[int], Any]) -> list[Any]:
        return self.group.map(fn, range(self.num_envs))
