"""End-to-end: DQN-Prior with the embedded SmolLM2 prior and MiniLM features learns Overcooked Tomato Salad."""

import pytest

from prior_rl.train import TrainConfig, train


@pytest.mark.slow
def test_dqn_prior_learns_tomato_salad(tmp_path):
    config = TrainConfig(
        env="overcooked-tomato-salad",
        algo="dqn-prior",
        env_steps=2000,
        seed=0,
        eval_every=500,
        eval_episodes=20,
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    result = train(config)
    assert result.final_eval["eval_success"] >= 0.9, result.history
    evals = [h for h in result.history if "eval_success" in h]
    assert evals[0]["eval_success"] < 0.5  # it was learned, not given: the untrained Q does not succeed
    assert result.history[-1]["llm_calls"] <= 30  # 21 distinct prompts: the cache answers every revisit
    assert (tmp_path / "run" / "metrics.csv").exists() and (tmp_path / "run" / "success.png").exists()
    assert list((tmp_path / "run" / "tb").iterdir())  # TensorBoard events
