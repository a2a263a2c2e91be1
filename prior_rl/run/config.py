"""Run configurations: what every run shares (:class:`RunConfig`), online runs (:class:`TrainConfig`) and offline
runs (:class:`OfflineConfig`). Frozen dataclasses, validated on construction, written to ``config.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import envs

ALGOS = ("dqn-prior", "dqn", "llm", "ppo-prior", "ppo")
VALUE_ALGOS = ("dqn-prior", "dqn")
PRIOR_ALGOS = ("dqn-prior", "llm", "ppo-prior", "cql-prior")
OFFLINE_ALGOS = ("cql-prior", "cql")
PROMPTS = ("env", "paper", "chat", "transcript", "transcript-state")
SELECTIONS = ("fixed", "similar")
CONTEXT_CACHES = ("episode", "preamble", "off")

# per-environment defaults: the paper's episode caps (31 / 51 macro steps), Frozen Lake's 20, ALFWorld's 50
DEFAULT_EPISODE_STEPS = {
    "overcooked-tomato-salad": 31,
    "overcooked-tomato-lettuce-salad": 51,
    "overcooked-tomato-lettuce-onion-salad": 51,
    "frozen-lake": 20,
    "alfworld-pick": 50,
}
DEFAULT_FEATURE_STYLE = {"alfworld-pick": "task"}


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stopped and the last good checkpoint is kept."""


@dataclass(frozen=True)
class RunConfig:
    """What every run (online or offline) shares: environment, models, prior, evaluation and run files.

    env, env_options:  ``envs.make(env, max_steps=..., **env_options)``; ``max_episode_steps`` None = the per-env cap.
    llm, encoder:      model specs for ``prior_rl.llm.weights.load_llm`` / ``prior_rl.llm.encoder.load_encoder``.
    llm_dtype, llm_shards: the prior's parameter/activation dtype ("float32" or "bfloat16") and tensor-parallel
                       devices (:mod:`prior_rl.llm.sharding`).
    k, prior_mode:     candidates per state; "exact" (sampled from the exact prior over the admissible set) or
                       "generate" (k generations mapped to actions, the paper's rule).
    prior_temperature: temperature of the prior when sampling candidates / acting as the LLM policy.
    prompt, length_normalize: how the prior scores actions (see :meth:`prior_rl.run.models.ModelStore.prior`);
                       ``length_normalize`` None = the prompt family's measured default
                       (:data:`prior_rl.prior.transcripts.DEFAULT_NORMALIZE`: mean for env/paper/chat, sum for
                       transcript).
    transcript_demos, transcript_selection, transcript_turns: the "transcript" prompt's demonstrations (how many,
                       "fixed" or "similar" tasks) and history budget in turns (None = the whole episode, cut only
                       to fit the model's context); see :class:`prior_rl.prior.transcripts.TranscriptPrompt`.
    context_cache:     KV caching of segmented (transcript) prompts: "episode" (preamble + per-episode history),
                       "preamble" or "off" (:class:`prior_rl.prior.action_prior.ActionPrior`); scores are equal.
    generation_cache:  generate mode: draw a prompt's k generations once and reuse them on every revisit (the
                       reference's per-prompt cache); False = draw anew at every visit.
    history:           keep the last ``history`` (state, action) pairs in ``obs.history``
                       (:class:`envs.history.WithHistory`), which the "paper" and "chat" Overcooked prompts show
                       under "History:" (the reference uses 5); 0 = none.
    max_candidates:    candidate slots when every admissible action is a candidate (rounded up to a multiple of 8).
    devices:           run update dispatches data-parallel over this many devices.
    checkpoint_every:  updates between checkpoints of the whole run state (0 = none); ``resume`` continues from the
                       latest one in ``run_dir``.
    """

    env: str = "overcooked-tomato-salad"
    seed: int = 0
    max_episode_steps: Optional[int] = None
    env_options: tuple[tuple[str, Any], ...] = ()
    llm: str = "smollm2"
    llm_dtype: str = "float32"
    llm_shards: int = 1
    encoder: str = "minilm"
    feature_style: Optional[str] = None
    k: int = 5
    prior_mode: str = "exact"
    prior_temperature: float = 1.0
    prompt: str = "env"
    length_normalize: Optional[bool] = None
    transcript_demos: int = 3
    transcript_selection: str = "fixed"
    transcript_turns: Optional[int] = None
    context_cache: str = "episode"
    generation_cache: bool = True
    history: int = 0
    max_candidates: int = 8
    devices: int = 1
    eval_every: int = 500
    eval_episodes: int = 10
    run_dir: Optional[str] = None
    checkpoint_every: int = 0
    resume: bool = False
    progress: bool = True
    tensorboard: bool = True
    plot: bool = True

    def __post_init__(self):
        if self.env not in envs.names():
            raise ValueError(f"unknown environment {self.env!r}; valid names are: {', '.join(envs.names())}")
        if self.k < 1:
            raise ValueError(f"k must be a positive number of candidates, got {self.k}")
        if self.history < 0:
            raise ValueError(f"history must be 0 (none) or a positive number of steps, got {self.history}")
        if self.prompt not in PROMPTS:
            raise ValueError(f"unknown prompt {self.prompt!r}; valid prompts are: {', '.join(PROMPTS)}")
        if self.prompt.startswith("transcript") and self.history:
            raise ValueError(
                f"--history applies to the paper/chat prompts; --prompt {self.prompt} has its own (transcript: the "
                "whole episode, bounded with --transcript-turns; transcript-state: none)"
            )
        if self.transcript_demos < 0:
            raise ValueError(f"transcript_demos must be >= 0, got {self.transcript_demos}")
        if self.transcript_selection not in SELECTIONS:
            raise ValueError(
                f"unknown transcript selection {self.transcript_selection!r}; valid: {', '.join(SELECTIONS)}"
            )
        if self.transcript_turns is not None and self.transcript_turns < 2:
            raise ValueError(
                f"transcript_turns must be >= 2 (turn 0 with the task and the newest turn), got {self.transcript_turns}"
            )
        if self.llm_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"unknown --llm-dtype {self.llm_dtype!r}; use float32 or bfloat16")
        if self.llm_shards < 1:
            raise ValueError(f"--llm-shards must be a positive number of devices, got {self.llm_shards}")
        if self.context_cache not in CONTEXT_CACHES:
            raise ValueError(f"unknown context cache {self.context_cache!r}; valid: {', '.join(CONTEXT_CACHES)}")
        if self.devices < 1 or self.eval_every < 1 or self.eval_episodes < 0 or self.checkpoint_every < 0:
            raise ValueError("devices and eval_every must be positive; eval_episodes and checkpoint_every >= 0")
        if (self.checkpoint_every or self.resume) and not self.run_dir:
            raise ValueError("checkpoints and --resume need a run directory (run_dir / --run-dir)")

    @property
    def episode_cap(self) -> Optional[int]:
        return self.max_episode_steps if self.max_episode_steps is not None else DEFAULT_EPISODE_STEPS.get(self.env)

    @property
    def normalize(self) -> bool:
        """Whether the prior scores an action by its mean token log-prob (else the sum)."""
        if self.length_normalize is not None:
            return self.length_normalize
        from prior_rl.prior.transcripts import DEFAULT_NORMALIZE

        return DEFAULT_NORMALIZE[self.prompt]

    @property
    def style(self) -> str:
        return self.feature_style or DEFAULT_FEATURE_STYLE.get(self.env, "paper")

    @property
    def budget(self) -> int:
        """What the progress bar counts: environment samples online, updates offline."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env_options"] = dict(self.env_options)
        return d


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """One online run. Defaults: the paper's Overcooked settings where they exist (docs/method.md §5.A).

    algo:              one of ALGOS.
    env_steps:         environment samples (macro steps, summed over the ``num_envs`` copies).
    env_workers:       step the copies in this many worker processes (0 = in this process); for engines that
                       cannot be jitted (ALFWorld). The transitions are the same.
    epsilon, inv_temperature: exploration over the candidates (ε-greedy, then argmax or softmax(inv_temp·Q)).
    train_every, updates_per_train: every ``train_every`` env samples, one dispatch of that many updates.
    """

    algo: str = "dqn-prior"
    env_steps: int = 3000
    num_envs: int = 4
    env_workers: int = 0
    llm_sample: bool = False
    # value-based
    batch_size: int = 64
    buffer_capacity: int = 4000
    learning_starts: int = 100
    train_every: int = 20
    updates_per_train: int = 8
    epsilon: float = 0.2
    epsilon_final: float = 0.05
    epsilon_decay_steps: int = 1000
    inv_temperature: Optional[float] = None
    learning_rate: float = 5e-4
    gamma: float = 0.99
    tau: float = 0.005
    # policy-based
    rollout_steps: int = 32
    kl_coef: float = 0.1
    ppo_epochs: int = 4
    ppo_minibatches: int = 4
    log_every: int = 100

    def __post_init__(self):
        super().__post_init__()
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; valid algorithms are: {', '.join(ALGOS)}")
        if self.env_steps < 1 or self.num_envs < 1:
            raise ValueError("env_steps and num_envs must be positive")
        if not 0 <= self.env_workers <= self.num_envs:
            raise ValueError(
                f"--env-workers must be between 0 (in this process) and --num-envs ({self.num_envs}), "
                f"got {self.env_workers}"
            )
        if self.algo == "llm" and self.devices > 1:
            raise ValueError("the pure-LLM policy has no updates to run data-parallel; drop --devices")
        if self.algo in ("ppo", "ppo-prior") and (self.rollout_steps * self.num_envs) % self.ppo_minibatches:
            raise ValueError(
                f"rollout_steps × num_envs = {self.rollout_steps * self.num_envs} must be divisible by "
                f"ppo_minibatches={self.ppo_minibatches}"
            )

    @property
    def budget(self) -> int:
        return self.env_steps


@dataclass(frozen=True)
class OfflineConfig(RunConfig):
    """One offline run. Defaults follow the paper's CQL command (batch 128, β = 5, τ = 0.005, 10,000 updates).

    dataset:      a dataset file (our JSON lines, or the reference's ``.pkl``); None = generate ``dataset_size``
                  transitions with :func:`prior_rl.io.datasets.generate`.
    dataset_size: sub-sample to this many transitions (nested across sizes for one ``dataset_seed``).
    """

    env: str = "overcooked-tomato-lettuce-salad"
    algo: str = "cql-prior"
    dataset: Optional[str] = None
    dataset_size: Optional[int] = None
    dataset_seed: int = 0
    success_fraction: float = 0.75
    updates: int = 10_000
    updates_per_dispatch: int = 500
    batch_size: int = 128
    cql_beta: float = 5.0
    learning_rate: float = 5e-4
    gamma: float = 0.99
    tau: float = 0.005
    plot: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.algo not in OFFLINE_ALGOS:
            raise ValueError(f"unknown offline algo {self.algo!r}; valid: {', '.join(OFFLINE_ALGOS)}")
        if self.dataset is None and self.dataset_size is None:
            raise ValueError("give a dataset file (dataset=...) or a size to generate (dataset_size=...)")
        if self.updates < 1 or self.updates_per_dispatch < 1:
            raise ValueError("updates and updates_per_dispatch must be positive")
        if self.prompt == "transcript":
            raise ValueError(
                "--prompt transcript needs each state's episode so far, which dataset transitions do not carry; "
                "offline runs take --prompt env, paper, chat or transcript-state"
            )

    @property
    def budget(self) -> int:
        return self.updates
