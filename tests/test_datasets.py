"""Offline datasets: the paper's reference files (JSON lines and the original pickle), the restricted unpickler,
our generator, the format round trip, sub-sampling."""

import dataclasses
import gzip
import json
import os
import pickle
from pathlib import Path

import pytest

from prior_rl.io import datasets
from tests.shared_data import reference_dir

REFERENCE_JSONL = "tomato_lettuce_salad_reference.jsonl.gz"
REFERENCE_PICKLE = "raw_lettuce_data_bala752000.pkl"


def reference_file(name: str) -> Path:
    """A file of the shared reference data: in $PRIOR_RL_REFERENCE_DIR, else ``<repo>/../shared/reference_offline``;
    the test skips when it is absent (the files are not redistributed with the project; see NOTICE)."""
    return reference_dir(name) / name


def test_reference_dataset_matches_the_documented_counts():
    ts = datasets.load_transitions(reference_file(REFERENCE_JSONL))
    stats = datasets.dataset_stats(ts, max_steps=51)
    assert stats == {
        "transitions": 4329,
        "episodes": 133,
        "successful_episodes": 100,
        "success_fraction": 100 / 133,
        "distinct_states": 166,
    }
    assert all(len(t.actions) == 8 for t in ts)
    assert ts[0].action_index == 0 and ts[0].reward == pytest.approx(-0.00199)


def test_reference_pickle_loads_exactly_as_its_jsonl_conversion():
    from_pickle = datasets.load_transitions(reference_file(REFERENCE_PICKLE))
    from_jsonl = datasets.load_transitions(reference_file(REFERENCE_JSONL))
    assert len(from_pickle) == len(from_jsonl) == 4329
    for i, (a, b) in enumerate(zip(from_pickle, from_jsonl)):
        for field in dataclasses.fields(datasets.Transition):
            va, vb = getattr(a, field.name), getattr(b, field.name)
            assert type(va) is type(vb) and va == vb, f"transition {i}, field {field.name}: {va!r} != {vb!r}"
    assert from_pickle == from_jsonl


def _reference_record(i=0):
    actions = ["pick up the tomato", "serve nothing"]
    return (
        "Your task is to serve a salad.",
        f"state {i}",
        "pick up the tomato",
        f"state {i + 1}",
        -0.00199,
        False,
        actions,
        actions,
    )


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_pickle_in_the_reference_layout_loads(tmp_path, protocol):
    path = tmp_path / "tiny.pkl"
    path.write_bytes(pickle.dumps([_reference_record(0), list(_reference_record(1))], protocol=protocol))
    ts = datasets.load_transitions(path)
    assert [t.state for t in ts] == ["state 0", "state 1"]
    assert ts[0] == datasets.Transition(
        "Your task is to serve a salad.",
        "state 0",
        "pick up the tomato",
        "state 1",
        -0.00199,
        False,
        ("pick up the tomato", "serve nothing"),
        ("pick up the tomato", "serve nothing"),
    )


class _RunsAShellCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _CallsPrint:
    def __reduce__(self):
        return print, ("ran code from a pickle",)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, protocol, capfd):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([_reference_record(), _RunsAShellCommand(f"touch {marker}")], protocol=protocol))
    assert pickle.loads(pickle.dumps(1)) == 1  # (sanity: the stdlib loader itself is not patched)
    with pytest.raises(ValueError) as info:
        datasets.load_transitions(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "refusing to run code" in message
    assert "system" in message  # names what it asked for (posix.system / nt.system)
    assert not marker.exists()

    path.write_bytes(pickle.dumps(_CallsPrint(), protocol=protocol))
    with pytest.raises(ValueError, match="refusing to run code"):
        datasets.load_transitions(path)
    assert "ran code from a pickle" not in capfd.readouterr().out


def test_pickles_of_objects_and_persistent_ids_are_refused(tmp_path):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps([datasets.Transition(*_reference_record())]))  # a class instance: needs an import
    with pytest.raises(ValueError, match=r"objects.pkl: refusing to run code .*prior_rl.io.datasets.Transition"):
        datasets.load_transitions(path)

    class WithPersistentIds(pickle.Pickler):
        def persistent_id(self, obj):
            return "ext-1" if obj == "state 0" else None

    import io

    buf = io.BytesIO()
    WithPersistentIds(buf).dump([_reference_record(0)])
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="refusing to run code .*persistent id 'ext-1'"):
        datasets.load_transitions(path)


def test_malformed_pickles_are_reported(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps([_reference_record()])[:-20])
    with pytest.raises(ValueError, match="bad.pkl: not a readable pickle"):
        datasets.load_transitions(path)
    path.write_bytes(pickle.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="bad.pkl: expected a list of transitions"):
        datasets.load_transitions(path)
    path.write_bytes(pickle.dumps([_reference_record()[:5]]))
    with pytest.raises(ValueError, match=r"bad.pkl: record 0: expected a 8-tuple"):
        datasets.load_transitions(path)
    bad_reward = list(_reference_record())
    bad_reward[4] = "high"
    path.write_bytes(pickle.dumps([bad_reward]))
    with pytest.raises(ValueError, match="bad.pkl: record 0: 'reward' must be a finite number"):
        datasets.load_transitions(path)
    path.write_bytes(pickle.dumps([]))
    with pytest.raises(ValueError, match="holds no transitions"):
        datasets.load_transitions(path)


def test_missing_files_and_unknown_formats(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        datasets.load_transitions(tmp_path / "missing.pkl")
    other = tmp_path / "data.csv"
    other.write_text("task,state\n")
    with pytest.raises(ValueError, match=r"data.csv.*accepted formats are JSON lines \(.jsonl, .jsonl.gz.*\.pkl"):
        datasets.load_transitions(other)
    with pytest.raises(ValueError, match="written as JSON lines"):
        datasets.save_transitions([], tmp_path / "out.pkl")


def test_save_is_atomic_an_existing_file_survives_a_failed_write(tmp_path):
    ts = datasets.generate("frozen-lake", 10, 0.5, 20, seed=0)
    for name in ("d.jsonl", "d.jsonl.gz"):
        path = datasets.save_transitions(ts, tmp_path / name)
        before = path.read_bytes()

        def failing():
            yield ts[0]
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            datasets.save_transitions(failing(), path)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"d.jsonl", name})  # no temp files left
        assert datasets.load_transitions(path) == ts


def test_generator_balances_success_and_round_trips(tmp_path):
    ts = datasets.generate(
        "frozen-lake", 300, success_fraction=0.75, max_episode_steps=20, epsilons=(0.0, 0.3, 1.0), seed=1
    )
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
    rec = {
        "task": "t",
        "state": "s",
        "action": "x",
        "next_state": "s2",
        "reward": 0,
        "done": False,
        "actions": ["a"],
        "next_actions": ["a"],
    }
    with gzip.open(tmp_path / "g.jsonl.gz", "wt") as f:
        f.write(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match="'x' is not among its admissible actions"):
        datasets.load_transitions(tmp_path / "g.jsonl.gz")
