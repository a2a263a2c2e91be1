"""Every claim experiment's ``--quick`` mode runs end to end and writes its CSVs and figures.

The modules run in this process (as ``main(["--quick", "--out", dir], store=...)``), each with its own prompt
cache but the LLM and encoder of one shared model store, so SmolLM2 and the encoder load once for the whole file.
These tests check the outputs' existence and shape, not learning outcomes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from experiments import (
    frozen_lake,
    offline_cql,
    offline_v2,
    overcooked_online,
    overcooked_v2,
    policy_v2,
    prior_ablations,
)
from prior_rl.run import ModelStore, TrainConfig
from tests.shared_data import reference_dir


@pytest.fixture(scope="module")
def models() -> ModelStore:
    """One store holding the default LLM and encoder; each experiment gets ``models.with_fresh_priors()``."""
    store = ModelStore()
    defaults = TrainConfig(progress=False)
    store.llm(defaults.llm)
    store.encoder(defaults.encoder)
    return store


def _rows(path: Path) -> list[dict[str, str]]:
    assert path.is_file(), f"missing {path}"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows, f"{path} has no rows"
    return rows


def _png(path: Path) -> None:
    assert path.is_file(), f"missing {path}"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 2_000 < len(data) < 100_000, f"{path.name}: {len(data)} bytes"


def _unit(rows, col):
    vals = [float(r[col]) for r in rows if r[col] != ""]
    assert vals and all(0.0 <= v <= 1.0 for v in vals), (col, vals[:5])


def test_overcooked_v2_quick_and_resume(tmp_path, capsys):
    out = overcooked_v2.main(["--quick", "--out", str(tmp_path)])
    rows = _rows(tmp_path / "summary.csv")
    assert {r["unit"] for r in rows} == {u.name for u in overcooked_v2.units(True)}
    assert {r["eval"] for r in rows} == {"greedy", "epsilon", "boltzmann"}
    _unit(rows, "final_iqm")
    for r in rows:
        assert float(r["final_iqm_lo"]) <= float(r["final_iqm"]) <= float(r["final_iqm_hi"])
    assert {r["setting"] for r in rows if r["unit"] == "prior-quality"} == {"expert-mix:0.1", "expert-mix:0.9"}
    for name in ("curves.png", "profiles.png", "prior_quality.png"):
        _png(out / name)
    # a second run finds every unit done and only redraws
    capsys.readouterr()
    overcooked_v2.main(["--quick", "--out", str(tmp_path)])
    assert capsys.readouterr().out.count("done before, skipped") == len(overcooked_v2.units(True))


def test_policy_v2_quick_and_resume(tmp_path, capsys):
    out = policy_v2.main(["--quick", "--out", str(tmp_path)])
    rows = list(csv.DictReader(open(out / "summary.csv")))
    expected = {u.name for u in policy_v2.units(True) if u.runner == "jax" or policy_v2.sb3_available()}
    assert {r["unit"] for r in rows} == expected
    assert {r["eval"] for r in rows} == {"greedy", "epsilon", "boltzmann"}
    for r in rows:
        assert 0.0 <= float(r["final_iqm_lo"]) <= float(r["final_iqm"]) <= float(r["final_iqm_hi"]) <= 1.0
    assert (out / "curves.png").stat().st_size > 0
    assert "lake-ppo-onehot" in (out / "report.md").read_text()
    capsys.readouterr()
    policy_v2.main(["--quick", "--out", str(tmp_path)])
    assert capsys.readouterr().out.count("done before, skipped") == len(expected)


def test_offline_v2_quick_and_resume(tmp_path, capsys):
    out = offline_v2.main(["--quick", "--out", str(tmp_path)])
    rows = _rows(tmp_path / "summary.csv")
    assert {r["unit"] for r in rows} == {u.name for u in offline_v2.units(True)}
    assert {r["eval"] for r in rows} == {"greedy", "epsilon", "boltzmann"}
    _unit(rows, "final_iqm")
    assert {r["coverage"] for r in rows if r["algo"] == "cql"} == {"1"}
    assert all(0 < float(r["coverage"]) < 1 for r in rows if r["algo"] == "cql-prior")
    _png(out / "success_vs_size.png")
    assert "| gen-200-cql-prior | greedy |" in (out / "report.md").read_text()
    capsys.readouterr()
    offline_v2.main(["--quick", "--out", str(tmp_path)])
    assert capsys.readouterr().out.count("done before, skipped") == len(offline_v2.units(True))


def _finals_csv(folder: Path, finals: list[float]) -> None:
    folder.mkdir(parents=True)
    lines = ["setting,seed,env_steps,eval_success_greedy"]
    lines += [f"x,{s},{e},{v if e else 0.0}" for s, v in enumerate(finals) for e in (0, 100)]
    (folder / "curves.csv").write_text("\n".join(lines) + "\n")


def test_offline_v2_ratio_is_one_minus_the_smallest_sizes_ratio(tmp_path):
    assert offline_v2.smallest_size({100: np.array([0, 0, 1, 1.0]), 400: np.ones(4)}, 0.5) == 100
    assert offline_v2.smallest_size({100: np.array([0, 0, 1, 1.0]), 400: np.ones(4)}, 0.9) == 400
    assert offline_v2.paper_ratio(100, 1000) == pytest.approx(0.9)
    assert offline_v2.paper_ratio(float("inf"), 1000) == float("-inf")  # the prior never reaches the level
    assert np.isnan(offline_v2.paper_ratio(100, float("inf")))  # CQL never does: undefined
    cells = {("cql-prior", 100): [1.0] * 8, ("cql-prior", 1000): [1.0] * 8, ("cql", 100): [0.0] * 8}
    cells[("cql", 1000)] = [1.0] * 8
    grid = {m: {} for m in offline_v2.METHODS}
    for (m, n), finals in cells.items():
        _finals_csv(tmp_path / f"{m}-{n}", finals)
        grid[m][n] = f"{m}-{n}"
    rows = offline_v2.ratio_rows(tmp_path, grid, reps=50)
    assert [r["level"] for r in rows] == list(offline_v2.LEVELS)
    for r in rows:
        assert (r["n_cql_prior"], r["n_cql"], r["ratio"]) == (100, 1000, pytest.approx(0.9))
        assert r["ratio_lo"] == r["ratio_hi"] == pytest.approx(0.9) and r["undefined_fraction"] == 0.0


def test_overcooked_online_quick(tmp_path, models):
    folder = overcooked_online.main(["--quick", "--out", str(tmp_path)], store=models.with_fresh_priors())
    assert folder == tmp_path
    rows = _rows(tmp_path / "curves.csv")
    assert {"method", "env", "seed", "env_steps", "eval_success", "eval_return", "llm_calls"} <= set(rows[0])
    assert {r["method"] for r in rows} == {"DQN-Prior", "DQN", "LLM (greedy)", "LLM (sampled)"}
    assert {r["env"] for r in rows} == set(overcooked_online.ENVS)
    _unit(rows, "eval_success")
    # the learners are evaluated at 0, every eval_every, and at the end of the budget
    steps = sorted({int(float(r["env_steps"])) for r in rows if r["method"] == "DQN"})
    assert steps[0] == 0 and steps[-1] >= overcooked_online.budgets(True)["overcooked-tomato-salad"]["env_steps"]
    summary = _rows(tmp_path / "threshold.csv")
    assert {"env", "method", "final_success_mean", "final_success_std", "samples_to_0.9_mean_curve"} <= set(summary[0])
    assert len(summary) == 2 * 4
    for r in summary:
        if not r["method"].startswith("LLM"):
            x = r["samples_to_0.9_mean_curve"]
            assert x.isdigit() or x.startswith("not reached within")
    for env in overcooked_online.ENVS:
        _png(tmp_path / f"{env.removeprefix('overcooked-')}.png")


@pytest.fixture(scope="module")
def offline_out(tmp_path_factory, models) -> Path:
    """The offline experiment's quick run, shared by the tests below."""
    out = tmp_path_factory.mktemp("offline_cql")
    offline_cql.main(["--quick", "--out", str(out)], store=models.with_fresh_priors())
    return out


def test_offline_cql_quick(offline_out):
    tmp_path = offline_out
    rows = _rows(tmp_path / "runs.csv")
    assert {"source", "method", "size", "seed", "updates", "eval_success", "best_eval_success", "coverage"} <= set(
        rows[0]
    )
    assert {r["method"] for r in rows} == {"CQL-Prior", "CQL"}
    _unit(rows, "eval_success")
    _unit(rows, "coverage")
    # CQL's candidates are every admissible action, so the data action is always covered
    assert all(float(r["coverage"]) == 1.0 for r in rows if r["method"] == "CQL")
    by_size = _rows(tmp_path / "by_size.csv")
    sizes = {int(r["size"]) for r in by_size if r["source"] == "generated"}
    assert sizes == set(offline_cql.budget(True)["generated"])
    assert all(int(float(r["dataset_size"])) == int(r["size"]) for r in rows)
    smallest = _rows(tmp_path / "smallest.csv")
    assert {"source", "method", "best_final_success", "smallest_size_at_best", "smallest_size_at_0.9"} <= set(
        smallest[0]
    )
    _png(tmp_path / "success_vs_size.png")


def test_offline_cql_quick_reference_source(offline_out):
    reference_dir()  # skips, with the reason, when the paper's dataset is in neither place
    by_size = _rows(offline_out / "by_size.csv")
    assert {int(r["size"]) for r in by_size if r["source"] == "reference"} == set(offline_cql.budget(True)["reference"])
    assert {r["method"] for r in by_size if r["source"] == "reference"} == {"CQL-Prior", "CQL"}


def test_frozen_lake_quick(tmp_path, models):
    frozen_lake.main(["--quick", "--out", str(tmp_path)], store=models.with_fresh_priors())
    rows = _rows(tmp_path / "curves.csv")
    assert {r["method"] for r in rows} == {"DQN-Prior", "DQN", "PPO-Prior", "PPO", "LLM (greedy)", "LLM (sampled)"}
    _unit(rows, "eval_success")
    summary = _rows(tmp_path / "threshold.csv")
    assert [r["method"] for r in summary][:4] == ["DQN-Prior", "DQN", "PPO-Prior", "PPO"]
    _png(tmp_path / "success.png")


def test_prior_ablations_quick(tmp_path, models):
    prior_ablations.main(["--quick", "--out", str(tmp_path)], store=models.with_fresh_priors())
    pex = _rows(tmp_path / "pexpert.csv")
    assert {r["env"] for r in pex} == set(prior_ablations.PEXPERT_ENVS.values())
    for r in pex:
        assert 0.0 <= float(r["p_expert_min"]) <= float(r["p_expert_mean"]) <= 1.0
        assert int(r["states"]) > 0
    _png(tmp_path / "pexpert.png")
    cache = _rows(tmp_path / "cache.csv")
    assert {"env", "prior_mode", "cache", "dispatches_per_step", "wall_s"} <= set(cache[0])
    on = {r["env"]: float(r["dispatches_per_step"]) for r in cache if r["cache"] == "on"}
    off = {
        r["env"]: float(r["dispatches_per_step"]) for r in cache if r["cache"] == "off" and r["prior_mode"] == "exact"
    }
    # without the cache every step scores its prompt; with it, revisited prompts cost nothing
    for env in on:
        assert off[env] == pytest.approx(1.0) and on[env] <= off[env]
    assert on["Tomato Salad"] < 1.0  # the 6-step expert episode restarts within 12 steps: prompts repeat
    gen = _rows(tmp_path / "generate_vs_exact.csv")
    assert {r["mode"] for r in gen} == {"exact", "generate"}
    for r in gen:
        assert 0.0 <= float(r["expert_share_of_candidates"]) <= float(r["expert_in_candidates"]) <= 1.0
        assert 1.0 <= float(r["distinct_actions"]) <= int(r["k"])
    summary = _rows(tmp_path / "train_summary.csv")
    assert {"group", "variant", "final_success_mean", "samples_to_0.9", "new_llm_calls", "wall_s"} <= set(summary[0])
    assert {r["group"] for r in summary} == {"k", "alpha", "prior"}
    _rows(tmp_path / "train_curves.csv")
    _png(tmp_path / "train_k_alpha.png")
    _png(tmp_path / "train_prior.png")
