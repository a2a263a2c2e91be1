"""experiments.alfworld --quick: every method trains, evaluates on both splits and writes its table and plot."""

import csv

import pytest

pytest.importorskip("alfworld", reason="the ALFWorld engine is not installed (pip install --no-deps -r envs/alfworld/requirements.txt)")


@pytest.mark.slow
def test_alfworld_experiment_quick(tmp_path):
    from experiments.alfworld import main

    rows = main(["--quick", "--out", str(tmp_path)])
    table = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(table) == len(rows) > 0
    assert {(r["method"], r["split"]) for r in table} == {
        (m, s) for m in ("dqn-prior", "dqn", "llm") for s in ("train", "unseen")}
    assert any(r["k"] == "1" for r in table)  # the k sweep ran
    assert all(0.0 <= float(r["success"]) <= 1.0 for r in table)
    assert (tmp_path / "alfworld.png").stat().st_size > 1000
