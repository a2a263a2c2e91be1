"""Offline datasets of text transitions: one format, a generator, a loader, and nested sub-sampling.

Format (JSON lines, optionally gzipped; the same keys as the paper's own Tomato-Lettuce dataset)::

    {"task": str, "state": str, "action": str, "next_state": str, "reward": float, "done": bool,
     "actions": [str, ...], "next_actions": [str, ...],
     # optional, written by our generator:
     "episode": int, "truncated": bool, "success": bool}

``state`` is the observation text without the task framing (``TextObservation.state``); ``done`` is a true
termination (a delivery, or Overcooked's 200-primitive-step horizon); a transition cut by the per-episode step
cap has ``done = false`` and ``truncated = true`` and is bootstrapped.

:func:`load_transitions` also reads the reference implementation's own file (``raw_lettuce_data_bala752000.pkl``
from yanxue7/RL-LLM-Prior): a pickle of plain data, a list of 8-tuples in the order of :data:`REQUIRED_KEYS`.
It is read with an unpickler that refuses every import and call, so a pickle that would run code is refused
with a ``ValueError`` instead of being run.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import envs

REQUIRED_KEYS = ("task", "state", "action", "next_state", "reward", "done", "actions", "next_actions")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
PICKLE_SUFFIXES = (".pkl", ".pickle")
FORMATS = (
    f"JSON lines ({', '.join(JSONL_SUFFIXES)}) or the reference implementation's plain-data pickle "
    f"({', '.join(PICKLE_SUFFIXES)})"
)


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


def dataset_format(path: str | os.PathLike) -> str:
    """``"jsonl"`` or ``"pickle"`` from the file name; any other name is a ``ValueError`` listing the formats."""
    name = Path(path).name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PICKLE_SUFFIXES):
        return "pickle"
    raise ValueError(f"unsupported dataset file {str(path)!r}: the accepted formats are {FORMATS}")


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _open(path: Path, mode: str):
    return gzip.open(path, mode + "t", encoding="utf-8") if _is_gz(path) else open(path, mode, encoding="utf-8")


def _is_str_list(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(a, str) for a in x)


def _transition(rec: dict, where: str) -> Transition:
    """One record (a dict with :data:`REQUIRED_KEYS`, optionally ``episode``/``truncated``/``success``) checked
    and converted; ``where`` (``path:line`` or ``path: record i``) starts every error message."""
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{where}: record lacks keys {missing}; required keys are {list(REQUIRED_KEYS)}")
    for key in ("task", "state", "action", "next_state"):
        if not isinstance(rec[key], str):
            raise ValueError(f"{where}: {key!r} must be a string, got {type(rec[key]).__name__}")
    for key in ("actions", "next_actions"):
        if not _is_str_list(rec[key]):
            raise ValueError(f"{where}: {key!r} must be a list of strings")
    reward = rec["reward"]
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
        raise ValueError(f"{where}: 'reward' must be a finite number, got {reward!r}")
    if rec["done"] not in (True, False):  # also admits 0 / 1
        raise ValueError(f"{where}: 'done' must be true or false, got {rec['done']!r}")
    if rec["action"] not in rec["actions"]:
        raise ValueError(f"{where}: action {rec['action']!r} is not among its admissible actions")
    episode = rec.get("episode", -1)
    if isinstance(episode, bool) or not isinstance(episode, int):
        raise ValueError(f"{where}: 'episode' must be an integer, got {episode!r}")
    for key in ("truncated", "success"):
        if rec.get(key, False) not in (True, False):
            raise ValueError(f"{where}: {key!r} must be true or false, got {rec[key]!r}")
    return Transition(
        task=rec["task"],
        state=rec["state"],
        action=rec["action"],
        next_state=rec["next_state"],
        reward=float(reward),
        done=bool(rec["done"]),
        actions=tuple(rec["actions"]),
        next_actions=tuple(rec["next_actions"]),
        episode=episode,
        truncated=bool(rec.get("truncated", False)),
        success=bool(rec.get("success", False)),
    )


def _load_jsonl(path: Path) -> list[Transition]:
    try:
        return _read_jsonl(path)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; is this a JSON-lines dataset?") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable gzip file ({exc})") from None


def _read_jsonl(path: Path) -> list[Transition]:
    out: list[Transition] = []
    with _open(path, "r") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({exc.msg}); is this a prior_rl dataset?") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{line_no}: expected one JSON object per line, got {type(rec).__name__}")
            out.append(_transition(rec, f"{path}:{line_no}"))
    return out


class _CodeInPickle(Exception):
    """Raised inside the unpickler when the stream asks for anything but plain data."""


class _PlainDataUnpickler(pickle.Unpickler):
    """An unpickler that imports nothing and calls nothing: every global (GLOBAL / STACK_GLOBAL / INST / OBJ /
    EXT*) goes through :meth:`find_class` and every persistent id through :meth:`persistent_load`, and both
    refuse. Without a class or function on the stack REDUCE / NEWOBJ / BUILD have nothing to call, so only
    lists, tuples, dicts, sets, strings, bytes, numbers, booleans and None can be built."""

    def find_class(self, module: str, name: str):
        raise _CodeInPickle(f"{module}.{name}"[:200])

    def persistent_load(self, pid):
        raise _CodeInPickle(f"persistent id {pid!r}"[:200])


def _load_pickle(path: Path) -> list[Transition]:
    try:
        with open(path, "rb") as f:
            obj = _PlainDataUnpickler(f).load()
    except _CodeInPickle as exc:
        raise ValueError(
            f"{path}: refusing to run code from this pickle (it asks for {exc}); only plain data "
            "(lists, tuples, dicts, strings, numbers, booleans, None) is loaded"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        MemoryError,
        RecursionError,
    ) as exc:
        raise ValueError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})".replace("\n", " ")) from None
    if not isinstance(obj, (list, tuple)):
        raise ValueError(f"{path}: expected a list of transitions (the reference's 8-tuples), got {type(obj).__name__}")
    out: list[Transition] = []
    for i, rec in enumerate(obj):
        where = f"{path}: record {i}"
        if isinstance(rec, (list, tuple)):
            if len(rec) != len(REQUIRED_KEYS):
                raise ValueError(
                    f"{where}: expected a {len(REQUIRED_KEYS)}-tuple {REQUIRED_KEYS}, got {len(rec)} items"
                )
            rec = dict(zip(REQUIRED_KEYS, rec))
        elif not isinstance(rec, dict):
            raise ValueError(f"{where}: expected a tuple {REQUIRED_KEYS} or a dict, got {type(rec).__name__}")
        out.append(_transition(rec, where))
    return out


def load_transitions(path: str | os.PathLike) -> list[Transition]:
    """Read a dataset file: JSON lines (``.jsonl``, optionally ``.gz``) or the reference implementation's
    plain-data pickle (``.pkl``, e.g. ``raw_lettuce_data_bala752000.pkl``), both giving the same
    :class:`Transition` s. A missing file is a ``FileNotFoundError`` naming it; an unknown suffix, bad JSON, a
    malformed record (reported with the path and line / record number) or a pickle that would run code is a
    ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise IsADirectoryError(f"offline dataset {path} is not a file")
        raise FileNotFoundError(f"offline dataset not found: {path}")
    fmt = dataset_format(path)
    out = _load_pickle(path) if fmt == "pickle" else _load_jsonl(path)
    if not out:
        raise ValueError(f"offline dataset {path} holds no transitions")
    return out


def _write_jsonl(transitions: Iterable[Transition], f) -> None:
    for t in transitions:
        rec = asdict(t)
        rec["actions"], rec["next_actions"] = list(t.actions), list(t.next_actions)
        f.write((json.dumps(rec) + "\n").encode("utf-8"))


def save_transitions(transitions: Iterable[Transition], path: str | os.PathLike) -> Path:
    """Write transitions as JSON lines (gzipped if the name ends in .gz), atomically: everything goes to a temp
    file beside ``path``, which replaces ``path`` only once complete, so a failure leaves an existing file as
    it was. The name must end in one of :data:`JSONL_SUFFIXES`."""
    path = Path(path)
    if dataset_format(path) != "jsonl":
        raise ValueError(
            f"cannot write {str(path)!r}: datasets are written as JSON lines; "
            f"end the name in one of {', '.join(JSONL_SUFFIXES)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            if _is_gz(path):
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:  # closing it leaves raw open
                    _write_jsonl(transitions, gz)
            else:
                _write_jsonl(transitions, raw)
            raw.flush()
            os.fsync(raw.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it an ordinary file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def subsample_indices(n: int, size: int, seed: int = 0) -> np.ndarray:
    """The sorted indices [size] into ``n`` transitions that :func:`subsample` keeps (for array-form datasets)."""
    if not 0 < size <= n:
        raise ValueError(f"subsample size must be in 1..{n}, got {size}")
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def subsample(transitions: Sequence[Transition], size: int, seed: int = 0) -> list[Transition]:
    """``size`` transitions drawn without replacement. Sizes are nested for one seed (a smaller subset is a
    prefix of the same permutation), so a sample-efficiency curve compares data that only grows."""
    return [transitions[i] for i in subsample_indices(len(transitions), size, seed)]


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
    env = envs.make(env_name, max_steps=max_episode_steps)
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
            episode.append(
                Transition(
                    task=obs.task,
                    state=obs.state,
                    action=obs.actions[action],
                    next_state=next_obs.state,
                    reward=float(reward),
                    done=bool(terminated),
                    actions=obs.actions,
                    next_actions=next_obs.actions,
                    episode=episode_id,
                    truncated=bool(truncated and not terminated),
                    success=bool(info["success"]),
                )
            )
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
    return {
        "transitions": len(transitions),
        "episodes": len(episodes),
        "successful_episodes": successes,
        "success_fraction": successes / max(len(episodes), 1),
        "distinct_states": len({t.state for t in transitions}),
    }
