"""prior_rl: reinforcement learning with LLM priors, in JAX."""

__version__ = "0.1.0"
