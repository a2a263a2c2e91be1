"""experiments.alfworld --quick: every method trains, evaluates on both splits and writes its table and plot."""

import csv
import importlib.util

import pytest

# find_spec, not an import: importing alfworld directly exports ALFWORLD_DATA=~/.cache/alfworld into os.environ,
# which would send the env looking for the real dataset (envs/alfworld/_engine.py imports it safely)
needs_alfworld = pytest.mark.skipif(
    importlib.util.find_spec("alfworld") is None,
    reason="the ALFWorld engine is not installed (pip install --no-deps -r envs/alfworld/requirements.txt)",
)


@needs_alfworld
@pytest.mark.slow
def test_alfworld_experiment_quick(tmp_path, capsys):
    from experiments.alfworld import main

    rows = main(["--quick", "--out", str(tmp_path)])
    table = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(table) == len(rows) > 0
    assert {(r["method"], r["split"]) for r in table} == {
        (m, s) for m in ("dqn-prior", "dqn", "llm", "llm-sampled") for s in ("train", "unseen")
    }
    # the quick mode also runs the synthetic expert-mixture prior (no LLM calls)
    assert {r["prior"] for r in table} == {"smollm2", "", "expert-mix:0.5"}
    assert all(r["llm_calls"] == "0" for r in table if r["prior"] != "smollm2")
    assert any(r["k"] == "1" for r in table)  # the k sweep ran
    assert all(0.0 <= float(r["success"]) <= 1.0 for r in table)
    assert (tmp_path / "alfworld.png").stat().st_size > 1000
    # resumable: every finished (method, prior, prompt, seed) is kept and a rerun skips it with the same rows
    capsys.readouterr()
    again = main(["--quick", "--out", str(tmp_path)])
    assert capsys.readouterr().out.count("done before, skipped") == 6  # 4 methods + 2 synthetic-prior units
    assert list(csv.DictReader(open(tmp_path / "results.csv"))) == table and len(again) == len(rows)
    # a call for one more seed of one method adds its rows and keeps every other finished unit's
    more = main(["--quick", "--out", str(tmp_path), "--methods", "dqn", "--seeds", "1", "--synthetic"])
    grown = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert {r["seed"] for r in grown if r["method"] == "dqn"} == {"0", "1"}
    assert len(grown) == len(more) == len(table) + 2 and all(r in grown for r in table)


def test_persistent_prior_cache_saves_during_a_run_and_reloads(tmp_path):
    """The ALFWorld prior cache survives a killed run: puts are saved at most every ``every_s`` seconds, a new
    instance reloads them, and a second instance on the same prior does not stack a second save hook."""

    import numpy as np

    from experiments.alfworld import PersistentPriorCache
    from prior_rl.llm.cache import PriorCache

    class Prior:
        cache = PriorCache()

    path = tmp_path / "prior.npz"
    prior = Prior()
    persistent = PersistentPriorCache(prior, path, every_s=0.0)
    prior.cache.put(("m", "prompt one", ("a", "b")), np.array([-0.1, -2.0], np.float32))
    assert path.is_file()  # saved from inside put (every_s = 0)
    lazy = PersistentPriorCache(prior, path, every_s=3600.0)
    prior.cache.put(("m", "prompt two", ("a",)), np.array([0.0], np.float32))
    assert len(PriorCache.load(path)) == 1  # not saved again within the hour
    lazy.save()
    reloaded = PriorCache.load(path)
    assert len(reloaded) == 2
    np.testing.assert_array_equal(reloaded.peek(("m", "prompt one", ("a", "b"))), np.float32([-0.1, -2.0]))
    assert persistent.misses() == prior.cache.misses

    fresh = Prior()
    fresh.cache = PriorCache()
    PersistentPriorCache(fresh, path)
    assert len(fresh.cache) == 2 and fresh.cache.misses == 0


def test_alfworld_experiment_with_env_workers_matches_in_process(tmp_path):
    """``--env-workers 2`` steps the training copies in worker processes: the same rows as in-process."""
    from experiments.alfworld import main

    keep = ("method", "prior", "seed", "split", "k", "success", "return", "length", "train_episodes")
    tables = []
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}"
        main(["--quick", "--methods", "dqn", "--synthetic", "--env-workers", workers, "--out", str(out)])
        tables.append([{k: r[k] for k in keep} for r in csv.DictReader(open(out / "results.csv"))])
    assert tables[0] == tables[1] and len(tables[0]) == 2
