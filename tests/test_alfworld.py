"""ALFWorld Pick & Place on the real engine: generator, split, protocol, expert, parsing cache, bad input.

The generated games live in the default cache (``envs.alfworld.default_cache_dir()``, or
``$PRIOR_RL_ALFWORLD_CACHE``); the first test that needs them generates them (about a minute on 2 cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Through envs.alfworld, not `import alfworld`: that would export ALFWORLD_DATA into this process.
pytest.importorskip("envs.alfworld", reason="the ALFWorld engine is not installed (see envs/alfworld/README.md)")

import envs  # noqa: E402
from envs.alfworld import AlfworldDataError, AlfworldPick, engine, expert, generate, parse_cache  # noqa: E402
from envs.base import NO_EXPERT_ACTION, EpisodeFinishedError, TextObservation  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root() -> Path:
    from envs.alfworld import generated_root

    return generated_root()


@pytest.fixture(scope="module")
def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


@pytest.fixture(scope="module")
def train_env(root: Path):
    env = envs.make("alfworld-pick", split="train", data="generated")
    yield env
    env.close()


def _play_expert(env: AlfworldPick, seed: int) -> tuple[list[str], dict]:
    obs, info = env.reset(seed=seed)
    commands = []
    while True:
        index = env.expert_action()
        assert obs.actions[index] == info["expert_action"] and obs.expert_action == index
        commands.append(obs.actions[index])
        obs, reward, terminated, truncated, info = env.step(index)
        if terminated or truncated:
            return commands, {"reward": reward, "terminated": terminated, "truncated": truncated, **info}


# -- install ------------------------------------------------------------------------------------------------------
def test_pinned_engine_versions_are_installed():
    # The parsing cache patches textworld 1.7.0 privates and the generator reads alfworld 0.4.2's tables.
    assert engine.installed_versions() == engine.PINNED
    pins = (Path(engine.__file__).parent / "requirements.txt").read_text()
    assert all(f"{name}=={version}" in pins for name, version in engine.PINNED.items())


def test_light_install_imports_nothing_heavy_and_leaves_alfworld_data_unset(root: Path):
    code = (
        "import os, sys, envs\n"
        "env = envs.make('alfworld-pick', split='unseen', data='generated')\n"
        "obs, _ = env.reset(seed=0); env.step(env.expert_action())\n"
        "heavy = sorted(m for m in ('torch', 'spacy', 'cv2', 'ai2thor', 'transformers') if m in sys.modules)\n"
        "print(heavy, 'ALFWORLD_DATA' in os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ALFWORLD_DATA"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[] False"


# -- the split ----------------------------------------------------------------------------------------------------
def test_split_has_28_train_and_26_unseen_tasks(manifest: dict):
    train, unseen = manifest["splits"]["train"], manifest["splits"]["valid_unseen"]
    assert [e["task"] for e in train] == list(generate.TRAIN_TASKS)
    assert len(train) == 28 and len(unseen) == 26
    assert len({e["task"] for e in train}) == 28 and len({e["task"] for e in unseen}) == 26
    reference_pairs = {generate.parse_task(t)[:2] for t in generate.REFERENCE_TASKS}
    unseen_pairs = {(e["object"], e["receptacle"]) for e in unseen}
    assert len(unseen_pairs) == 26 and not unseen_pairs & reference_pairs  # unseen object/receptacle pairs
    assert {e["floor_plan"] for e in train} <= generate.SEEN_FLOOR_PLANS
    assert {e["floor_plan"] for e in unseen} <= generate.UNSEEN_FLOOR_PLANS  # and unseen rooms
    assert [sum(e["kind"] == k for e in unseen) for k in generate.KINDS] == [7, 7, 6, 6]
    for entry in train + unseen:
        obj, recep, _ = generate.parse_task(entry["task"])
        assert (obj, recep) == (entry["object"], entry["receptacle"])
        assert entry["num_receptacles"] <= generate.MAX_RECEPTACLES
        assert "movable" not in entry["game"] and "Sliced" not in entry["game"]  # AlfredTWEnv would skip them


def test_generated_files_follow_the_json_2_1_1_layout(root: Path, manifest: dict):
    domain = Path(engine.ALFRED_PDDL_PATH).read_text()
    for split, entries in manifest["splits"].items():
        for entry in entries:
            game_file = root / "json_2.1.1" / split / entry["game"]
            folder = game_file.parent
            assert sorted(p.name for p in folder.iterdir()) == ["game.tw-pddl", "initial_state.pddl", "traj_data.json"]
            game = json.loads(game_file.read_text())
            assert list(game) == ["pddl_domain", "grammar", "pddl_problem", "solvable", "walkthrough"]
            assert game["pddl_domain"] == domain
            assert game["pddl_problem"] == (folder / "initial_state.pddl").read_text()
            assert game["solvable"] is True and game["walkthrough"]
            assert f"Your task is to: {entry['task'][:-1]}." in game["grammar"]
            assert "UNKNOWN GOAL" not in game["grammar"]
            traj = json.loads((folder / "traj_data.json").read_text())
            assert traj["task_type"] == "pick_and_place_simple"
            assert traj["pddl_params"]["object_target"] == entry["object"]
            assert traj["pddl_params"]["parent_target"] == entry["receptacle"]
            assert f"(objectType ?o {entry['object']}Type)" in game["pddl_problem"]


def test_goal_text_matches_alfworlds_add_task_to_grammar(root: Path, manifest: dict):
    import random

    entry = manifest["splits"]["train"][0]
    folder = (root / "json_2.1.1" / "train" / entry["game"]).parent
    traj = json.loads((folder / "traj_data.json").read_text())
    grammar = Path(engine.ALFRED_TWL2_PATH).read_text()
    wanted = json.loads((folder / "game.tw-pddl").read_text())["grammar"]
    state = random.getstate()
    try:  # alfworld draws the template with the global random: try seeds until it draws ours
        outputs = set()
        for seed in range(20):
            random.seed(seed)
            outputs.add(engine.add_task_to_grammar(grammar, traj))
    finally:
        random.setstate(state)
    assert wanted in outputs


def _digest(game: generate.Game) -> str:
    blob = json.dumps([game.directory, game.traj_data, game.problem, game.game], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def test_generation_is_deterministic(root: Path):
    specs = generate.split_specs()
    assert specs == generate.split_specs()
    checker = generate.PlannerCheck()
    try:
        for spec in (specs["train"][0], specs["train"][11], specs["valid_unseen"][3]):
            game = generate.generate_game(spec, generate.DEFAULT_SEED, checker)
            folder = root / "json_2.1.1" / spec.split / game.directory
            # byte-identical to the cached files written by the full run
            assert (folder / "game.tw-pddl").read_text() == json.dumps(game.game) + "\n"
            assert (folder / "initial_state.pddl").read_text() == game.problem
            assert (folder / "traj_data.json").read_text() == json.dumps(game.traj_data, indent=2) + "\n"
        unseen3 = _digest(generate.generate_game(specs["valid_unseen"][3], generate.DEFAULT_SEED, checker))
        other_seed = generate.generate_game(specs["train"][0], generate.DEFAULT_SEED + 1, checker)
        assert other_seed.problem != generate.generate_game(specs["train"][0], generate.DEFAULT_SEED, checker).problem
    finally:
        checker.close()
    # ... and independent of Python's hash seed (set iteration order), in a fresh process
    code = (
        "import hashlib, json\nfrom envs.alfworld import generate\n"
        "spec = generate.split_specs()['valid_unseen'][3]\n"
        "g = generate.generate_game(spec, 0, generate.PlannerCheck())\n"
        "print(hashlib.sha256(json.dumps([g.directory, g.traj_data, g.problem, g.game], sort_keys=True)"
        ".encode()).hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == unseen3


def test_goal_never_holds_at_start_and_is_reachable(root: Path, manifest: dict):
    # No object of the goal type starts in a receptacle of the goal type; the goal type pair can contain.
    for split, entries in manifest["splits"].items():
        for entry in entries:
            problem = (root / "json_2.1.1" / split / entry["game"]).parent.joinpath("initial_state.pddl").read_text()
            problem, goal = problem.split("(:goal")
            assert f"(objectType ?o {entry['object']}Type)" in goal
            obj, recep = entry["object"], entry["receptacle"]
            receps = {
                line.split()[1]
                for line in problem.splitlines()
                if f"{recep}Type)" in line and "(receptacleType" in line
            }
            objects = {
                line.split()[1]
                for line in problem.splitlines()
                if line.strip().startswith("(objectType") and line.strip().endswith(f" {obj}Type)")
            }
            assert receps and objects
            hosts = {
                line.split()[2].rstrip(")")
                for line in problem.splitlines()
                if line.strip().startswith("(inReceptacle") and line.split()[1] in objects
            }
            assert not hosts & receps
            assert f"(canContain {recep}Type {obj}Type)" in problem


# -- playing ------------------------------------------------------------------------------------------------------
def test_protocol_reset_observation_and_info(train_env: AlfworldPick):
    obs, info = train_env.reset(seed=0)
    assert isinstance(obs, TextObservation)
    assert obs.task == generate.TRAIN_TASKS[0] == "put some cellphone on armchair."
    assert obs.state.startswith("You are in the middle of a room.") and "Welcome" not in obs.state
    assert obs.state.endswith(f"Your task is to: {obs.task}")
    assert obs.actions and all(isinstance(a, str) for a in obs.actions) and list(obs.actions) == sorted(obs.actions)
    assert obs.prompt.startswith(f"Task: Your task is to: {obs.task}\nCurrent observation:{obs.state}. ")
    assert f"You are allowed to take the following actions: {', '.join(obs.actions)}." in obs.prompt
    assert obs.prompt.endswith("Please select an action from the admissible actions. \n Action:")
    assert obs.family == "alfworld" and obs.extra["game"] == 0
    assert info["success"] is False and info["expert_action"] in obs.actions
    assert train_env.max_steps == 50


def test_reset_seed_selects_game_and_no_seed_cycles(root: Path):
    env = envs.make("alfworld-pick", split="unseen", data="generated")
    try:
        assert env.num_games == 26
        tasks = [env.reset(seed=s)[0].task for s in (3, 3 + 26, 5)]
        assert tasks == [env.tasks[3], env.tasks[3], env.tasks[5]]
        fresh = envs.make("alfworld-pick", split="unseen", data="generated")
        assert [fresh.reset()[0].task for _ in range(3)] == env.tasks[:3]
        pinned = envs.make("alfworld-pick", split="unseen", data="generated", game=env.tasks[7])
        assert pinned.reset(seed=0)[0].task == env.tasks[7]
        with pytest.raises(ValueError, match="no unseen game has the task"):
            envs.make("alfworld-pick", split="unseen", data="generated", game="put a banana in toaster.")
        with pytest.raises(ValueError, match="unknown split"):
            envs.make("alfworld-pick", split="test", data="generated")
    finally:
        env.close()


def test_bad_actions_raise_and_change_nothing(train_env: AlfworldPick):
    obs, _ = train_env.reset(seed=0)
    for bad in (len(obs.actions), -1, "put cellphone 1 in/on armchair 1", 1.5, True):
        with pytest.raises(ValueError, match="admissible"):
            train_env.step(bad)
    assert train_env.observation == obs and train_env.episode_steps == 0


def test_expert_wins_with_move_command_then_episode_is_finished(train_env: AlfworldPick):
    commands, last = _play_expert(train_env, seed=0)
    assert commands[-1].startswith("move cellphone ") and " to armchair " in commands[-1]
    assert last["reward"] == 1.0 and last["terminated"] and not last["truncated"] and last["success"]
    assert last["expert_action"] is None and train_env.observation.expert_action == NO_EXPERT_ACTION
    assert "You move the cellphone" in train_env.observation.state
    with pytest.raises(EpisodeFinishedError):
        train_env.step(0)
    with pytest.raises(RuntimeError, match="goal is reached"):
        train_env.expert_action()


def test_put_is_not_a_command_move_is(train_env: AlfworldPick):
    obs, _ = train_env.reset(seed=0)
    walkthrough = json.loads(Path(obs.extra["gamefile"]).read_text())["walkthrough"]
    for command in walkthrough[:-1]:
        obs, *_ = train_env.step(command)
    assert walkthrough[-1] in obs.actions and walkthrough[-1].startswith("move ")
    assert not [a for a in obs.actions if a.startswith("put ")]
    put = walkthrough[-1].replace("move", "put", 1).replace(" to ", " in/on ")
    with pytest.raises(ValueError, match="admissible"):
        train_env.step(put)
    # The raw engine ignores the 0.3.x wording ("Nothing happens.") - that is why the env refuses it.
    state, score, done = train_env._tw.step(put)
    assert state.feedback == "Nothing happens." and score == 0 and not done


def test_step_cap_truncates(root: Path):
    env = envs.make("alfworld-pick", split="train", data="generated", max_steps=3)
    try:
        env.reset(seed=1)
        results = [env.step("look") for _ in range(3)]
        assert [r[3] for r in results] == [False, False, True] and not any(r[2] for r in results)
        assert results[-1][4]["success"] is False and results[-1][4]["episode_steps"] == 3
        with pytest.raises(EpisodeFinishedError):
            env.step("look")
    finally:
        env.close()


def test_expert_recovers_after_detours_and_matches_fast_downward(train_env: AlfworldPick):
    rng = np.random.default_rng(0)
    checked = 0
    for seed in (0, 2, 5, 8, 17):
        obs, _ = train_env.reset(seed=seed)
        for _ in range(6):  # wander off the plan: take, open, go elsewhere
            obs, _, terminated, _, info = train_env.step(int(rng.integers(len(obs.actions))))
            if terminated:
                break
            mine = expert.optimal_plan(train_env._pddl._pddl_state, train_env._pddl._entity_infos, train_env._goal)
            planner = train_env.planner_plan()
            assert len(mine) == len(planner) and mine[0] in obs.actions and info["expert_action"] == mine[0]
            checked += 1
        if not terminated:
            steps = 0
            while not terminated:
                obs, _, terminated, _, info = train_env.step(train_env.expert_action())
                steps += 1
            assert info["success"] and steps == len(planner)
    assert checked >= 20


def test_parse_cache_gives_identical_observations(root: Path):
    def episode_texts(cached: bool) -> list:
        env = envs.make("alfworld-pick", split="unseen", data="generated")
        previous = parse_cache.set_enabled(cached)
        try:
            rng = np.random.default_rng(7)
            texts = []
            for seed in (0, 4):
                obs, info = env.reset(seed=seed)
                texts.append((obs.prompt, obs.actions, info["expert_action"]))
                for _ in range(12):
                    obs, reward, terminated, truncated, info = env.step(int(rng.integers(len(obs.actions))))
                    texts.append((obs.prompt, obs.actions, reward, terminated, info["expert_action"]))
                    if terminated:
                        break
            return texts
        finally:
            parse_cache.set_enabled(previous)
            env.close()

    argv = list(sys.argv)
    cached = episode_texts(True)
    assert sys.argv == argv  # the Fast Downward translator overwrites sys.argv; the wrapper restores it
    stock = episode_texts(False)
    assert len(cached) > 10 and cached == stock
    assert parse_cache.stats()["templates"]["hits"] > 0 and parse_cache.stats()["sas"]["hits"] > 0


# -- real-data path and bad input ---------------------------------------------------------------------------------
def _copy_split(root: Path, tmp_path: Path, split: str = "train") -> Path:
    data = tmp_path / "alfworld_data"
    shutil.copytree(root / "json_2.1.1" / split, data / "json_2.1.1" / split)
    return data  # no manifest.json: read like the downloaded dataset


def test_alfworld_data_plays_a_dataset_folder(root: Path, tmp_path: Path, monkeypatch):
    data = _copy_split(root, tmp_path)
    monkeypatch.setenv("ALFWORLD_DATA", str(data))
    env = envs.make("alfworld-pick", split="train")
    try:
        assert env.num_games == 28 and sorted(env.tasks) == sorted(generate.TRAIN_TASKS)
        commands, last = _play_expert(env, seed=3)
        assert last["success"] and str(data) in last["gamefile"]
    finally:
        env.close()
    # ALFWorld's own loader accepts the same folder
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    config = {
        "env": {"goal_desc_human_anns_prob": 0.0, "task_types": [1]},
        "dataset": {"data_path": str(data / "json_2.1.1" / "train"), "num_train_games": -1},
    }
    assert len(AlfredTWEnv(config, train_eval="train").game_files) == 28


def test_alfworld_data_without_games_names_the_path(tmp_path: Path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("ALFWORLD_DATA", str(empty))
    with pytest.raises(AlfworldDataError, match=re.escape(str(empty))):
        envs.make("alfworld-pick", split="train")
    (empty / "json_2.1.1" / "valid_unseen" / "some_task" / "trial_1").mkdir(parents=True)
    with pytest.raises(AlfworldDataError, match="holds no solvable Pick & Place game"):
        envs.make("alfworld-pick", split="unseen")


def test_missing_or_malformed_game_file_names_the_path(root: Path, tmp_path: Path):
    data = _copy_split(root, tmp_path)
    env = envs.make("alfworld-pick", split="train", data=str(data))
    try:
        game = Path(env.game_files[0])
        game.write_text("{not json")
        with pytest.raises(AlfworldDataError, match=f"{re.escape(str(game))}: not a readable game.tw-pddl"):
            env.reset(seed=0)
        game.write_text(json.dumps({"pddl_domain": "x", "solvable": True}))
        missing = f"{re.escape(str(game))}: .*missing or empty grammar, pddl_problem"
        with pytest.raises(AlfworldDataError, match=missing):
            env.reset(seed=0)
        good = json.loads(Path(env.game_files[1]).read_text())
        for problem in ("(define (problem broken", good["pddl_problem"].replace("(pickupable ", "(pickupabel ")):
            game.write_text(json.dumps({**good, "pddl_problem": problem}))  # tatsu error; FD's SystemExit
            with pytest.raises(AlfworldDataError, match=f"{re.escape(str(game))}: the ALFWorld engine cannot load"):
                env.reset(seed=0)
        game.unlink()
        with pytest.raises(AlfworldDataError, match=f"not found: {re.escape(str(game))}"):
            env.reset(seed=0)
        assert env.reset(seed=1)[0].task  # the other games still play
    finally:
        env.close()


def test_generator_writes_atomically(tmp_path: Path, monkeypatch):
    out = tmp_path / "games"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # a run interrupted half-way

    monkeypatch.setattr(generate, "generate_game", killed)
    with pytest.raises(KeyboardInterrupt):
        generate.generate_dataset(out)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no partial dataset, no temp folder left
    out.mkdir()
    with pytest.raises(FileExistsError):
        generate.generate_dataset(out)


# -- every game (slow) --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "unseen"])
def test_every_game_is_solvable_and_the_expert_wins_within_the_cap(root: Path, split: str):
    env = envs.make("alfworld-pick", split=split, data="generated")
    try:
        assert env.num_games == {"train": 28, "unseen": 26}[split]
        for seed in range(env.num_games):
            obs, info = env.reset(seed=seed)
            assert not info["won"] and obs.task == env.tasks[seed]
            walkthrough = json.loads(Path(obs.extra["gamefile"]).read_text())["walkthrough"]
            # the stored planner walkthrough wins, on its last step only
            for i, command in enumerate(walkthrough):
                obs, reward, terminated, truncated, info = env.step(command)
                assert terminated == (i == len(walkthrough) - 1) and not truncated
            assert reward == 1.0 and info["success"]
            # the expert wins from the start within the 50-step cap, as fast as the planner
            commands, last = _play_expert(env, seed)
            assert last["success"] and last["terminated"] and len(commands) == len(walkthrough) <= 50
    finally:
        env.close()
