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

    def llm(self, spec: str) -> Any:
        from prior_rl.llm.weights import load_llm

        return self._get(("llm", spec), lambda: load_llm(spec))

    def encoder(self, spec: str) -> Any:
        from prior_rl.llm.encoder import load_encoder

        return self._get(("encoder", spec), lambda: load_encoder(spec))

    def prior(self, llm: str, temperature: float = 1.0, prompt: str = "env", normalize: bool = True) -> Any:
        """The LLM prior with a prompt cache.

        prompt "env": the environment's own prompt (``obs.prompt``; for Overcooked TWOSOME's text ending in "you
        should first"), each action scored as its continuation; "paper": RL-LLM-Prior's query (task, history,
        observation, the admissible list, "Action:"); "chat": the paper's query in the model's chat template.
        normalize: score an action by its mean token log-prob (TWOSOME's length normalisation) instead of the sum.
        ``llm="expert-mix:P"`` is a synthetic prior that puts P on the environment's expert command
        (:mod:`prior_rl.prior.synthetic`), to measure what a stronger prior would change.
        """
        if prompt not in PROMPTS:
            raise ValueError(f"unknown prompt {prompt!r}; valid prompts are: {', '.join(PROMPTS)}")
        from prior_rl.prior import synthetic

        p_expert = synthetic.parse_spec(llm)
        if p_expert is not None:  # a synthetic prior of known quality: no LLM, nothing to share
            return synthetic.ExpertMixturePrior(p_expert, temperature)

        def load():
            from prior_rl.prior import ActionPrior, PriorCache, PromptBuilder

            prompt_fn = {"env": _env_prompt, "paper": PromptBuilder(), "chat": PromptBuilder(chat=True)}[prompt]
            # the cache makes a revisited prompt cost no LLM call; its misses are the LLM calls we report
            return ActionPrior(
                self.llm(llm), prompt_fn=prompt_fn, cache=PriorCache(), normalize=normalize, temperature=temperature
            )

        return self._get(("prior", llm, str(temperature), prompt, str(normalize)), load)

    def run_prior(self, config: Any) -> Any:
        """The prior a run's config asks for."""
        return self.prior(config.llm, config.prior_temperature, config.prompt, config.length_normalize)


class LLMCounter:
    """A run's LLM calls and cache hits as log-row fields (none without a cached prior): the prior's cache counters
    minus their values when the run started, so runs sharing a store each report their own."""

    def __init__(self, prior: Any):
        self.prior = prior
        cache = getattr(prior, "cache", None)
        self.start = (cache.misses, cache.hits) if cache is not None else (0, 0)

    def __call__(self) -> dict[str, int]:
        cache = getattr(self.prior, "cache", None)  # read each time: a resumed run swaps in the checkpointed cache
        if cache is None:
            return {}
        return {"llm_calls": cache.misses - self.start[0], "cache_hits": cache.hits - self.start[1]}

    def state(self) -> list[int]:
        """What a checkpoint stores: the start offsets, so a resumed run keeps counting from them."""
        return list(self.start)
