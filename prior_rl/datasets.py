"""Offline datasets of text transitions: one format, a generator, a loader, and nested sub-sampling.

Format (JSON lines, optionally gzipped; the same keys as the paper's own Tomato-Lettuce dataset in
``../shared/reference_offline/``, so both load with :func:`load_transitions`)::

    {"task": str, "state": str, "action": str, "next_state": str, "reward": float, "done": bool,
     "actions": [str, ...], "next_actions": [str, ...],
     # optional, written by our generator:
     "episode": int, "truncated": bool, "success": bool}

``state`` is the observation text without the task framing (``TextObservation.state``); ``done`` is a true
termination (a delivery, or Overcooked's 200-primitive-step horizon); a transition cut by the per-episode step
cap has ``done = false`` and ``truncated = true`` and is bootstrapped.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

import envs

REQUIRED_KEYS = ("task", "state", "action", "next_state", "reward", "done", "actions", "next_actions")


@dataclass(frozen=True)
class Transition:
    task: str
    state: str
    action: str
    next_state: str
    reward: float
    done: bool
    actions: tuple[str, ...]
    next_actions: tuple[str, ...]
    episode: int = -1
    truncated: bool = False
    success: bool = False

    @property
    def action_index(self) -> int:
        return self.actions.index(self.action)


def _open(path: Path, mode: str):
    return gzip.open(path, mode + "t", encoding="utf-8") if path.suffix == ".gz" else open(path, mode, encoding="utf-8")


def load_transitions(path: str | os.PathLike) -> list[Transition]:
    """Read a dataset file; a missing file, bad JSON or a record without the required keys is reported with
    the path and line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"offline dataset not found: {path}")
    out: list[Transition] = []
    with _open(path, "r") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({exc.msg}); is this a prior_rl dataset?") from None
            missing = [k for k in REQUIRED_KEYS if k not in rec]
            if missing:
                raise ValueError(f"{path}:{line_no}: record lacks keys {missing}; required keys are {list(REQUIRED_KEYS)}")
            if rec["action"] not in rec["actions"]:
                raise ValueError(f"{path}:{line_no}: action {rec['action']!r} is not among its admissible actions")
            out.append(Transition(
                task=rec["task"], state=rec["state"], action=rec["action"], next_state=rec["next_state"],
                reward=float(rec["reward"]), done=bool(rec["done"]), actions=tuple(rec["actions"]),
                next_actions=tuple(rec["next_actions"]), episode=int(rec.get("episode", -1)),
                truncated=bool(rec.get("truncated", False)), success=bool(rec.get("success", False)),
            ))
    if not out:
        raise ValueError(f"offline dataset {path} holds no transitions")
    return out


def save_transitions(transitions: Iterable[Transition], path: str | os.PathLike) -> Path:
    """Write transitions as JSON lines (gzipped if the name ends in .gz), atomically: temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp).with_suffix(path.suffix) if path.suffix == ".gz" else Path(tmp)
    try:
        with _open(tmp_path, "w") as f:
            for t in transitions:
                rec = asdict(t)
                rec["actions"], rec["next_actions"] = list(t.actions), list(t.next_actions)
                f.write(json.dumps(rec) + "\n")
        os.replace(tmp_path, path)
    finally:
        for p in {Path(tmp), tmp_path}:
            if p.exists():
                p.unlink()
    return path


def split_episodes(transitions: Sequence[Transition], max_steps: int | None = None) -> list[list[Transition]]:
    """Group transitions into episodes: by the ``episode`` field when present, else by splitting after
    ``done`` or after ``max_steps`` transitions (how the paper's dataset must be read: 133 episodes)."""
    if transitions and all(t.episode >= 0 for t in transitions):
        groups: dict[int, list[Transition]] = {}
        for t in transitions:
            groups.setdefault(t.episode, []).append(t)
        return list(groups.values())
    episodes, current = [], []
    for t in transitions:
        current.append(t)
        if t.done or (max_steps is not None and len(current) >= max_steps):
            episodes.append(current)
            current = []
    if current:
        episodes.append(current)
    return episodes


def subsample(transitions: Sequence[Transition], size: int, seed: int = 0) -> list[Transition]:
    """``size`` transitions drawn without replacement. Sizes are nested for one seed (a smaller subset is a
    prefix of the same permutation), so a sample-efficiency curve compares data that only grows."""
    if not 0 < size <= len(transitions):
        raise ValueError(f"subsample size must be in 1..{len(transitions)}, got {size}")
    order = np.random.default_rng(seed).permutation(len(transitions))[:size]
    return [transitions[i] for i in np.sort(order)]


def generate(
    env_name: str,
    num_transitions: int,
    success_fraction: float = 0.75,
    max_episode_steps: int = 51,
    epsilons: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0),
    seed: int = 0,
) -> list[Transition]:
    """Episodes from a mix of the expert and ε-random policies, admitted so that about ``success_fraction`` of
    the episodes succeed (as in the paper's "bala75" Tomato-Lettuce set). Each episode draws its ε from
    ``epsilons``; each step takes a uniform-random admissible action with probability ε, else the expert's.
    Whole episodes are kept; the last one is cut so that exactly ``num_transitions`` are returned."""
    if not 0.0 <= success_fraction <= 1.0:
        raise ValueError(f"success_fraction must be in [0, 1], got {success_fraction}")
    option = "max_macro_steps" if env_name.startswith("overcooked") else "max_episode_steps"
    env = envs.make(env_name, **{option: max_episode_steps})
    rng = np.random.default_rng(seed)
    out: list[Transition] = []
    kept_success = kept_fail = episode_id = 0
    attempts = 0
    while len(out) < num_transitions:
        attempts += 1
        if attempts > 100 * (num_transitions + 100):
            raise RuntimeError(f"could not reach success_fraction={success_fraction} on {env_name}")
        eps = float(rng.choice(epsilons))
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        episode: list[Transition] = []
        while True:
            action = int(rng.integers(len(obs.actions))) if rng.random() < eps else env.expert_action()
            next_obs, reward, terminated, truncated, info = env.step(action)
            episode.append(Transition(
                task=obs.task, state=obs.state, action=obs.actions[action], next_state=next_obs.state,
                reward=float(reward), done=bool(terminated), actions=obs.actions, next_actions=next_obs.actions,
                episode=episode_id, truncated=bool(truncated and not terminated), success=bool(info["success"]),
            ))
            obs = next_obs
            if terminated or truncated:
                break
        success = bool(info["success"])
        # admit the episode only if the success fraction stays within half an episode of the target
        n_new = kept_success + kept_fail + 1
        if abs((kept_success + success) / n_new - success_fraction) > 0.5 / n_new + 1e-9:
            continue
        kept_success += success
        kept_fail += not success
        out.extend(episode)
        episode_id += 1
    return out[:num_transitions]


def dataset_stats(transitions: Sequence[Transition], max_steps: int | None = None) -> dict[str, float]:
    """Counts that describe a dataset: transitions, episodes, successful episodes, distinct states."""
    episodes = split_episodes(transitions, max_steps)
    successes = sum(any(t.done and t.reward > 0.5 for t in ep) for ep in episodes)
    return {"transitions": len(transitions), "episodes": len(episodes), "successful_episodes": successes,
            "success_fraction": successes / max(len(episodes), 1),
            "distinct_states": len({t.state for t in transitions})}
