"""The LLM prior p_LLM(a|s): pure scoring and sampling functions (:mod:`.scoring`), the prompt builders
(:mod:`.prompts`), :class:`ActionPrior` over environment observations with its cache, and a synthetic prior of known
quality (:mod:`.synthetic`). Imports :mod:`prior_rl.llm` and the observation type only."""

from prior_rl.llm.cache import CacheFormatError, PriorCache, prior_key
from prior_rl.prior.action_prior import ActionPrior
from prior_rl.prior.prompts import PromptBuilder
from prior_rl.prior.scoring import (
    action_logprobs,
    map_text_to_action,
    packed_action_logprobs,
    sample_actions,
    sample_from_exact,
    sequence_logprobs,
)
from prior_rl.prior.synthetic import ExpertMixturePrior

__all__ = [
    "ActionPrior",
    "CacheFormatError",
    "ExpertMixturePrior",
    "PriorCache",
    "PromptBuilder",
    "action_logprobs",
    "map_text_to_action",
    "packed_action_logprobs",
    "prior_key",
    "sample_actions",
    "sample_from_exact",
    "sequence_logprobs",
]
