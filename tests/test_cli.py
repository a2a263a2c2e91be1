"""The ``prior-rl`` command line: bad input is one ``prior-rl: error:`` line and exit status 2, found before
anything is loaded, generated or written; ``python -m prior_rl`` and ``--version`` work."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prior_rl import cli
from prior_rl.io import datasets

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def nothing_runs(monkeypatch, tmp_path):
    """Bad input must be refused before training starts or a dataset is generated: fail loudly if either runs.
    Runs in an empty folder so the default run directory (runs/...) lands nowhere that matters."""
    import prior_rl.offline
    import prior_rl.train

    def must_not_run(*args, **kwargs):
        raise AssertionError("validation should have failed before any training / generation started")

    monkeypatch.setattr(prior_rl.train, "train", must_not_run)
    monkeypatch.setattr(prior_rl.offline, "train_offline", must_not_run)
    monkeypatch.setattr(datasets, "generate", must_not_run)
    import prior_rl.run.sweep

    monkeypatch.setattr(prior_rl.run.sweep, "run_sweep", must_not_run)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _assert_one_error_line(rc, capsys, *fragments):
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("prior-rl: error: ") and lines[0][len("prior-rl: error: ") :].strip()
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


FROZEN = ["--env", "frozen-lake"]

BAD_TRAIN = [
    (["--env", "kitchen"], "valid names are: alfworld-pick, frozen-lake"),
    ([*FROZEN, "--algo", "sarsa"], "valid algorithms are: dqn-prior, dqn"),
    ([*FROZEN, "--env-steps", "0"], "--env-steps: must be a positive integer"),
    ([*FROZEN, "--env-steps", "-5"], "--env-steps"),
    ([*FROZEN, "--env-steps", "lots"], "expected an integer, got 'lots'"),
    ([*FROZEN, "--num-envs", "0"], "--num-envs"),
    ([*FROZEN, "--k", "0"], "--k"),
    ([*FROZEN, "--eval-every", "-1"], "--eval-every"),
    ([*FROZEN, "--eval-episodes", "0"], "--eval-episodes"),
    ([*FROZEN, "--devices", "0"], "--devices"),
    ([*FROZEN, "--history", "-1"], "--history: must be 0 or a positive integer"),
    ([*FROZEN, "--checkpoint-every", "-2"], "--checkpoint-every"),
    ([*FROZEN, "--max-episode-steps", "-3"], "--max-episode-steps"),
    ([*FROZEN, "--epsilon", "1.5"], "--epsilon: must be a fraction between 0 and 1"),
    ([*FROZEN, "--inv-temperature", "0"], "--inv-temperature"),
    ([*FROZEN, "--seed", "-1"], "--seed"),
    ([*FROZEN, "--prompt", "poem"], "invalid choice"),
    ([*FROZEN, "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ([*FROZEN, "--run-dir", "{file}/run"], "is a file, not a directory"),
]

BAD_OFFLINE = [
    (["--env", "kitchen", "--dataset-size", "10"], "unknown environment 'kitchen'"),
    (["--algo", "dqn", "--dataset-size", "10"], "unknown offline algo 'dqn'"),
    ([], "give a dataset: --dataset FILE, or --dataset-size N"),
    (["--dataset", "{missing}"], "does not exist"),
    (["--dataset", "{file}"], "accepted formats are JSON lines"),
    (["--dataset", "{dir}"], "is not a file"),
    (["--dataset-size", "0"], "--dataset-size: must be a positive integer"),
    (["--dataset-size", "10", "--updates", "0"], "--updates"),
    (["--dataset-size", "10", "--eval-every", "0"], "--eval-every"),
    (["--dataset-size", "10", "--eval-episodes", "-1"], "--eval-episodes"),
    (["--dataset-size", "10", "--k", "-1"], "--k"),
    (["--dataset-size", "10", "--devices", "0"], "--devices"),
    (["--dataset-size", "10", "--history", "-4"], "--history"),
    (["--dataset-size", "10", "--cql-beta", "-1"], "--cql-beta"),
    (["--dataset-size", "10", "--run-dir", "{file}"], "is a file, not a directory"),
]

BAD_DATASET = [
    (["--env", "nope", "--size", "10", "--out", "x.jsonl"], "unknown environment 'nope'"),
    (["--size", "-3", "--out", "x.jsonl"], "--size: must be a positive integer"),
    (["--size", "0", "--out", "x.jsonl"], "--size"),
    (["--out", "x.jsonl"], "required: --size"),
    (["--size", "10"], "required: --out"),
    (["--size", "10", "--out", "x.jsonl", "--success-fraction", "1.5"], "--success-fraction: must be a fraction"),
    (["--size", "10", "--out", "x.jsonl", "--success-fraction", "-0.1"], "--success-fraction"),
    (["--size", "10", "--out", "x.jsonl", "--success-fraction", "nan"], "--success-fraction"),
    (["--size", "10", "--out", "x.jsonl", "--max-episode-steps", "0"], "--max-episode-steps"),
    (["--size", "10", "--out", "x.jsonl", "--seed", "-1"], "--seed"),
    (["--size", "10", "--out", "x.csv"], "end the name in one of .jsonl, .jsonl.gz"),
    (["--size", "10", "--out", "{dir}"], "is a directory"),
    (["--size", "10", "--out", "{file}/x.jsonl"], "is a file, not a directory"),
]

BAD_SWEEP = [
    (["--env", "alfworld-pick"], "no pure-JAX implementation of 'alfworld-pick'; the jitted loop supports: overcooked"),
    (["--env", "frozen-lake", "--discount", "smdp"], "discount='smdp' needs macro actions"),
    (["--algo", "sac"], "algo must be 'dqn-prior', 'dqn' or 'llm'"),
    (["--algo", "ppo", "--k", "3"], "--k applies to dqn-prior/dqn/llm, not --algo ppo; drop it"),
    (["--algo", "ppo", "--kl-coef", "0.1"], "--kl-coef is PPO-Prior's α; use --algo ppo-prior"),
    (["--kl-coef", "0.1"], "--kl-coef applies to --algo ppo-prior, not dqn-prior"),
    (["--algo", "ppo", "--eval-every", "500"], "must be multiples of num_envs × rollout_steps = 128"),
    (["--prior-floor", "2"], "--prior-floor: must be a fraction"),
    (["--seeds", "0"], "--seeds: must be a positive integer"),
    (["--env-steps", "1000", "--eval-every", "300"], "eval_every must divide env_steps"),
    (["--p-expert", "1.5"], "--p-expert: must be a fraction"),
    (["--prompt", "transcript"], "invalid choice"),
    (["--features", "bag"], "invalid choice"),
    (["--llm", "expert-mix:2"], "the expert probability must be a number in [0, 1]"),
    (["--out", "{file}"], "is a file, not a directory"),
]

CASES = (
    [("train", a, m) for a, m in BAD_TRAIN]
    + [("sweep", a, m) for a, m in BAD_SWEEP]
    + [("offline", a, m) for a, m in BAD_OFFLINE]
    + [("dataset", a, m) for a, m in BAD_DATASET]
)


@pytest.mark.parametrize("command,args,fragment", CASES, ids=[f"{c}:{' '.join(a)}" for c, a, _ in CASES])
def test_bad_input_is_one_error_line_and_status_2(nothing_runs, capsys, command, args, fragment):
    (nothing_runs / "a_file.csv").write_text("not a dataset\n")
    (nothing_runs / "a_dir").mkdir()
    places = {
        "file": str(nothing_runs / "a_file.csv"),
        "dir": str(nothing_runs / "a_dir"),
        "missing": str(nothing_runs / "missing.jsonl.gz"),
    }
    argv = [command, *(a.format(**places) for a in args)]
    if command in ("train", "offline"):
        argv.append("--no-progress")
    _assert_one_error_line(cli.main(argv), capsys, fragment)
    assert sorted(p.name for p in nothing_runs.iterdir()) == ["a_dir", "a_file.csv"]  # nothing written


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
def test_unwritable_out_folder_is_refused(nothing_runs, capsys):
    locked = nothing_runs / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc = cli.main(["dataset", "--size", "10", "--out", str(locked / "d.jsonl")])
        _assert_one_error_line(rc, capsys, "cannot write in")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    "bad", [["--size", "-1"], ["--env", "nope"], ["--success-fraction", "2"], ["--max-episode-steps", "x"]]
)
def test_dataset_with_bad_option_leaves_an_existing_out_unchanged(nothing_runs, capsys, bad):
    out = nothing_runs / "salad.jsonl.gz"
    out.write_bytes(b"precious bytes")
    rc = cli.main(["dataset", "--size", "10", "--out", str(out), *bad])
    _assert_one_error_line(rc, capsys)
    assert out.read_bytes() == b"precious bytes"
    assert [p.name for p in nothing_runs.iterdir()] == ["salad.jsonl.gz"]


def test_dataset_writes_a_loadable_file(tmp_path, capsys):
    out = tmp_path / "data" / "lake.jsonl.gz"
    rc = cli.main(["dataset", "--env", "frozen-lake", "--size", "25", "--max-episode-steps", "20", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert '"transitions": 25' in capsys.readouterr().out
    assert len(datasets.load_transitions(out)) == 25
    assert [p.name for p in out.parent.iterdir()] == ["lake.jsonl.gz"]


def test_no_command_and_version_in_process(capsys):
    _assert_one_error_line(cli.main([]), capsys, "required")
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"prior-rl {cli.version()}\n"


def test_version_matches_pyproject():
    import tomllib

    import prior_rl

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert prior_rl.__version__ == project["version"] == cli.version()


def test_python_dash_m_prior_rl_version():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "prior_rl", "--version"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"prior-rl {cli.version()}\n"
    proc = subprocess.run(
        [sys.executable, "-m", "prior_rl", "dataset", "--size", "-3", "--out", "x.jsonl"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("prior-rl: error: argument --size")
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
