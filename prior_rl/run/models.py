"""An explicit model store: the LLMs, encoders and priors a run uses, loaded on first use and held by the store.

A run given no store makes its own, so its reported LLM calls and cache hits are its own whatever ran before it in
the process. Experiments that run many seeds share one store deliberately (models load once; the prompt cache
carries over, and each run still reports only the calls it made).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from envs.base import TextObservation
from prior_rl.run.config import PROMPTS

TranscriptOptions = tuple[int, str, Optional[int]]  # (demonstrations, selection, max turns or None)


def _prompt_fn(prompt: str, transcript: TranscriptOptions, demo_options: tuple[tuple[str, Any], ...]) -> Any:
    """The prompt function of a prompt family.

    "env": the environment's own prompt (``obs.prompt``; for Overcooked TWOSOME's text ending in "you should
    first"), each action scored as its continuation; "paper": RL-LLM-Prior's query (task, history, observation, the
    admissible list, "Action:"); "chat": the paper's query in the model's chat template; "transcript": a header,
    ``transcript[0]`` expert demonstrations of other training tasks (selection ``transcript[1]``), then this
    episode's transcript (at most ``transcript[2]`` turns; None = all) and the cue ``"> "``
    (:class:`prior_rl.prior.transcripts.TranscriptPrompt`; the environment must be wrapped in
    :class:`envs.history.WithTranscript`); "transcript-state": the same preamble and the current state alone as
    turn 0 (no episode history: a function of the observation); ``demo_options`` go to the demonstrations'
    environments (never the split)."""
    from prior_rl.prior import PromptBuilder

    if prompt in ("transcript", "transcript-state"):
        import envs
        from prior_rl.prior.transcripts import TranscriptPrompt

        n_demos, selection, max_turns = transcript
        return TranscriptPrompt(
            n_demos,
            selection,
            max_turns,
            make_env=envs.make,
            env_options=dict(demo_options),
            episode=prompt == "transcript",
        )
    return {"env": _env_prompt, "paper": PromptBuilder(), "chat": PromptBuilder(chat=True)}[prompt]


def _env_prompt(obs: TextObservation) -> str:
    return obs.prompt


class ModelStore:
    """``llm(spec)``, ``encoder(spec)`` and ``prior(llm, temperature, prompt, normalize)``, each loaded once per
    store."""

    def __init__(self, parent: Optional[ModelStore] = None) -> None:
        self._models: dict[tuple[str, ...], Any] = {}
        self._parent = parent  # LLMs and encoders come from (and are loaded into) the parent store

    def with_fresh_priors(self) -> ModelStore:
        """A store that shares this one's LLMs and encoders (loading any new one into this store) but holds its own
        priors, so runs given it start with an empty prompt cache without loading weights again."""
        return ModelStore(parent=self)

    def _get(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        if self._parent is not None and key[0] in ("llm", "encoder"):
            return self._parent._get(key, load)
        if key not in self._models:
            self._models[key] = load()
        return self._models[key]

    def llm(self, spec: str, dtype: str = "float32", shards: int = 1) -> Any:
        """The LLM ``spec`` with ``dtype`` ("float32" or "bfloat16") parameters and activations, tensor-parallel
        over ``shards`` devices (:mod:`prior_rl.llm.sharding`)."""
        from prior_rl.llm.weights import load_llm

        if (dtype, shards) == ("float32", 1):
            return self._get(("llm", spec), lambda: load_llm(spec))
        from prior_rl.llm.sharding import check_dtype

        jdtype = check_dtype(dtype)
        return self._get(("llm", spec, dtype, str(shards)), lambda: load_llm(spec, jdtype, shards=shards))

    def add_llm(self, spec: str, llm: Any) -> None:
        """Hold an already-loaded :class:`prior_rl.llm.weights.LLM` under ``spec`` (a notebook's model, a test's
        tiny one): runs whose config says ``llm=spec`` use it."""
        if self._parent is not None:
            self._parent.add_llm(spec, llm)
        else:
            self._models[("llm", spec)] = llm

    def encoder(self, spec: str) -> Any:
        from prior_rl.llm.encoder import load_encoder

        return self._get(("encoder", spec), lambda: load_encoder(spec))

    def prior(
        self,
        llm: str,
        temperature: float = 1.0,
        prompt: str = "env",
        normalize: Optional[bool] = None,
        *,
        transcript: TranscriptOptions = (3, "fixed", None),
        context_cache: str = "episode",
        env_options: tuple[tuple[str, Any], ...] = (),
        generation_cache: bool = True,
        llm_dtype: str = "float32",
        llm_shards: int = 1,
    ) -> Any:
        """The LLM prior with a prompt cache. ``prompt``: a family of :func:`_prompt_fn`; transcripts are scored
        through the preamble / episode KV caches of ``context_cache``.
        generation_cache: in generate mode, a prompt's k generations are drawn once and reused (the reference's
        per-prompt cache); False draws them anew at every visit. llm_dtype, llm_shards: see :meth:`llm`.
        normalize: score an action by its mean token log-prob (TWOSOME's length normalisation) instead of the sum;
        None = the family's measured default (:data:`prior_rl.prior.transcripts.DEFAULT_NORMALIZE`).
        ``llm="expert-mix:P"`` is a synthetic prior that puts P on the environment's expert command
        (:mod:`prior_rl.prior.synthetic`), to measure what a stronger prior would change.
        """
        if prompt not in PROMPTS:
            raise ValueError(f"unknown prompt {prompt!r}; valid prompts are: {', '.join(PROMPTS)}")
        from prior_rl.prior import synthetic
        from prior_rl.prior.transcripts import DEFAULT_NORMALIZE

        p_expert = synthetic.parse_spec(llm)
        if p_expert is not None:  # a synthetic prior of known quality: no LLM, nothing to share
            return synthetic.ExpertMixturePrior(p_expert, temperature)
        if normalize is None:
            normalize = DEFAULT_NORMALIZE[prompt]
        demo_options = tuple((k, v) for k, v in env_options if k != "split") if prompt.startswith("transcript") else ()

        def load():
            from prior_rl.prior import ActionPrior, PriorCache

            # the cache makes a revisited prompt cost no LLM call; its misses are the LLM calls we report
            return ActionPrior(
                self.llm(llm, llm_dtype, llm_shards),
                prompt_fn=_prompt_fn(prompt, transcript, demo_options),
                cache=PriorCache(),
                normalize=normalize,
                temperature=temperature,
                context_cache=context_cache,
                generation_cache=generation_cache,
            )

        key = ("prior", llm, str(temperature), prompt, str(normalize))
        if not generation_cache:
            key += ("no-generation-cache",)
        if (llm_dtype, llm_shards) != ("float32", 1):
            key += (llm_dtype, str(llm_shards))
        if prompt.startswith("transcript"):
            key += (repr(transcript), context_cache, repr(demo_options))
        return self._get(key, load)

    def run_prior(self, config: Any) -> Any:
        """The prior a run's config asks for."""
        return self.prior(
            config.llm,
            config.prior_temperature,
            config.prompt,
            config.normalize,
            transcript=(config.transcript_demos, config.transcript_selection, config.transcript_turns),
            context_cache=config.context_cache,
            env_options=tuple(config.env_options),
            generation_cache=config.generation_cache,
            llm_dtype=config.llm_dtype,
            llm_shards=config.llm_shards,
        )


# ActionPrior counters a run logs (as differences since the run started), the KV-cache ones only for transcript runs
CONTEXT_FIELDS = ("preamble_hits", "episode_extensions", "episode_reprefills", "turn_tokens_reused", "truncations")


class LLMCounter:
    """A run's LLM calls and cache hits as log-row fields (none without a cached prior): the prior's cache counters
    minus their values when the run started, so runs sharing a store each report their own.

    With an :class:`~prior_rl.prior.action_prior.ActionPrior` it also reports ``llm_s`` (wall seconds spent in the
    prior since the run started: a clock field like ``wall_s``) and, once the prior has scored segmented prompts,
    the KV-cache counts of :data:`CONTEXT_FIELDS` (``turn_tokens_reused``: history tokens read from the episode
    cache instead of encoded); in generate mode ``generations`` / ``generation_hits`` (prompts whose k generations
    were drawn / reused). A checkpoint keeps them all; the generation counts then continue exactly (the generation
    cache is checkpointed too), while the KV-cache counts, like ``llm_s``, measure work: a resumed run starts with a
    cold KV cache, so it re-encodes what an uninterrupted run would have extended (same scores, other counts)."""

    def __init__(self, prior: Any):
        self.prior = prior
        cache = getattr(prior, "cache", None)
        self.start = (cache.misses, cache.hits) if cache is not None else (0, 0)
        counters = getattr(prior, "counters", None)
        self.counter_start = dict(counters) if isinstance(counters, dict) else None
        self.counter_offset: dict[str, float] = {}  # counts before a resume (the prior's counters restart at 0)

    def _since(self) -> dict[str, float]:
        counters = getattr(self.prior, "counters", None)
        if self.counter_start is None or not isinstance(counters, dict):
            return {}
        return {k: counters.get(k, 0) - self.counter_start.get(k, 0) + self.counter_offset.get(k, 0) for k in counters}

    def __call__(self) -> dict[str, Any]:
        cache = getattr(self.prior, "cache", None)  # read each time: a resumed run swaps in the checkpointed cache
        if cache is None:
            return {}
        row: dict[str, Any] = {"llm_calls": cache.misses - self.start[0], "cache_hits": cache.hits - self.start[1]}
        since = self._since()
        if since:
            row["llm_s"] = float(since.get("llm_s", 0.0))
            if since.get("segmented_prompts", 0):
                row.update({k: int(since.get(k, 0)) for k in CONTEXT_FIELDS})
            if since.get("generation_misses", 0) or since.get("generation_hits", 0):
                # generate mode: prompts whose k generations were drawn (LLM calls) or reused from the cache
                row["generations"] = int(since["generation_misses"])
                row["generation_hits"] = int(since["generation_hits"])
        return row

    def state(self) -> list[Any]:
        """What a checkpoint stores: the cache-count offsets, so a resumed run keeps counting from them, and the
        prior's counts so far (the resumed prior's counters start at 0)."""
        return [*self.start, self._since()]

    def restore(self, state: list[Any]) -> None:
        self.start = (state[0], state[1])
        if len(state) > 2:  # checkpoints before issue 11 hold the two cache offsets only
            counters = getattr(self.prior, "counters", None)
            self.counter_start = dict(counters) if isinstance(counters, dict) else None
            self.counter_offset = dict(state[2])
