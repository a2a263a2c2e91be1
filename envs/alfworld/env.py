"""``alfworld-pick``: ALFWorld Pick & Place on the real text engine, behind the project's protocol.

The engine is textworld's ``PddlEnv`` wrapped in alfworld's ``AlfredDemangler`` (display names such as
"sidetable 1", fixed numbering) and ``AlfredInfos``, i.e. exactly what ``AlfredTWEnv.init_env`` registers for one
game, without the gym batch layer and its worker process. Texts, commands (``move X to Y``), goals, rewards and
the planner are ALFWorld's own.

Games come from the generated 28/26 split (``envs.alfworld.generate``, written to a cache folder at first use),
or, when ``ALFWORLD_DATA`` (or ``data=``) points at the real downloaded dataset, from its
``json_2.1.1/{train,valid_seen,valid_unseen}`` Pick & Place games, collected with ``AlfredTWEnv``'s rules.

Observation (the reference's LLF-Bench wording, docs/method.md §3.3 / §4.1):

    state  = engine text without the "-= Welcome to TextWorld, ALFRED! =-" banner
    task   = "put some cellphone on armchair."
    prompt = "Task: Your task is to: {task}\\nCurrent observation:{state}. You are allowed to take the following
              actions: {a1, a2, ...}.\\nPlease select an action from the admissible actions. \\n Action:"

``reset(seed)`` plays game ``seed % num_games``; ``reset()`` without a seed cycles through the games in order.
Reward 1 and ``success`` when the goal holds (the episode then terminates); the step cap (default 50) truncates.
``info["expert_action"]`` is the next command of an optimal plan from the current state (``expert.py``: exact
for Pick & Place, ~1 ms; Fast Downward where that model does not apply; None once the goal is reached) and
``env.expert_action()`` its index. The observation carries that index too, as ``obs.expert_action``
(``envs.base.NO_EXPERT_ACTION`` when there is no admissible next command), and ``family="alfworld"``,
``llf_observation`` = the LLF-Bench observation text (the state and the admissible-action list); ``extra`` holds
``split``, ``game``, ``gamefile`` and ``won``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from envs.alfworld import engine, expert, generate
from envs.alfworld import parse_cache as _parse_cache
from envs.base import NO_EXPERT_ACTION, TextEnv, TextObservation

BANNER = re.compile(r"^\s*-= Welcome to TextWorld, ALFRED! =-\s*")
TASK_LINE = re.compile(r"Your task is to: (.*)")
SPLIT_FOLDERS = {
    "train": "train",
    "unseen": "valid_unseen",
    "valid_unseen": "valid_unseen",
    "seen": "valid_seen",
    "valid_seen": "valid_seen",
}
ALLOWED = "You are allowed to take the following actions"
_GAME_KEYS = ("pddl_domain", "grammar", "pddl_problem")


class AlfworldDataError(ValueError):
    """A game file or data folder is missing or malformed; the message names the path."""


def default_cache_dir() -> Path:
    """Where generated games are cached: ``$PRIOR_RL_ALFWORLD_CACHE``, else ``$XDG_CACHE_HOME/prior_rl/alfworld``
    (``~/.cache/prior_rl/alfworld``)."""
    if os.environ.get("PRIOR_RL_ALFWORLD_CACHE"):
        return Path(os.environ["PRIOR_RL_ALFWORLD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prior_rl" / "alfworld"


def generated_root(cache_dir: str | os.PathLike | None = None, seed: int = generate.DEFAULT_SEED) -> Path:
    """The generated dataset (an ALFWORLD_DATA-style root), generating it on first use (~1 min, atomically)."""
    root = Path(cache_dir or default_cache_dir()) / f"pick-v{generate.GENERATOR_VERSION}-seed{seed}"
    if not root.exists():
        print(
            f"alfworld-pick: generating the {len(generate.TRAIN_TASKS)}+{generate.NUM_UNSEEN} games into {root} "
            "(about a minute, once)",
            file=sys.stderr,
            flush=True,
        )
        generate.generate_dataset(root, seed=seed)
    if not (root / "manifest.json").is_file():
        raise AlfworldDataError(f"{root}: generated-games folder without manifest.json; delete it to regenerate")
    return root


def read_game_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a ``game.tw-pddl`` file; any problem raises ``AlfworldDataError`` naming the path."""
    path = Path(path)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AlfworldDataError(f"ALFWorld game file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AlfworldDataError(f"{path}: not a readable game.tw-pddl file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise AlfworldDataError(f"{path}: not a game.tw-pddl file (expected a JSON object)")
    bad = [k for k in _GAME_KEYS if not isinstance(data.get(k), str) or not data[k].strip()]
    if bad:
        raise AlfworldDataError(f"{path}: not a game.tw-pddl file: missing or empty {', '.join(bad)}")
    return data


def collect_games(split_dir: str | os.PathLike) -> list[str]:
    """Pick & Place games under a json_2.1.1 split folder, by ``AlfredTWEnv.collect_game_files``' rules (a
    ``traj_data.json`` of task type 1, no 'movable'/'Sliced' in the path, a solvable ``game.tw-pddl`` beside it),
    sorted by path."""
    games = []
    for root, _, files in os.walk(split_dir):
        if "traj_data.json" not in files or "movable" in root or "Sliced" in root:
            continue
        try:
            with open(os.path.join(root, "traj_data.json")) as f:
                if json.load(f).get("task_type") != generate.TASK_TYPE:
                    continue
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise AlfworldDataError(f"{os.path.join(root, 'traj_data.json')}: unreadable ({exc})") from None
        game_file = os.path.join(root, "game.tw-pddl")
        if not os.path.isfile(game_file):
            continue
        try:
            with open(game_file) as f:
                solvable = json.load(f).get("solvable")
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise AlfworldDataError(f"{game_file}: not a readable game.tw-pddl file ({exc})") from None
        if solvable:
            games.append(game_file)
    return sorted(games)


def resolve_games(
    split: str, data: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> tuple[Path, list[str], list[str | None]]:
    """(root, game files, task texts or None) of a split. ``data``: None -> ``$ALFWORLD_DATA`` if set, else the
    generated games; ``"generated"``; or a dataset root (the folder holding ``json_2.1.1``)."""
    if split not in SPLIT_FOLDERS:
        raise ValueError(
            f"alfworld-pick: unknown split {split!r}; use 'train' or 'unseen' (real data also 'valid_seen')"
        )
    folder = SPLIT_FOLDERS[split]
    if data is None:
        data = os.environ.get("ALFWORLD_DATA") or "generated"
    if str(data) == "generated":
        root = generated_root(cache_dir)
    else:
        root = Path(os.path.expandvars(os.path.expanduser(str(data))))
        if root.name == "json_2.1.1":
            root = root.parent
    manifest_path = root / "manifest.json"
    if manifest_path.is_file():  # generated games: keep the split's task order
        try:
            manifest = json.loads(manifest_path.read_text())
            entries = manifest["splits"][folder]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise AlfworldDataError(f"{manifest_path}: no split {folder!r} in this manifest ({exc!r})") from None
        files = [str(root / "json_2.1.1" / folder / e["game"]) for e in entries]
        tasks: list[str | None] = [e["task"] for e in entries]
        if not files:
            raise AlfworldDataError(f"{manifest_path}: split {folder!r} lists no games")
        return root, files, tasks
    split_dir = root / "json_2.1.1" / folder
    if not split_dir.is_dir():
        raise AlfworldDataError(
            f"ALFWORLD_DATA={root}: no folder {split_dir} (expected the downloaded json_2.1.1 dataset, or unset "
            "ALFWORLD_DATA / pass data='generated' to play the generated games)"
        )
    files = collect_games(split_dir)
    if not files:
        raise AlfworldDataError(
            f"ALFWORLD_DATA={root}: {split_dir} holds no solvable Pick & Place game (traj_data.json + game.tw-pddl)"
        )
    return root, files, [None] * len(files)


def _strip_banner(text: str) -> str:
    return BANNER.sub("", text).strip()


class AlfworldPick(TextEnv):
    """ALFWorld Pick & Place. Options:

    split:             "train" (28 tasks) or "unseen" (26 tasks); with real data also "valid_seen".
    max_steps:         step cap (default 50), a non-terminal truncation.
    data:              None (``$ALFWORLD_DATA`` if set, else generated games), "generated", or a dataset root.
    game:              pin one game (index, or its task text); default: chosen by the reset seed.
    cache_dir:         where generated games live (default ``default_cache_dir()``).
    parse_cache:       memoise textworld's parsing (default True; identical observations, steps 3-4.5x faster).
    expert_in_info:    compute ``info["expert_action"]`` (and its index, ``obs.expert_action``) every step (default
                       True; off saves replanning when the agent leaves the expert's plan, and
                       ``obs.expert_action`` is then None).
    """

    name = "alfworld-pick"

    def __init__(
        self,
        split: str = "train",
        max_steps: int | None = 50,
        data: str | os.PathLike | None = None,
        game: int | str | None = None,
        cache_dir: str | os.PathLike | None = None,
        parse_cache: bool = True,
        expert_in_info: bool = True,
    ):
        super().__init__(max_steps=max_steps)
        self.split = split
        self.root, self.game_files, self._tasks = resolve_games(split, data, cache_dir)
        self.expert_in_info = expert_in_info
        if parse_cache:
            _parse_cache.install()
        self._fixed_game = None if game is None else self._game_index(game)
        self._next_game = 0
        infos = engine.textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
        self._pddl = engine.PddlEnv(infos)
        self._tw = engine.AlfredInfos(engine.AlfredDemangler(self._pddl, shuffle=False))
        self._loaded: int | None = None
        self._game = 0
        self._task = ""
        self._plan: list[str] | None = None
        self._admissible: tuple[str, ...] = ()
        self._goal: tuple[str, str] | None = None
        self._won = False

    # -- games ---------------------------------------------------------------------------------------------------
    @property
    def num_games(self) -> int:
        return len(self.game_files)

    @property
    def tasks(self) -> list[str]:
        """Task text of every game, in game order (read from the game files where no manifest lists them)."""
        for i, task in enumerate(self._tasks):
            if task is None:
                match = re.search(r"Your task is to: (.*?)\.\"", read_game_file(self.game_files[i])["grammar"])
                self._tasks[i] = (match.group(1) + ".") if match else ""
        return [t or "" for t in self._tasks]

    def _game_index(self, game: int | str) -> int:
        if isinstance(game, str):
            if game not in self.tasks:
                raise ValueError(f"alfworld-pick: no {self.split} game has the task {game!r}; tasks: {self.tasks}")
            return self.tasks.index(game)
        if isinstance(game, bool) or not hasattr(game, "__index__") or not 0 <= int(game) < self.num_games:
            raise ValueError(
                f"alfworld-pick: game must be a task text or an index in 0..{self.num_games - 1}, got {game!r}"
            )
        return int(game)

    def _load(self, index: int) -> None:
        path = self.game_files[index]
        data = read_game_file(path)  # clear errors for missing/malformed files before the engine sees them
        self._loaded = None
        self._goal = expert.goal_types(data["pddl_problem"])
        try:
            self._tw.load(path)
        except (Exception, SystemExit) as exc:  # tatsu / Fast Downward errors (FD raises SystemExit on some)
            raise AlfworldDataError(
                f"{path}: the ALFWorld engine cannot load this game ({type(exc).__name__}: {exc})"
            ) from exc
        self._loaded = index

    # -- observations -----------------------------------------------------------------------------------------
    def _observe(self, feedback: str, admissible: list[str]) -> tuple[TextObservation, dict[str, Any]]:
        """The observation and ``info`` of the engine's current state (the admissible set first: the expert's plan
        is checked against it)."""
        state = _strip_banner(feedback)
        actions = self._admissible = tuple(admissible)
        info = self._info()
        # the expert's next command also rides in the observation, for agents that only see observations
        # (e.g. prior_rl.prior.synthetic's expert-mixture prior); prompts and features never read it
        expert_action = None
        if "expert_action" in info:
            command = info["expert_action"]
            expert_action = actions.index(command) if command in actions else NO_EXPERT_ACTION
        llf = f"{state}. {ALLOWED}: {', '.join(actions)}."
        prompt = (
            f"Task: Your task is to: {self._task}\nCurrent observation:{llf}\n"
            "Please select an action from the admissible actions. \n Action:"
        )
        obs = TextObservation(
            prompt=prompt,
            actions=actions,
            task=self._task,
            state=state,
            family="alfworld",
            llf_observation=llf,
            expert_action=expert_action,
            extra={"split": self.split, "game": self._game, "gamefile": self.game_files[self._game], "won": self._won},
        )
        return obs, info

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "success": self._won,
            "won": self._won,
            "game": self._game,
            "gamefile": self.game_files[self._game],
            "task": self._task,
        }
        if self.expert_in_info:
            plan = self._expert_plan()
            info["expert_action"] = plan[0] if plan else None
        return info

    # -- protocol ---------------------------------------------------------------------------------------------
    def _reset(self, seed: int | None) -> tuple[TextObservation, dict[str, Any]]:
        if self._fixed_game is not None:
            index = self._fixed_game
        elif seed is not None:
            index = int(seed) % self.num_games
        else:
            index = self._next_game % self.num_games
            self._next_game += 1
        if self._loaded != index:
            self._load(index)
        self._game = index
        state = self._tw.reset()
        match = TASK_LINE.search(state.feedback)
        if match is None:
            raise AlfworldDataError(f"{self.game_files[index]}: the intro has no 'Your task is to:' line")
        self._task = match.group(1).strip()
        self._won = bool(state["won"])
        self._plan = None
        return self._observe(state.feedback, state["admissible_commands"])

    def _step(self, index: int) -> tuple[TextObservation, float, bool, bool, dict[str, Any]]:
        command = self.observation.actions[index]
        state, score, done = self._tw.step(command)
        self._won = bool(state["won"])
        if self._plan and self._plan[0] == command:
            self._plan = self._plan[1:]  # the rest of an optimal plan is optimal from the next state
        else:
            self._plan = None
        obs, info = self._observe(state.feedback, state["admissible_commands"])
        return obs, float(score), bool(done), False, info

    # -- expert -----------------------------------------------------------------------------------------------
    def _expert_plan(self) -> list[str]:
        """The planner's plan from the current state: the stored one while the agent follows it, else replanned."""
        if self._won:
            return []
        if not self._plan or self._plan[0] not in self._admissible:
            state, infos = self._pddl._pddl_state, self._pddl._entity_infos
            plan = expert.optimal_plan(state, infos, self._goal) if self._goal else None
            if not plan or plan[0] not in self._admissible:
                plan = self.planner_plan()
            self._plan = plan
        return self._plan

    def planner_plan(self) -> list[str]:
        """Fast Downward's plan from the current state (what PddlEnv's ``policy_commands`` computes; slow in big
        rooms: up to ~0.7 s)."""
        return list(self._pddl._pddl_state.replan(self._pddl._entity_infos))

    def expert_action(self) -> int:
        """Index (in ``observation.actions``) of the planner's next command from the current state."""
        if self._obs is None:
            raise RuntimeError("alfworld-pick: call reset() before expert_action()")
        plan = self._expert_plan()
        if not plan:
            raise RuntimeError("alfworld-pick: the goal is reached; there is no expert action")
        try:
            return self._admissible.index(plan[0])
        except ValueError:
            raise RuntimeError(f"alfworld-pick: the planner's command {plan[0]!r} is not admissible here") from None

    def close(self) -> None:
        # The engine's copy of libdownward.so stays loaded: dlclose-ing it (fast_downward.close_lib) crashes the
        # interpreter at exit once two copies have been loaded.
        self._tw.close()
