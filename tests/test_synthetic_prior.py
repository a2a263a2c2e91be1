"""prior_rl.prior.synthetic.ExpertMixturePrior: p_expert on the expert command, the rest uniform; the --llm spec."""

import numpy as np
import pytest

from envs.base import NO_EXPERT_ACTION, TextObservation
from prior_rl.prior import synthetic
from prior_rl.run import ModelStore


def _obs(expert=1, actions=("look", "go to desk 1", "inventory", "go to bed 1")):
    return TextObservation(prompt="p", actions=actions, task="t", state="s", expert_action=expert)


def test_probabilities_are_the_stated_mixture():
    prior = synthetic.ExpertMixturePrior(0.6)
    p = np.exp(prior.logprobs([_obs()])[0])
    np.testing.assert_allclose(p, [0.1, 0.7, 0.1, 0.1], atol=1e-6)
    # no admissible expert action (goal reached, or the planner's command is not admissible): uniform
    np.testing.assert_allclose(np.exp(prior.logprobs([_obs(expert=NO_EXPERT_ACTION)])[0]), [0.25] * 4, atol=1e-6)
    assert synthetic.ExpertMixturePrior(1.0).logprobs([_obs()])[0][0] == -np.inf


def test_candidates_follow_the_mixture_and_the_seed():
    prior = synthetic.ExpertMixturePrior(0.6)
    obs = [_obs()] * 2000
    idx = prior.candidates(7, obs, 5)
    assert idx.shape == (2000, 5) and idx.dtype == np.int32
    assert abs(np.mean(idx == 1) - 0.7) < 0.02  # the expert's share: 0.6 + 0.4 / 4
    np.testing.assert_array_equal(idx, prior.candidates(7, obs, 5))
    with pytest.raises(ValueError, match="exact"):
        prior.candidates(7, obs[:1], 5, mode="generate")


def test_spec_and_errors():
    assert synthetic.parse_spec("smollm2") is None
    assert synthetic.parse_spec("expert-mix:0.3") == 0.3
    for bad in ("expert-mix:", "expert-mix:1.5", "expert-mix:x"):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            synthetic.parse_spec(bad)
    prior = ModelStore().prior("expert-mix:0.3")
    assert isinstance(prior, synthetic.ExpertMixturePrior) and prior.cache is None
    no_expert = TextObservation(prompt="p", actions=("a", "b"), task="t")
    with pytest.raises(ValueError, match=r"expert_action.*family 'generic'"):
        prior.logprobs([no_expert])
    with pytest.raises(ValueError, match=r"expert_action must be an index in 0\.\.3"):
        prior.logprobs([_obs(expert=4)])
