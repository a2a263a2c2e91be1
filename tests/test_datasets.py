"""Offline datasets: the paper's reference file, our generator, the format round trip, sub-sampling."""

import gzip
import json
from pathlib import Path

import pytest

from prior_rl import datasets

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference_offline" / "tomato_lettuce_salad_reference.jsonl.gz"


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference dataset not found at {REFERENCE}")
def test_reference_dataset_matches_the_documented_counts():
    ts = datasets.load_transitions(REFERENCE)
    stats = datasets.dataset_stats(ts, max_steps=51)
    assert stats == {"transitions": 4329, "episodes": 133, "successful_episodes": 100,
                     "success_fraction": 100 / 133, "distinct_states": 166}
    assert all(len(t.actions) == 8 for t in ts)
    assert ts[0].action_index == 0 and ts[0].reward == pytest.approx(-0.00199)


def test_generator_balances_success_and_round_trips(tmp_path):
    ts = datasets.generate("frozen-lake", 300, success_fraction=0.75, max_episode_steps=20,
                           epsilons=(0.0, 0.3, 1.0), seed=1)
    assert len(ts) == 300
    episodes = datasets.split_episodes(ts)
    full = episodes[:-1]  # the last episode may be cut to hit the size exactly
    frac = sum(ep[-1].success for ep in full) / len(full)
    assert abs(frac - 0.75) < 0.05
    assert all(t.episode == ep[0].episode for ep in episodes for t in ep)
    # a truncated last step is not done; a terminal one is
    assert all(not t.done for ep in full for t in ep if t.truncated)
    assert datasets.generate("frozen-lake", 300, 0.75, 20, (0.0, 0.3, 1.0), seed=1) == ts  # deterministic
    path = datasets.save_transitions(ts, tmp_path / "d.jsonl.gz")
    assert datasets.load_transitions(path) == ts
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_subsample_is_nested_and_checked():
    ts = datasets.generate("frozen-lake", 120, 0.5, 20, seed=0)
    small, big = datasets.subsample(ts, 30, seed=3), datasets.subsample(ts, 90, seed=3)
    assert len(small) == 30 and len(big) == 90
    assert set(map(id, small)) <= set(map(id, big))
    with pytest.raises(ValueError, match="size must be in 1..120"):
        datasets.subsample(ts, 121)


def test_bad_files_are_reported_with_path_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        datasets.load_transitions(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "t"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: record lacks keys \['state'"):
        datasets.load_transitions(bad)
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: not valid JSON"):
        datasets.load_transitions(bad)
    rec = {"task": "t", "state": "s", "action": "x", "next_state": "s2", "reward": 0, "done": False,
           "actions": ["a"], "next_actions": ["a"]}
    with gzip.open(tmp_path / "g.jsonl.gz", "wt") as f:
        f.write(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match="'x' is not among its admissible actions"):
        datasets.load_transitions(tmp_path / "g.jsonl.gz")
