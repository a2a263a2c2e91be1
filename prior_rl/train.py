"""Online training: Python environment loops feeding jitted, pure update steps.

``train(TrainConfig(...)) -> TrainResult`` runs one of

* ``dqn-prior`` — k candidates from the LLM prior, Q chooses among them (paper §2.4);
* ``dqn``       — the same Q-learner over every admissible action;
* ``llm``       — the pure-LLM policy (greedy, or sampled with ``llm_sample=True``); nothing is learned;
* ``ppo-prior`` / ``ppo`` — PPO over the admissible set with / without α·KL(π‖p_LLM).

Data flows one way: env text → prompt → prior (candidates, cached per prompt) → features (cached per string)
→ Q → action. The replay buffer stores int32 rows into a feature table, so a transition costs a few bytes.
Every ``checkpoint_every`` updates the complete run state (agent, buffer, feature table, env copies, rngs,
counters) is written atomically; ``resume=True`` continues from the latest checkpoint and ends exactly where an
uninterrupted run with the same seed ends.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import pickle
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.episodes import play_episodes
from prior_rl import checkpoint as ckpt
from prior_rl import replay
from prior_rl.agents import (
    PPOBatch,
    QConfig,
    make_dqn,
    make_dqn_prior,
    make_minibatches,
    make_ppo,
    make_ppo_prior,
)
from prior_rl.candidates import AllActions, Featurizer, PriorCandidates, pad_width
from prior_rl.logging import RunLogger, plot_curves, read_csv
from prior_rl.losses import generalized_advantage_estimation, normalize_advantages

ALGOS = ("dqn-prior", "dqn", "llm", "ppo-prior", "ppo")
VALUE_ALGOS = ("dqn-prior", "dqn")
PRIOR_ALGOS = ("dqn-prior", "llm", "ppo-prior")

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

    env, env_options:  ``envs.make(env, **env_options)``; ``max_episode_steps`` None = the per-env default cap.
    llm, encoder:      model specs for ``prior_rl.weights.load_llm`` / ``prior_rl.encoder.load_encoder``.
    k, prior_mode:     candidates per state; "exact" (sampled from the exact prior over the admissible set) or
                       "generate" (k generations mapped to actions, the paper's rule).
    prior_temperature: temperature of the prior when sampling candidates / acting as the LLM policy.
    prompt, length_normalize: how the prior scores actions (see :func:`load_prior`).
    history:           keep the last ``history`` (state, action) pairs in ``obs.extra["history"]``
                       (:class:`envs.history.WithHistory`), which the "paper" and "chat" Overcooked prompts show
                       under "History:" (the reference uses 5); 0 = none.
    max_candidates:    candidate slots when every admissible action is a candidate (rounded up to a multiple of 8).
    devices:           run update dispatches data-parallel over this many devices.
    """

    env: str = "overcooked-tomato-salad"
    seed: int = 0
    max_episode_steps: Optional[int] = None
    env_options: tuple[tuple[str, Any], ...] = ()
    llm: str = "smollm2"
    encoder: str = "minilm"
    feature_style: Optional[str] = None
    k: int = 5
    prior_mode: str = "exact"
    prior_temperature: float = 1.0
    prompt: str = "env"
    length_normalize: bool = True
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
        if (self.checkpoint_every or self.resume) and not self.run_dir:
            raise ValueError("checkpoints and --resume need a run directory (run_dir / --run-dir)")

    @property
    def episode_cap(self) -> Optional[int]:
        return self.max_episode_steps if self.max_episode_steps is not None else DEFAULT_EPISODE_STEPS.get(self.env)

    @property
    def style(self) -> str:
        return self.feature_style or DEFAULT_FEATURE_STYLE.get(self.env, "paper")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env_options"] = dict(self.env_options)
        return d


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """One online run. Defaults: the paper's Overcooked settings where they exist (method.md §5.A).

    algo:              one of ALGOS.
    env_steps:         environment samples (macro steps, summed over the ``num_envs`` copies).
    epsilon, inv_temperature: exploration over the candidates (ε-greedy, then argmax or softmax(inv_temp·Q)).
    train_every, updates_per_train: every ``train_every`` env samples, one dispatch of that many updates.
    """

    algo: str = "dqn-prior"
    env_steps: int = 3000
    num_envs: int = 4
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


@dataclass
class TrainResult:
    """config; history: every logged row; final_eval: the last evaluation; agent_state: final parameters;
    act: ``(rng, observations) -> action indices`` with the final parameters (greedy), e.g. to evaluate on
    other tasks: ``evaluate(dataclasses.replace(config, env_options=...), result.act, episodes, seed)``."""

    config: Any
    history: list[dict[str, Any]]
    final_eval: dict[str, float]
    agent_state: Any
    run_dir: Optional[Path]
    wall_s: float
    act: Optional[Callable] = None


def make_env(config: TrainConfig, **extra: Any) -> envs.TextEnv:
    options = dict(config.env_options)
    cap_key = "max_macro_steps" if config.env.startswith("overcooked") else "max_episode_steps"
    options.setdefault(cap_key, config.episode_cap)
    options.update(extra)
    env = envs.make(config.env, **options)
    if config.history:
        from envs.history import WithHistory

        env = WithHistory(env, config.history)
    return env


# --------------------------------------------------------------------------------------------------------------
# models: loaded once per process and shared by runs (experiments run many seeds)
_MODELS: dict[tuple[str, ...], Any] = {}


PROMPTS = ("env", "paper", "chat")


def load_prior(llm: str, temperature: float = 1.0, prompt: str = "env", normalize: bool = True) -> Any:
    """The LLM prior, loaded once per process, with a prompt cache.

    prompt "env": the environment's own prompt (``obs.prompt``; for Overcooked TWOSOME's text ending in "you
    should first"), each action scored as its continuation; "paper": RL-LLM-Prior's query (task, history,
    observation, the admissible list, "Action:"); "chat": the paper's query in the model's chat template.
    normalize: score an action by its mean token log-prob (TWOSOME's length normalisation) instead of the sum.
    With SmolLM2-135M the "env" prompt with normalisation covers the expert action best (RESULTS.md).
    ``llm="expert-mix:P"`` is a synthetic prior that puts P on the environment's expert command
    (:mod:`prior_rl.synthetic`), to measure what a stronger prior would change.
    """
    if prompt not in PROMPTS:
        raise ValueError(f"unknown prompt {prompt!r}; valid prompts are: {', '.join(PROMPTS)}")
    from prior_rl import synthetic

    p_expert = synthetic.parse_spec(llm)
    if p_expert is not None:  # "expert-mix:P": a synthetic prior of known quality, no LLM (prior_rl/synthetic.py)
        return synthetic.ExpertMixturePrior(p_expert, temperature)
    key = ("prior", llm, str(temperature), prompt, str(normalize))
    if key not in _MODELS:
        from prior_rl.cache import PriorCache
        from prior_rl.prior import ActionPrior
        from prior_rl.prompts import PromptBuilder
        from prior_rl.weights import load_llm

        base = ("llm", llm)
        if base not in _MODELS:
            _MODELS[base] = load_llm(llm)
        prompt_fn = {"env": _env_prompt, "paper": PromptBuilder(), "chat": PromptBuilder(chat=True)}[prompt]
        # the cache makes a revisited prompt cost no LLM call; its misses are the LLM calls we report
        _MODELS[key] = ActionPrior(_MODELS[base], prompt_fn=prompt_fn, cache=PriorCache(), normalize=normalize,
                                   temperature=temperature)
    return _MODELS[key]


def prior_act(prior: Any, sample: bool = False) -> Callable:
    """The prior itself as a policy: ``act(rng, observations) -> int [N]``, the argmax of p_LLM over each admissible
    set, or (``sample``) a draw from it with the numpy generator ``rng``."""

    def act(rng: np.random.Generator, observations: Sequence[envs.TextObservation]) -> np.ndarray:
        out = []
        for lp in prior.logprobs(list(observations)):
            if sample:
                p = np.exp(lp - lp.max())
                out.append(int(rng.choice(len(p), p=p / p.sum())))
            else:
                out.append(int(np.argmax(lp)))
        return np.array(out)

    return act


def _env_prompt(obs: envs.TextObservation) -> str:
    return obs.prompt


def load_text_encoder(spec: str) -> Any:
    key = ("encoder", spec)
    if key not in _MODELS:
        from prior_rl.encoder import load_encoder

        _MODELS[key] = load_encoder(spec)
    return _MODELS[key]


# --------------------------------------------------------------------------------------------------------------
class _Policy:
    """What acting needs, for every algorithm: candidates, features, and the jitted act of the agent."""

    def __init__(self, config: TrainConfig, prior: Any, featurizer: Optional[Featurizer]):
        self.config, self.prior, self.featurizer = config, prior, featurizer
        if config.algo == "dqn-prior":
            self.source = PriorCandidates(prior, config.k, config.prior_mode)
        else:
            self.source = AllActions(pad_width(config.max_candidates))

    def prior_logp(self, observations) -> tuple[np.ndarray, np.ndarray]:
        """log p_LLM over each admissible set, padded: ([N, K], mask [N, K])."""
        k = self.source.k
        out = np.full((len(observations), k), -1e9, np.float32)
        mask = np.zeros((len(observations), k), bool)
        for n, lp in enumerate(self.prior.logprobs(list(observations))):
            out[n, : len(lp)], mask[n, : len(lp)] = lp, True
        return out, mask


def _epsilon(config: TrainConfig, env_steps: int) -> float:
    frac = min(1.0, env_steps / max(config.epsilon_decay_steps, 1))
    return config.epsilon + frac * (config.epsilon_final - config.epsilon)


def _make_q_agent(config: TrainConfig):
    q_config = QConfig(batch_size=config.batch_size, learning_rate=config.learning_rate, gamma=config.gamma,
                       tau=config.tau, epsilon=config.epsilon, inv_temperature=config.inv_temperature)
    return (make_dqn_prior if config.algo == "dqn-prior" else make_dqn)(q_config)


def evaluate(config: Any, act_fn: Callable, episodes: int, seed: int) -> dict[str, float]:
    """Run ``episodes`` episodes on a fresh env copy, acting with ``act_fn(rng, [obs]) -> [action]``."""
    env = make_env(config)
    try:
        stats = play_episodes(env, lambda rng, obs: int(act_fn(rng, [obs])[0]), episodes, seed)
    finally:
        env.close()
    return {f"eval_{k}": v for k, v in stats.items()}


def make_replay_update(agent: Any, num_updates: int, batch_size: int, devices: int = 1) -> Callable:
    """``update(state, buffer, table, key) -> (state, metrics[num_updates])``: sample [U, B] rows from the replay
    buffer and run U scanned updates, each gathering its own minibatch's features from ``table`` — on one device,
    or data-parallel over ``devices`` (the minibatch split across a mesh, parameters replicated;
    ``prior_rl.parallel``)."""
    if devices <= 1:
        @jax.jit
        def update(state, buffer, table, key):
            return agent.update(state, replay.sample(buffer, key, num_updates, batch_size), table)

        return update
    from prior_rl.parallel import make_mesh, make_sharded_update, shard_batches

    mesh = make_mesh(devices)
    sharded = make_sharded_update(agent, mesh)
    draw = jax.jit(lambda buffer, key: replay.sample(buffer, key, num_updates, batch_size))

    def update(state, buffer, table, key):
        # blocking each multi-device call keeps fake CPU devices out of the all-reduce deadlock (llm-offline §8.4)
        return jax.block_until_ready(sharded(state, shard_batches(draw(buffer, key), mesh), table))

    return update


# --------------------------------------------------------------------------------------------------------------
def train(config: TrainConfig, on_log: Optional[Callable[[dict], None]] = None) -> TrainResult:
    """Run ``config`` to ``config.env_steps`` environment samples; see the module docstring."""
    if config.algo in VALUE_ALGOS or config.algo == "llm":
        return _train_value_based(config, on_log)
    return _train_ppo(config, on_log)


class _Run:
    """Book-keeping shared by the loops: logger, progress bar, episode statistics, checkpoints."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.run_dir = Path(config.run_dir) if config.run_dir else None
        self.logger = RunLogger(self.run_dir, config.tensorboard, resume=config.resume) if self.run_dir else None
        self.manager = ckpt.CheckpointManager(self.run_dir / "checkpoints", every=max(config.checkpoint_every, 1)) \
            if self.run_dir and config.checkpoint_every else None
        if self.run_dir:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(config.to_json(), indent=2))
        self.history: list[dict[str, Any]] = []
        self.recent = deque(maxlen=20)  # (success, return) of the last finished training episodes
        self.t0 = time.perf_counter()
        self.bar = None
        if config.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=config.env_steps, desc=f"{config.algo} {config.env}", unit="step", leave=False)

    def episode_done(self, success: bool, ret: float) -> None:
        self.recent.append((float(success), float(ret)))

    def log(self, row: dict[str, Any], on_log) -> None:
        if self.recent:
            row.setdefault("train_success", float(np.mean([s for s, _ in self.recent])))
            row.setdefault("train_return", float(np.mean([r for _, r in self.recent])))
        row["wall_s"] = time.perf_counter() - self.t0
        row["env_steps_per_s"] = row["env_steps"] / max(row["wall_s"], 1e-9)
        self.history.append(row)
        if self.logger:
            self.logger.log(row)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{row[k]:.2f}" for k in ("eval_success", "train_success", "loss") if k in row})
        if on_log:
            on_log(row)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.logger:
            self.logger.close()
        if self.run_dir and self.config.plot and self.history:
            rows = [r for r in self.history if "eval_success" in r]
            if rows:
                plot_curves({self.config.algo: [(r["env_steps"], r["eval_success"], 0.0) for r in rows]},
                            self.run_dir / "success.png",
                            title=f"{self.config.algo} on {self.config.env} (seed {self.config.seed})")


def _pack(obj: Any) -> str:
    return base64.b64encode(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).decode("ascii")


def _unpack(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


class _LLMCounts:
    """This run's LLM calls and cache hits as log-row fields (none without a cached prior). The prior and its cache
    are shared by the runs of a process, so the counts start from the cache's counters at construction."""

    def __init__(self, prior: Any):
        self.prior = prior
        cache = getattr(prior, "cache", None)
        self.start = (cache.misses, cache.hits) if cache is not None else (0, 0)

    def __call__(self) -> dict[str, int]:
        cache = getattr(self.prior, "cache", None)  # read each time: --resume swaps in the checkpointed cache
        if cache is None:
            return {}
        return {"llm_calls": cache.misses - self.start[0], "cache_hits": cache.hits - self.start[1]}


def _train_value_based(config: TrainConfig, on_log) -> TrainResult:
    run = _Run(config)
    prior = (load_prior(config.llm, config.prior_temperature, config.prompt, config.length_normalize)
             if config.algo in PRIOR_ALGOS else None)
    encoder = load_text_encoder(config.encoder) if config.algo in VALUE_ALGOS else None
    featurizer = Featurizer(encoder, config.style) if encoder is not None else None
    policy = _Policy(config, prior, featurizer)
    k = policy.source.k
    llm_counts = _LLMCounts(prior)

    vec = envs.VectorEnv(lambda: make_env(config), config.num_envs)
    host_rng = np.random.default_rng(config.seed)
    key = jax.random.key(config.seed)

    if config.algo == "llm":
        act_batch = prior_act(prior, sample=config.llm_sample)
        agent = agent_state = None
    else:
        agent = _make_q_agent(config)
        key, init_key = jax.random.split(key)
        agent_state = agent.init(init_key, encoder.dim)

        def act_batch(rng, observations):
            """Greedy over the candidates with the current parameters (evaluation)."""
            idx, mask = policy.source(rng, observations)
            rows = featurizer.rows(observations, idx)
            slot = np.asarray(agent.act(agent_state_ref[0], jax.random.key(int(rng.integers(2**31))),
                                        featurizer.device_table()[rows], jnp.asarray(mask)))
            return idx[np.arange(len(observations)), slot]

    agent_state_ref = [agent_state]  # evaluation reads the current parameters through this cell

    example = replay.IndexedTransition(np.zeros((), np.int32), np.zeros(k, np.int32), np.zeros(k, bool),
                                       np.zeros((), np.float32), np.zeros((), np.float32), np.zeros(k, np.int32),
                                       np.zeros(k, bool))
    buffer = replay.init(example, config.buffer_capacity)

    update = make_replay_update(agent, config.updates_per_train, config.batch_size, config.devices) if agent else None

    env_steps = updates = episodes = 0
    obs, _ = vec.reset(seed=config.seed)
    ep_returns = np.zeros(config.num_envs)
    pending: Optional[tuple] = None  # (idx, mask, rows) of the current observations, reused for acting
    last_metrics: dict[str, float] = {}
    next_log, next_eval, next_ckpt = config.log_every, 0, config.checkpoint_every

    if config.resume and run.manager is not None and run.manager.latest() is not None:
        template = {"agent": agent_state, "buffer": buffer} if agent is not None else {"buffer": buffer}
        restored = run.manager.restore(template)
        host = _unpack(restored.metadata["host"])
        if agent is not None:
            agent_state = restored.state["agent"]
        buffer, key = restored.state["buffer"], restored.rng
        (vec, host_rng, env_steps, updates, episodes, ep_returns, pending, run.recent, table_state,
         last_metrics, history, (next_log, next_eval, next_ckpt), prior_cache) = host
        obs = vec.observations
        if featurizer is not None:
            featurizer.table = table_state
        run.history = history
        if prior_cache is not None:
            prior.cache = prior_cache
        if run.logger:
            run.logger.truncate_after(env_steps)
        run.advance(env_steps)

    def save_checkpoint():
        state = {"agent": agent_state, "buffer": buffer} if agent is not None else {"buffer": buffer}
        host = (vec, host_rng, env_steps, updates, episodes, ep_returns, pending, run.recent,
                featurizer.table if featurizer else None, last_metrics, run.history,
                (next_log, next_eval, next_ckpt), getattr(prior, "cache", None))
        run.manager.save(updates, state, rng=key, metadata={"host": _pack(host), "env_steps": env_steps})

    while env_steps < config.env_steps:
        if env_steps >= next_eval:
            agent_state_ref[0] = agent_state
            ev = evaluate(config, act_batch, config.eval_episodes, seed=10_000 + config.seed * 1000)
            row = {"env_steps": env_steps, "updates": updates, "episodes": episodes, **ev, **last_metrics}
            row.update(llm_counts())
            run.log(row, on_log)
            next_eval += config.eval_every

        if config.algo == "llm":
            actions = act_batch(host_rng, obs)
        else:
            if pending is None:
                idx, mask = policy.source(host_rng, obs)
                pending = (idx, mask, featurizer.rows(obs, idx))
            idx, mask, rows = pending
            key, act_key = jax.random.split(key)
            table = featurizer.device_table()
            slot = np.asarray(agent.act(agent_state, act_key, table[rows], jnp.asarray(mask),
                                        _epsilon(config, env_steps), config.inv_temperature))
            actions = idx[np.arange(config.num_envs), slot]
        step = vec.step(actions)
        env_steps += config.num_envs
        run.advance(config.num_envs)
        ep_returns += step.rewards

        if agent is not None:
            # candidates at s' for the TD target: the final observation of a finished episode, else the new one;
            # the new observations' candidates are reused to act at the next step (as the reference does)
            next_for_target = [f if f is not None else o for f, o in zip(step.final_observations, step.observations)]
            n_idx, n_mask = policy.source(host_rng, next_for_target)
            n_rows = featurizer.rows(next_for_target, n_idx)
            item = replay.IndexedTransition(
                rows[np.arange(config.num_envs), slot], rows, mask, step.rewards,
                (1.0 - step.terminated).astype(np.float32), n_rows, n_mask)
            buffer = replay.add_batch(buffer, jax.tree.map(jnp.asarray, item))
            finished = [i for i, f in enumerate(step.final_observations) if f is not None]
            if finished:
                r_idx, r_mask = policy.source(host_rng, [step.observations[i] for i in finished])
                r_rows = featurizer.rows([step.observations[i] for i in finished], r_idx)
                n_idx, n_mask, n_rows = n_idx.copy(), n_mask.copy(), n_rows.copy()
                n_idx[finished], n_mask[finished], n_rows[finished] = r_idx, r_mask, r_rows
            pending = (n_idx, n_mask, n_rows)
        obs = step.observations

        for i in np.flatnonzero(step.terminated | step.truncated):
            episodes += 1
            run.episode_done(step.success[i], ep_returns[i])
            ep_returns[i] = 0.0

        if (agent is not None and env_steps >= config.learning_starts
                and env_steps % config.train_every < config.num_envs):
            key, upd_key = jax.random.split(key)
            agent_state, metrics = update(agent_state, buffer, featurizer.device_table(), upd_key)
            updates += config.updates_per_train
            loss = float(metrics["loss"][-1])
            if not math.isfinite(loss):
                run.finish()
                raise NonFiniteLossError(
                    f"loss became {loss} after {updates} updates ({env_steps} env steps); stopped. "
                    + (f"The last good checkpoint is kept in {run.manager.directory}." if run.manager
                       else "Lower the learning rate or check the rewards/features."))
            last_metrics = {"loss": loss, "q_mean": float(metrics["q_mean"][-1])}
            if run.manager is not None and updates >= next_ckpt:
                next_ckpt += config.checkpoint_every
                save_checkpoint()
        if env_steps >= next_log:
            if env_steps < next_eval:  # an evaluation due now logs these metrics in its own row
                row = {"env_steps": env_steps, "updates": updates, "episodes": episodes, **last_metrics}
                row.update(llm_counts())
                run.log(row, on_log)
            next_log += config.log_every

    if run.manager is not None and agent is not None and not ckpt.step_path(run.manager.directory, updates).exists():
        save_checkpoint()  # the final state, so a finished run can be inspected or compared
    agent_state_ref[0] = agent_state
    final = evaluate(config, act_batch, max(config.eval_episodes, 1), seed=20_000 + config.seed * 1000)
    row = {"env_steps": env_steps, "updates": updates, "episodes": episodes, **final, **last_metrics}
    row.update(llm_counts())
    run.log(row, on_log)
    run.finish()
    vec.close()
    return TrainResult(config, run.history, final, agent_state, run.run_dir, time.perf_counter() - run.t0, act_batch)


def _gae(rewards, terminated, truncated, values, next_values, last_values, gamma, lam):
    """GAE over a [T, N] rollout with auto-reset copies.

    ``values`` [T, N] = V(s_t); ``next_values`` [T, N] = V of the *final* observation where an episode was
    truncated at t (else unused); ``last_values`` [N] = V(s_T). A termination stops bootstrapping; a
    truncation bootstraps from V(final observation); both cut the λ-chain (the next row is a new episode).
    """
    T = rewards.shape[0]
    adv = np.zeros_like(rewards)
    carry = np.zeros(rewards.shape[1], np.float32)
    for t in reversed(range(T)):
        following = last_values if t == T - 1 else values[t + 1]
        boundary = terminated[t] | truncated[t]
        v_next = np.where(truncated[t] & ~terminated[t], next_values[t], np.where(terminated[t], 0.0, following))
        delta = rewards[t] + gamma * v_next - values[t]
        carry = delta + gamma * lam * np.where(boundary, 0.0, carry)
        adv[t] = carry
    return adv, adv + values


def _train_ppo(config: TrainConfig, on_log) -> TrainResult:
    run = _Run(config)
    uses_prior = config.algo == "ppo-prior"
    prior = load_prior(config.llm, config.prior_temperature, config.prompt, config.length_normalize) if uses_prior else None
    encoder = load_text_encoder(config.encoder)
    featurizer = Featurizer(encoder, config.style)
    policy = _Policy(config, prior, featurizer)
    k = policy.source.k
    if uses_prior:
        agent = make_ppo_prior(kl_coef=config.kl_coef, learning_rate=config.learning_rate, gamma=config.gamma,
                               num_epochs=config.ppo_epochs, num_minibatches=config.ppo_minibatches)
    else:
        agent = make_ppo(learning_rate=config.learning_rate, gamma=config.gamma, num_epochs=config.ppo_epochs,
                         num_minibatches=config.ppo_minibatches)
    key = jax.random.key(config.seed)
    key, init_key = jax.random.split(key)
    agent_state = agent.init(init_key, encoder.dim, k)
    host_rng = np.random.default_rng(config.seed)
    vec = envs.VectorEnv(lambda: make_env(config), config.num_envs)
    obs, _ = vec.reset(seed=config.seed)
    state_ref = [agent_state]

    def features(observations):
        idx, mask = policy.source(host_rng, observations)
        rows = featurizer.rows(observations, idx)
        prior_logp = jnp.asarray(policy.prior_logp(observations)[0]) if uses_prior else None
        return rows, mask, prior_logp

    def act_batch(rng, observations):
        idx, mask = policy.source(rng, observations)
        rows = featurizer.rows(observations, idx)
        prior_logp = jnp.asarray(policy.prior_logp(observations)[0]) if uses_prior else None
        action, _, _ = agent.act(state_ref[0], jax.random.key(0), featurizer.device_table()[rows],
                                 jnp.asarray(mask), prior_logp, greedy=True)
        return np.asarray(action)

    env_steps = updates = episodes = 0
    ep_returns = np.zeros(config.num_envs)
    last_metrics: dict[str, float] = {}
    next_eval, next_log = 0, config.log_every
    T, N = config.rollout_steps, config.num_envs
    if (T * N) % config.ppo_minibatches:
        raise ValueError(f"rollout_steps × num_envs = {T * N} must be divisible by ppo_minibatches={config.ppo_minibatches}")
    while env_steps < config.env_steps:
        if env_steps >= next_eval:
            state_ref[0] = agent_state
            ev = evaluate(config, act_batch, config.eval_episodes, seed=10_000 + config.seed * 1000)
            run.log({"env_steps": env_steps, "updates": updates, "episodes": episodes, **ev, **last_metrics}, on_log)
            next_eval += config.eval_every
        buf = {name: [] for name in ("rows", "mask", "action", "logp", "value", "reward", "term", "trunc",
                                     "next_value", "prior")}
        for _ in range(T):
            rows, mask, prior_logp = features(obs)
            key, act_key = jax.random.split(key)
            action, logp, value = agent.act(agent_state, act_key, featurizer.device_table()[rows],
                                            jnp.asarray(mask), prior_logp)
            action = np.asarray(action)
            step = vec.step(action)
            next_value = np.zeros(N, np.float32)
            cut = [i for i in range(N) if step.truncated[i] and not step.terminated[i]]
            if cut:  # bootstrap a truncated episode from V(its final observation)
                finals = [step.final_observations[i] for i in cut]
                f_rows, f_mask, f_prior = features(finals)
                _, _, v = agent.act(agent_state, act_key, featurizer.device_table()[f_rows], jnp.asarray(f_mask),
                                    f_prior)
                next_value[cut] = np.asarray(v)
            for name, value_ in (("rows", rows), ("mask", mask), ("action", action), ("logp", np.asarray(logp)),
                                 ("value", np.asarray(value)), ("reward", step.rewards), ("term", step.terminated),
                                 ("trunc", step.truncated), ("next_value", next_value),
                                 ("prior", np.asarray(prior_logp) if uses_prior else np.zeros((N, k), np.float32))):
                buf[name].append(value_)
            ep_returns += step.rewards
            for i in np.flatnonzero(step.terminated | step.truncated):
                episodes += 1
                run.episode_done(step.success[i], ep_returns[i])
                ep_returns[i] = 0.0
            obs = step.observations
            env_steps += N
            run.advance(N)
        arr = {name: np.stack(v) for name, v in buf.items()}
        rows, mask, prior_logp = features(obs)
        _, _, last_v = agent.act(agent_state, key, featurizer.device_table()[rows], jnp.asarray(mask), prior_logp)
        adv, returns = _gae(arr["reward"], arr["term"], arr["trunc"], arr["value"], arr["next_value"],
                            np.asarray(last_v), config.gamma, agent.config.gae_lambda)
        table = featurizer.device_table()
        flat = lambda x: jnp.asarray(x.reshape((T * N,) + x.shape[2:]))
        batch = PPOBatch(table[flat(arr["rows"])], flat(arr["mask"]), flat(arr["action"]).astype(jnp.int32),
                         flat(arr["logp"]), flat(arr["value"]), normalize_advantages(flat(adv)), flat(returns),
                         flat(arr["prior"]) if uses_prior else None)
        key, mb_key = jax.random.split(key)
        agent_state, metrics = agent.update(agent_state, make_minibatches(mb_key, batch, config.ppo_epochs,
                                                                          config.ppo_minibatches))
        updates += config.ppo_epochs * config.ppo_minibatches
        loss = float(metrics["loss"][-1])
        if not math.isfinite(loss):
            run.finish()
            raise NonFiniteLossError(f"loss became {loss} after {updates} updates ({env_steps} env steps); stopped")
        last_metrics = {"loss": loss}
        if env_steps >= next_log:
            if env_steps < next_eval:
                run.log({"env_steps": env_steps, "updates": updates, "episodes": episodes, **last_metrics}, on_log)
            next_log += config.log_every
    state_ref[0] = agent_state
    final = evaluate(config, act_batch, max(config.eval_episodes, 1), seed=20_000 + config.seed * 1000)
    run.log({"env_steps": env_steps, "updates": updates, "episodes": episodes, **final, **last_metrics}, on_log)
    run.finish()
    vec.close()
    return TrainResult(config, run.history, final, agent_state, run.run_dir, time.perf_counter() - run.t0, act_batch)
