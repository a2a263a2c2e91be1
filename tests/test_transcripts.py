"""prior_rl.prior.transcripts: segmented transcript prompts with expert demonstrations of other training tasks."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest

import envs
from envs.history import WithHistory, WithTranscript
from prior_rl.prior.transcripts import (
    DEFAULT_NORMALIZE,
    FROZEN_LAKE_MAPS,
    Demonstration,
    DemonstrationLeakError,
    DemonstrationPool,
    SegmentedPrompt,
    TaskId,
    TranscriptPrompt,
    check_demonstrations,
    check_token_budget,
    count_tokens,
    played_task,
)

HAS_ALFWORLD = importlib.util.find_spec("alfworld") is not None and importlib.util.find_spec("textworld") is not None
needs_alfworld = pytest.mark.skipif(not HAS_ALFWORLD, reason="the ALFWorld engine is not installed")


def _expert_observations(env, seed=0):
    """Every observation of the expert's episode from reset (the final one included)."""
    obs, _ = env.reset(seed=seed)
    seen = [obs]
    while True:
        obs, _, terminated, truncated, _ = env.step(env.expert_action())
        seen.append(obs)
        if terminated or truncated:
            return seen


class WordTokenizer:
    """Whitespace 'tokens': enough for the budget helpers."""

    def encode(self, text, add_special_tokens=True):
        return text.split()


def _assert_segmented(prompts):
    first = prompts[0]
    for t, p in enumerate(prompts):
        assert isinstance(p, SegmentedPrompt)
        assert p.text == p.preamble + "".join(p.turns) + p.cue
        assert p.preamble == first.preamble  # one preamble for the whole episode
        assert p.cue == "> "
        assert len(p.turns) == t + 1
        assert p.turns[:t] == prompts[t - 1].turns if t else True  # turns never change once produced


# -- rendering ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["overcooked-tomato-salad", "overcooked-tomato-lettuce-salad", "frozen-lake"])
def test_segments_preamble_fixed_and_turns_stable(name):
    tp = TranscriptPrompt(make_env=envs.make)
    env = WithTranscript(envs.make(name))
    observations = _expert_observations(env)[:-1]
    prompts = [tp(o) for o in observations]
    _assert_segmented(prompts)
    assert tp.text(observations[-1]) == prompts[-1].text and tp.action_prefix == ""
    last = prompts[-1]
    assert last.turns[0].startswith("Your task is to")
    for t, obs in enumerate(observations[1:], 1):  # turn t = the action taken, then the observation it led to
        assert last.turns[t] == f"> {obs.history[-1][1]}\n{obs.state}\n"
    demos = tp.demonstrations(observations[0])
    assert demos and all(d.success for d in demos)
    assert all(d.task != observations[0].task or d.task_id.layout for d in demos)
    assert last.preamble.count("Your task is to") == len(demos)


def test_overcooked_demonstrations_come_from_the_other_tasks():
    tp = TranscriptPrompt(n_demos=1, make_env=envs.make)
    salad, _ = WithTranscript(envs.make("overcooked-tomato-salad")).reset()
    lettuce, _ = WithTranscript(envs.make("overcooked-tomato-lettuce-salad")).reset()
    assert [d.source for d in tp.demonstrations(salad)] == ["overcooked-tomato-lettuce-salad"]
    assert [d.source for d in tp.demonstrations(lettuce)] == ["overcooked-tomato-salad"]
    similar = TranscriptPrompt(n_demos=1, selection="similar", make_env=envs.make)
    assert [d.source for d in similar.demonstrations(lettuce)] == ["overcooked-tomato-lettuce-onion-salad"]
    three = TranscriptPrompt(make_env=envs.make)  # only two other tasks exist
    assert len(three.demonstrations(salad)) == 2


def test_frozen_lake_demonstrations_are_on_other_maps():
    desc = list(FROZEN_LAKE_MAPS[0])
    tp = TranscriptPrompt(make_env=envs.make)
    obs, _ = WithTranscript(envs.make("frozen-lake", desc=desc)).reset(seed=0)
    assert obs.extra["map"] == tuple(desc)
    layouts = [d.task_id.layout for d in tp.demonstrations(obs)]
    assert tuple(desc) not in layouts and layouts == list(FROZEN_LAKE_MAPS[1:4])
    big, _ = WithTranscript(envs.make("frozen-lake", map_name="8x8")).reset(seed=0)
    similar = TranscriptPrompt(selection="similar", make_env=envs.make)
    assert all(len(d.task_id.layout) == 8 for d in similar.demonstrations(big))


def test_history_budget_drops_the_oldest_turns_but_keeps_turn_0():
    env = WithTranscript(envs.make("overcooked-tomato-lettuce-salad"))
    observations = _expert_observations(env)[:-1]
    full = TranscriptPrompt(make_env=envs.make)(observations[-1])
    cut = TranscriptPrompt(max_turns=3, make_env=envs.make)(observations[-1])
    assert len(full.turns) == len(observations) > 3
    assert cut.turns == (full.turns[0],) + full.turns[-2:]
    assert cut.preamble == full.preamble
    short = TranscriptPrompt(max_turns=3, make_env=envs.make)(observations[1])
    assert len(short.turns) == 2  # under budget: nothing dropped
    with pytest.raises(ValueError, match="max_turns"):
        TranscriptPrompt(max_turns=1)


def test_token_budget_helpers():
    tok = WordTokenizer()
    p = SegmentedPrompt("a b c\n", ("d e\n", "f\n"), "> ")
    assert count_tokens(p, tok) == count_tokens(p.text, tok) == 7
    assert check_token_budget(p, tok, 7) == 7
    with pytest.raises(ValueError, match="exceeds the budget"):
        check_token_budget(p, tok, 8, reserve=2)
    env = WithTranscript(envs.make("frozen-lake"))
    observations = _expert_observations(env)[:-1]
    loose = TranscriptPrompt(n_demos=1, make_env=envs.make)(observations[-1])
    n = count_tokens(loose, tok)
    fitted = TranscriptPrompt(n_demos=1, make_env=envs.make, max_tokens=n - 10, tokenizer=tok, reserve=0)
    cut = fitted(observations[-1])
    assert count_tokens(cut, tok) <= n - 10 and cut.turns[0] == loose.turns[0] and cut.turns[-1] == loose.turns[-1]
    with pytest.raises(ValueError, match="exceeds the budget"):
        TranscriptPrompt(n_demos=1, make_env=envs.make, max_tokens=20, tokenizer=tok)(observations[-1])


def test_needs_the_whole_episode_and_a_way_to_play_demonstrations():
    tp = TranscriptPrompt(make_env=envs.make)
    plain, _ = envs.make("overcooked-tomato-salad").reset()
    with pytest.raises(ValueError, match="WithTranscript"):
        tp(plain)
    truncated = WithHistory(envs.make("overcooked-tomato-salad"), 1)
    truncated.reset()
    truncated.step(0)
    obs, *_ = truncated.step(0)
    with pytest.raises(ValueError, match="WithTranscript"):
        tp(obs)
    assert TranscriptPrompt(require_transcript=False, make_env=envs.make)(plain).turns[0].startswith("Your task")
    lake, _ = envs.make("frozen-lake").reset(seed=0)
    assert lake.extra["map"] == tuple(envs.make("frozen-lake").desc)  # the env names its own map
    unnamed = dataclasses.replace(lake, extra={k: v for k, v in lake.extra.items() if k != "map"})
    with pytest.raises(ValueError, match="map"):
        TranscriptPrompt(require_transcript=False, make_env=envs.make)(unnamed)
    obs, _ = WithTranscript(envs.make("overcooked-tomato-salad")).reset()
    with pytest.raises(ValueError, match="make_env"):
        TranscriptPrompt()(obs)
    with pytest.raises(ValueError, match="family"):
        TranscriptPrompt(make_env=envs.make)(envs.TextObservation("p", ("a",), "t", extra={"transcript_steps": 0}))


# -- the leak check -------------------------------------------------------------------------------------------
def _demo(task, split="train", layout=()):
    return Demonstration(TaskId("alfworld", task, split, layout), (("You are here.", "look"),), "Done.", True, task)


def test_check_demonstrations_refuses_the_played_task_and_the_unseen_split():
    played = TaskId("alfworld", "put some cellphone on armchair.", "train")
    check_demonstrations([_demo("put some candle on toilet.")], played)
    with pytest.raises(DemonstrationLeakError, match="being played"):
        check_demonstrations([_demo("put some candle on toilet."), _demo("Put some cellphone on armchair")], played)
    with pytest.raises(DemonstrationLeakError, match="unseen"):
        check_demonstrations([_demo("put some mug on fridge.", split="unseen")], played)
    with pytest.raises(DemonstrationLeakError, match="unseen"):  # never from outside the training split
        check_demonstrations([_demo("put some mug on fridge.", split="unseen")], TaskId("alfworld", "x", "unseen"))
    lake = TaskId("frozen-lake", "Reach the goal.", "train", ("SF", "FG"))
    other = Demonstration(TaskId("frozen-lake", "Reach the goal.", "train", ("SH", "FG")), (), "", True)
    same = Demonstration(TaskId("frozen-lake", "Reach the goal.", "train", ("SF", "FG")), (), "", True)
    check_demonstrations([other], lake)
    with pytest.raises(DemonstrationLeakError, match="being played"):
        check_demonstrations([same], lake)


class _LeakyPool(DemonstrationPool):
    """A pool whose selection ignores the exclusion: the prompt's own check must still refuse it."""

    def select(self, played, n, selection="fixed"):
        return [Demonstration(played, (("s", "a"),), "f", True, "the played task itself")]


def test_a_prompt_never_renders_a_leaking_demonstration():
    obs, _ = WithTranscript(envs.make("overcooked-tomato-salad")).reset()
    tp = TranscriptPrompt(pools={"overcooked": _LeakyPool("overcooked", envs.make)})
    with pytest.raises(DemonstrationLeakError):
        tp(obs)


# -- ALFWorld -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alfworld():
    train = WithTranscript(envs.make("alfworld-pick", split="train"))
    unseen = WithTranscript(envs.make("alfworld-pick", split="unseen"))
    tp = TranscriptPrompt(make_env=envs.make)
    yield train, unseen, tp
    train.close()
    unseen.close()


@needs_alfworld
def test_alfworld_transcript_segments_and_fixed_demonstrations(alfworld):
    train, unseen, tp = alfworld
    tasks = train.tasks
    observations = _expert_observations(unseen, seed=0)[:-1]
    prompts = [tp(o) for o in observations]
    _assert_segmented(prompts)
    first = prompts[0].turns[0]
    assert first.startswith(f"Your task is to: {observations[0].task}\nYou are in the middle of a room.")
    assert first.count("Your task is to") == 1 and "You are allowed" not in prompts[-1].text  # obs.state, not llf
    assert [d.task for d in tp.demonstrations(observations[0])] == tasks[:3]
    # fixed selection: the first three training tasks other than the played one
    obs0, _ = train.reset(seed=0)
    assert [d.task for d in tp.demonstrations(obs0)] == tasks[1:4]
    obs5, _ = train.reset(seed=5)
    assert tp.preamble(obs5) == tp.preamble(observations[0])  # the same preamble for every task outside the first N
    assert all(d.task_id.split == "train" and d.task != obs0.task for d in tp.demonstrations(obs0))
    assert played_task(observations[0]).split == "unseen"


@needs_alfworld
def test_alfworld_similar_demonstrations_share_object_or_receptacle(alfworld):
    train, _, _ = alfworld
    similar = TranscriptPrompt(selection="similar", make_env=envs.make)
    obs, _ = train.reset(seed=train.tasks.index("put a cellphone in armchair."))
    demos = [d.task for d in similar.demonstrations(obs)]
    assert "put a cellphone in armchair." not in demos
    assert demos[-1] == "put some cellphone on armchair."  # the closest sits next to the episode
    assert all("cellphone" in t or "armchair" in t for t in demos)


@needs_alfworld
def test_alfworld_demonstrations_from_the_unseen_split_are_refused(alfworld):
    train, _, _ = alfworld
    obs, _ = train.reset(seed=0)
    leaky = TranscriptPrompt(pools={"alfworld": DemonstrationPool("alfworld", envs.make, split="unseen")})
    with pytest.raises(DemonstrationLeakError, match="unseen"):
        leaky(obs)
    with pytest.raises(ValueError, match="split"):
        TranscriptPrompt(make_env=envs.make, env_options={"split": "unseen"})


def test_default_normalize_covers_every_prompt_family():
    from prior_rl.run.config import PROMPTS

    assert set(PROMPTS) <= set(DEFAULT_NORMALIZE) and DEFAULT_NORMALIZE["transcript"] is False


# -- the benchmark --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_quick_benchmark_runs(tmp_path):
    from benchmarks import prior_alfworld

    payload = prior_alfworld.main(["--quick", "--suites", "frozen-lake-4x4", "--out-dir", str(tmp_path)])
    rows = {(r["prompt"], r["scoring"]): r for r in payload["rows"]}
    assert set(rows) == {("env", "mean"), ("env", "sum"), ("transcript", "mean"), ("transcript", "sum")}
    assert all(r["states"] == 6 and 0 < r["mean p(expert)"] <= 1 for r in rows.values())
    assert json.loads((tmp_path / "prior_alfworld_quick.json").read_text())["rows"] == payload["rows"]
