"""Text Frozen Lake on gymnasium's ``FrozenLake-v1``.

Dynamics, reward (1 on reaching the goal) and termination (goal or hole) are gymnasium's own; we add the text
rendering, a step cap (20 by default, as the reference config's ``max_horizon``; a non-terminal truncation)
and a BFS expert. The reference's text rendering is unpublished (docs/overcooked-frozenlake.md §15.3, §16.6),
so this one is ours:

    task:  "Reach the goal at row 3, column 3 without stepping into a hole."
    state: "You are at row 0, column 0 of a 4x4 frozen lake. Left of you is the edge of the lake. Below you is
            frozen ice. Right of you is frozen ice. Above you is the edge of the lake."

Rows and columns count from 0 at the top-left. Actions keep gymnasium's order: 0 left, 1 down, 2 right, 3 up.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from envs.base import TextEnv, TextObservation

ACTIONS = ("move left", "move down", "move right", "move up")
_DELTAS = ((0, -1), (1, 0), (0, 1), (-1, 0))  # (drow, dcol) in gymnasium's action order
_WHERE = ("Left of you", "Below you", "Right of you", "Above you")
_CELL_WORDS = {"S": "frozen ice", "F": "frozen ice", "H": "a hole", "G": "the goal"}


class FrozenLake(TextEnv):
    """Text Frozen Lake. Options: ``map_name`` ("4x4" or "8x8") or ``desc`` (list of row strings),
    ``is_slippery`` (default False), ``max_steps`` (default 20).

    Observations: family ``"frozen-lake"`` (the generic prompt: ``prompt`` as written), ``extra["position"]``."""

    name = "frozen-lake"

    def __init__(
        self,
        map_name: str = "4x4",
        desc: list[str] | None = None,
        is_slippery: bool = False,
        max_steps: int | None = 20,
    ):
        super().__init__(max_steps=max_steps)
        if desc is None and map_name not in ("4x4", "8x8"):
            raise ValueError(f"frozen-lake: map_name must be '4x4' or '8x8' (or pass desc=[...]), got {map_name!r}")
        # gymnasium's own TimeLimit is removed: the step cap is ours (base class), so it is the same for all envs.
        self._gym = gym.make(
            "FrozenLake-v1", desc=desc, map_name=map_name, is_slippery=is_slippery, max_episode_steps=None
        ).unwrapped
        self.desc = ["".join(c.decode() for c in row) for row in self._gym.desc]
        self.nrow, self.ncol = len(self.desc), len(self.desc[0])
        goal = next((r, c) for r in range(self.nrow) for c in range(self.ncol) if self.desc[r][c] == "G")
        self.goal = goal
        self.is_slippery = is_slippery
        self.task = f"Reach the goal at row {goal[0]}, column {goal[1]} without stepping into a hole."
        self._distance = self._distances_to_goal()
        self._position = 0

    # -- text ----------------------------------------------------------------------------------------------
    def describe(self, position: int) -> str:
        """The state sentence for grid cell ``position`` (= row * ncol + col)."""
        row, col = divmod(position, self.ncol)
        cell = self.desc[row][col]
        size = f"{self.nrow}x{self.ncol}"
        if cell == "H":
            return f"You fell into a hole at row {row}, column {col} of a {size} frozen lake."
        if cell == "G":
            return f"You reached the goal at row {row}, column {col} of a {size} frozen lake."
        parts = [f"You are at row {row}, column {col} of a {size} frozen lake."]
        for where, (dr, dc) in zip(_WHERE, _DELTAS):
            r, c = row + dr, col + dc
            what = _CELL_WORDS[self.desc[r][c]] if 0 <= r < self.nrow and 0 <= c < self.ncol else "the edge of the lake"
            parts.append(f"{where} is {what}.")
        return " ".join(parts)

    def _observation(self) -> TextObservation:
        return self.observation_at(self._position)

    def observation_at(self, position: int) -> TextObservation:
        """The observation the agent gets at grid cell ``position``: a function of the cell alone (the compiled
        loop's prompt table, :func:`envs.jax_frozen_lake.prompt_table`, renders every cell with it)."""
        state = self.describe(position)
        prompt = (
            f"You are playing Frozen Lake. {self.task} {state} Choose one action from: {', '.join(ACTIONS)}. Action:"
        )
        return TextObservation(
            prompt=prompt,
            actions=ACTIONS,
            task=self.task,
            state=state,
            family="frozen-lake",
            extra={"position": position, "map": tuple(self.desc)},  # the map: transcript prompts refuse its demos
        )

    # -- protocol ------------------------------------------------------------------------------------------
    def _reset(self, seed: int | None) -> tuple[TextObservation, dict[str, Any]]:
        self._position, _ = self._gym.reset(seed=seed)
        self._position = int(self._position)
        return self._observation(), {"position": self._position, "success": False}

    def _step(self, index: int) -> tuple[TextObservation, float, bool, bool, dict[str, Any]]:
        position, reward, terminated, _, _ = self._gym.step(index)
        self._position = int(position)
        row, col = divmod(self._position, self.ncol)
        success = self.desc[row][col] == "G"
        return (
            self._observation(),
            float(reward),
            bool(terminated),
            False,
            {
                "position": self._position,
                "success": success,
                "hole": self.desc[row][col] == "H",
            },
        )

    # -- expert --------------------------------------------------------------------------------------------
    def _distances_to_goal(self) -> np.ndarray:
        """BFS distance (intended moves) from every cell to the goal; holes are impassable, -1 = unreachable."""
        dist = np.full(self.nrow * self.ncol, -1, dtype=np.int64)
        start = self.goal[0] * self.ncol + self.goal[1]
        dist[start] = 0
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            row, col = divmod(cell, self.ncol)
            for dr, dc in _DELTAS:
                r, c = row + dr, col + dc
                if 0 <= r < self.nrow and 0 <= c < self.ncol and self.desc[r][c] != "H":
                    nxt = r * self.ncol + c
                    if dist[nxt] < 0:
                        dist[nxt] = dist[cell] + 1
                        queue.append(nxt)
        return dist

    def expert_action(self) -> int:
        """First action (in gymnasium's order) of a shortest path to the goal (BFS over intended moves)."""
        return self.expert_at(self._position)

    def expert_at(self, position: int) -> int:
        """:meth:`expert_action` at grid cell ``position`` (a hole or the goal has none: ``RuntimeError``)."""
        row, col = divmod(position, self.ncol)
        here = self._distance[position]
        for action, (dr, dc) in enumerate(_DELTAS):
            r, c = row + dr, col + dc
            if 0 <= r < self.nrow and 0 <= c < self.ncol:
                d = self._distance[r * self.ncol + c]
                if d >= 0 and (here < 0 or d == here - 1):
                    return action
        raise RuntimeError(f"frozen-lake: no path to the goal from row {row}, column {col}")
