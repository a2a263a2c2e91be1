"""The LLM prior p_LLM(a|s): pure scoring and sampling functions (:mod:`.scoring`), the prompt builders
(:mod:`.prompts`), transcript prompts with expert demonstrations (:mod:`.transcripts`), segmented prompts and their
KV caches (:mod:`.segments`, :mod:`.kv_cache`), :class:`ActionPrior` over environment observations with its caches,
and a synthetic prior of known quality (:mod:`.synthetic`). Imports :mod:`prior_rl.llm` and the observation type
only."""

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
    trie_action_logprobs,
)
from prior_rl.prior.segments import SegmentedPrompt
from prior_rl.prior.synthetic import ExpertMixturePrior
from prior_rl.prior.transcripts import DEFAULT_NORMALIZE, DemonstrationLeakError, TranscriptPrompt

__all__ = [
    "ActionPrior",
    "CacheFormatError",
    "DEFAULT_NORMALIZE",
    "DemonstrationLeakError",
    "ExpertMixturePrior",
    "PriorCache",
    "PromptBuilder",
    "SegmentedPrompt",
    "TranscriptPrompt",
    "action_logprobs",
    "map_text_to_action",
    "packed_action_logprobs",
    "prior_key",
    "sample_actions",
    "sample_from_exact",
    "sequence_logprobs",
    "trie_action_logprobs",
]
