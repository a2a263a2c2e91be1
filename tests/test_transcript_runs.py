"""The transcript prior in runs: every algorithm offered ``--prompt transcript`` trains with it, logs LLM time and
KV-cache statistics, and refuses the combinations it cannot serve with one clear line (exit 2)."""

from __future__ import annotations

import pytest

from prior_rl import cli
from prior_rl.prior.transcripts import TranscriptPrompt
from prior_rl.run import ModelStore, OfflineConfig, TrainConfig, train
from tests.test_prior_context import tiny_llm  # noqa: F401  (the fixture: a random 2-layer model, 512 tokens)

# The real demonstrations with the embedded model: tests/test_transcripts.py and benchmarks/prior_alfworld.py.

QUIET = dict(progress=False, tensorboard=False, plot=False)
SHORT = {
    "dqn-prior": dict(env_steps=24, learning_starts=8, train_every=8, updates_per_train=1, log_every=12),
    "llm": dict(env_steps=16, log_every=8),
    "ppo-prior": dict(env_steps=16, rollout_steps=8, ppo_minibatches=2, ppo_epochs=1, log_every=8),
}


@pytest.mark.parametrize("algo", list(SHORT))
def test_every_prior_algorithm_trains_with_the_transcript_prompt(tiny_llm, algo):  # noqa: F811
    store = ModelStore()
    store.add_llm("tiny", tiny_llm)
    config = TrainConfig(
        env="frozen-lake",
        algo=algo,
        llm="tiny",
        prompt="transcript",
        transcript_demos=0,  # the tiny model's 512-token context holds no Frozen Lake demonstration
        num_envs=2,
        eval_every=10_000,
        eval_episodes=1,
        **SHORT[algo],
        **QUIET,
    )
    result = train(config, store=store)
    prior = store.run_prior(config)
    assert isinstance(prior.prompt_fn, TranscriptPrompt) and prior.normalize is False  # the family's default: sum
    last = result.history[-1]
    # every step's prompt is new, and the episode cache answers its history: only the new turn is encoded
    assert last["llm_calls"] > 0 and last["llm_s"] > 0
    assert last["preamble_hits"] > 0 and last["episode_extensions"] > 0 and last["turn_tokens_reused"] > 0
    assert prior.context.stats()["turn_nodes"] > 0


def test_the_context_cache_is_configurable_and_the_scores_equal(tiny_llm):  # noqa: F811
    import numpy as np

    import envs
    from envs.history import WithTranscript

    store = ModelStore()
    store.add_llm("tiny", tiny_llm)
    priors = {
        mode: store.prior("tiny", prompt="transcript", transcript=(0, "fixed", None), context_cache=mode)
        for mode in ("episode", "preamble", "off")
    }
    assert len({id(p) for p in priors.values()}) == 3 and priors["off"].context_mode == "off"
    env = WithTranscript(envs.make("frozen-lake", max_steps=20))
    obs, _ = env.reset(seed=0)
    for step in range(4):
        scores = {mode: p.logprobs([obs])[0] for mode, p in priors.items()}
        for mode in ("episode", "preamble"):
            np.testing.assert_allclose(scores[mode], scores["off"], atol=1e-4, err_msg=f"{mode}, step {step}")
        obs, *_ = env.step(env.expert_action())  # the expert never falls in a hole
    assert priors["episode"].counters["episode_extensions"] >= 3


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--prompt", "transcript", "--history", "2"], "--history applies to the paper/chat prompts"),
        (["train", "--prompt", "transcript", "--transcript-turns", "1"], "--transcript-turns: must be an integer >= 2"),
        (["train", "--prompt", "transcript", "--context-cache", "all"], "--context-cache"),
        (["train", "--sum-logprobs", "--mean-logprobs"], "not allowed with argument"),
        (
            ["offline", "--prompt", "transcript", "--dataset-size", "10"],
            "offline runs take --prompt env, paper, chat or transcript-state",
        ),
    ],
)
def test_bad_transcript_options_are_one_clear_line(argv, needle, capsys, tmp_path):
    code = cli.main(argv + ["--run-dir", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_offline_config_refuses_the_transcript_prompt():
    with pytest.raises(ValueError, match="dataset transitions do not carry"):
        OfflineConfig(prompt="transcript", dataset_size=10)


def test_the_default_scoring_follows_the_prompt_family():
    assert TrainConfig(prompt="transcript").normalize is False
    assert TrainConfig(prompt="env").normalize is True
    assert TrainConfig(prompt="transcript", length_normalize=True).normalize is True


def test_generate_mode_resumes_with_its_generation_cache(tiny_llm, tmp_path):  # noqa: F811
    """A generate-mode run stopped after a checkpoint and resumed logs what an uninterrupted one does: the
    generation cache (a prompt's k texts, drawn once) is checkpointed beside the prior cache."""
    import dataclasses

    class Stop(Exception):
        pass

    def run(config, on_log=None):
        store = ModelStore()
        store.add_llm("tiny", tiny_llm)
        return train(config, on_log=on_log, store=store)

    def config(name):
        return TrainConfig(
            env="frozen-lake",
            algo="dqn-prior",
            llm="tiny",
            prior_mode="generate",
            env_steps=48,
            num_envs=2,
            learning_starts=8,
            train_every=8,
            updates_per_train=1,
            log_every=8,
            eval_every=10_000,
            eval_episodes=1,
            checkpoint_every=2,
            seed=3,
            run_dir=str(tmp_path / name),
            **QUIET,
        )

    straight = run(config("straight"))
    seen = []

    def stop_after_a_checkpoint(row):
        seen.append(row)
        if list((tmp_path / "stopped" / "checkpoints").glob("step_*")) and len(seen) >= 3:
            raise Stop

    with pytest.raises(Stop):
        run(config("stopped"), on_log=stop_after_a_checkpoint)
    assert list((tmp_path / "stopped" / "checkpoints").glob("*generation_cache.npz"))
    resumed = run(dataclasses.replace(config("stopped"), resume=True))
    clock = ("wall_s", "env_steps_per_s", "llm_s")
    rows = [[{k: v for k, v in r.items() if k not in clock} for r in h] for h in (straight.history, resumed.history)]
    assert rows[0] == rows[1]
    assert rows[0][-1]["generation_hits"] > 0  # revisited prompts reused their generations


def test_the_generation_cache_can_be_turned_off(tiny_llm):  # noqa: F811
    store = ModelStore()
    store.add_llm("tiny", tiny_llm)
    assert store.prior("tiny", generation_cache=False).generation_cache is None
    assert store.prior("tiny").generation_cache is not None
    config = TrainConfig(llm="tiny", prior_mode="generate", generation_cache=False)
    assert store.run_prior(config).generation_cache is None
