"""Agents as ``make_*`` factories returning an :class:`Agent` of pure ``init``/``act``/``update`` functions.

Value-based (state :class:`QState`, batches :class:`prior_rl.replay.Transition`):
    make_dqn_prior, make_dqn, make_cql_prior, make_cql, make_q_agent, QConfig
Policy-based (state :class:`PPOState`, batches :class:`PPOBatch`):
    make_ppo_prior, make_ppo, make_ppo_agent, PPOConfig, make_minibatches
Pure-LLM baseline: make_llm_policy, empirical_log_prior
"""

from prior_rl.agents.common import Agent, make_optimizer, periodic_hard_update, polyak_update
from prior_rl.agents.llm_policy import LLMPolicyConfig, LLMPolicyState, empirical_log_prior, make_llm_policy
from prior_rl.agents.ppo import (
    PPOBatch,
    PPOConfig,
    PPOState,
    make_minibatches,
    make_ppo,
    make_ppo_agent,
    make_ppo_prior,
)
from prior_rl.agents.value_based import (
    QConfig,
    QState,
    example_transition,
    make_cql,
    make_cql_prior,
    make_dqn,
    make_dqn_prior,
    make_q_agent,
    select_action,
)

__all__ = [
    "Agent",
    "make_optimizer",
    "periodic_hard_update",
    "polyak_update",
    "LLMPolicyConfig",
    "LLMPolicyState",
    "empirical_log_prior",
    "make_llm_policy",
    "PPOBatch",
    "PPOConfig",
    "PPOState",
    "make_minibatches",
    "make_ppo",
    "make_ppo_agent",
    "make_ppo_prior",
    "QConfig",
    "QState",
    "example_transition",
    "make_cql",
    "make_cql_prior",
    "make_dqn",
    "make_dqn_prior",
    "make_q_agent",
    "select_action",
]
