"""Running beyond one small CPU job: the CLI says what it computes on, and the scaling scripts run.

* ``train`` / ``offline`` print one line naming the JAX backend and devices once their arguments are valid; bad
  input (``--devices`` beyond what JAX sees included) is still exactly one error line.
* ``benchmarks.memory_model`` agrees with what we can measure here (SmolLM2's loaded parameter bytes, the KV cache
  shapes our scoring allocates); ``benchmarks/device_check.sh`` parses.
* ``prior_rl.distributed``: two local CPU processes (one device each, coordinator on 127.0.0.1) run the
  data-parallel update over a mesh spanning both and match one process on the same global batch; bad
  ``--coordinator`` / ``--num-processes`` / ``--process-id`` values and an unreachable coordinator are one error line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types

import jax
import pytest

from prior_rl import cli

FROZEN = ["--env", "frozen-lake", "--no-progress"]


@pytest.fixture
def fake_runs(monkeypatch, tmp_path):
    """Replace the training functions by stubs that record their config and return a one-row result."""
    import prior_rl.offline
    import prior_rl.train

    calls = []

    def fake(config, *args, **kwargs):
        calls.append(config)
        return types.SimpleNamespace(history=[{"env_steps": 1, "eval_success": 1.0}], run_dir=tmp_path / "run")

    monkeypatch.setattr(prior_rl.train, "train", fake)
    monkeypatch.setattr(prior_rl.offline, "train_offline", fake)
    monkeypatch.chdir(tmp_path)
    return calls


def _expected_line() -> str:
    devices = jax.devices()
    n = len(devices)
    return f"prior-rl: jax {jax.__version__} on {jax.default_backend()}: {n} device{'s' if n > 1 else ''} ("


@pytest.mark.parametrize(
    "argv",
    [
        ["train", *FROZEN, "--algo", "dqn", "--env-steps", "10"],
        ["offline", *FROZEN, "--algo", "cql", "--dataset-size", "10", "--updates", "1"],
    ],
)
def test_train_and_offline_print_backend_and_devices_once(fake_runs, capsys, argv):
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(_expected_line()), err
    assert str(jax.devices()[0]) in err[0]
    assert len(fake_runs) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["train", *FROZEN, "--algo", "sarsa"],  # refused when the config is built
        ["train", *FROZEN, "--env-steps", "0"],  # refused by argparse
        ["offline", *FROZEN, "--algo", "cql"],  # no dataset
        ["train", *FROZEN, "--devices", str(len(jax.devices()) + 1)],  # more devices than JAX sees
    ],
)
def test_bad_input_is_one_error_line_without_the_backend_line(fake_runs, capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("prior-rl: error: "), err
    assert not fake_runs


def test_too_many_devices_names_what_jax_sees(fake_runs, capsys):
    n = len(jax.devices()) + 1
    assert cli.main(["train", *FROZEN, "--devices", str(n)]) == 2
    err = capsys.readouterr().err
    assert f"--devices {n}" in err and jax.default_backend() in err and "xla_force_host_platform_device_count" in err


# ---- benchmarks.memory_model --------------------------------------------------------------------------------


def test_memory_model_param_count_equals_our_llama_module_for_every_size():
    from benchmarks import memory_model as mm

    rows = mm.check_flax_shapes()  # raises if a count differs
    assert [r["model"] for r in rows] == [a.name for a in mm.ARCHS]
    published = {"SmolLM2-135M": 134.5e6, "Qwen2.5-0.5B": 494e6, "Qwen1.5-7B": 7.72e9, "Qwen1.5-32B": 32.5e9}
    for a in mm.ARCHS:
        if a.name in published:
            assert mm.param_count(a) == pytest.approx(published[a.name], rel=0.005)


def test_memory_model_tensor_parallel_split():
    from benchmarks import memory_model as mm

    for a in mm.ARCHS:
        n = mm.param_count(a)
        per = [mm.param_elements_per_device(a, tp) for tp in mm.TP_DEGREES]
        assert per[0] == n and per == sorted(per, reverse=True)
        for tp, p in zip(mm.TP_DEGREES, per):
            assert p * tp >= n  # replicated norms (and rounded-up uneven heads) only add
            assert mm.param_elements_per_device(a, tp, vocab_sharded=False) >= p
    qwen7 = next(a for a in mm.ARCHS if a.name == "Qwen1.5-7B")  # 32 heads, 32 KV heads: splits evenly
    replicated = qwen7.layers * 2 * qwen7.hidden + qwen7.hidden
    assert mm.param_elements_per_device(qwen7, 4) == (mm.param_count(qwen7) - replicated) // 4 + replicated
    assert not mm.uneven(qwen7, 8) and mm.uneven(mm.ARCHS[0], 2)  # SmolLM2's 9 heads do not halve


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_memory_model_kv_bytes_equal_what_scoring_allocates(dtype):
    import jax.numpy as jnp
    import numpy as np

    from benchmarks import memory_model as mm
    from prior_rl.llm.llama import init_params

    a = mm.Arch("tiny", 2, 32, 4, 2, 8, 64, 100, False, True, "test")
    config = mm.llama_config(a)
    params = init_params(config, dtype=getattr(jnp, dtype))
    shapes = mm.scoring_kv_shapes(config, params, Tp=16, L=32, batch=1)
    nbytes = sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in shapes)
    assert {d for _, d in shapes} == {dtype}
    assert nbytes == mm.kv_bytes_per_token(a, mm.DTYPES[dtype]) * (16 + 32)
    assert mm.flax_param_count(a) == mm.param_count(a)


def test_memory_model_checks_the_loaded_smollm2():
    from benchmarks import memory_model as mm
    from prior_rl.llm.weights import WeightsError

    try:
        out = mm.check_smollm2(1, ("overcooked",))  # raises if bytes, KV shapes or FLOPs disagree
    except WeightsError as exc:
        pytest.skip(f"SmolLM2 is not installed: {exc}")
    assert out["loaded float32 bytes"] == mm.param_count(mm.ARCHS[0]) * 4 == 538_060_032
    state = out["states"][0]
    assert state["allocated KV bytes"] == state["model KV bytes (padded lengths)"]
    assert state["XLA / model"] == pytest.approx(1.0, abs=0.05)


# ---- benchmarks/device_check.sh (run once by hand: `benchmarks/device_check.sh --quick --out /tmp/device`) ----


def test_device_check_script_parses_and_refuses_bad_options():
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    assert all(f"{step}.json" in shown.stdout for step in ("learner", "prior", "jitted"))
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr


# ---- multi-host data parallelism (prior_rl.distributed): 2 local CPU processes, one device each ---------------

MULTIHOST = textwrap.dedent("""
    import sys
    import numpy as np
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "worker":
        from prior_rl import distributed
        pid, port = int(sys.argv[3]), int(sys.argv[4])
        distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid, timeout_s=60)
    import jax
    from jax.sharding import PartitionSpec as P
    from prior_rl import agents, parallel
    from prior_rl.replay import Transition

    U, B, k, D = 3, 16, 5, 12  # a fixed global batch, the same in every process
    rng = np.random.default_rng(0)
    r = lambda *s: rng.normal(size=s).astype(np.float32)
    m = lambda *s: (rng.random(s) < 0.8) | (np.arange(s[-1]) == 0)
    batches = Transition(r(U, B, D), r(U, B, k, D), m(U, B, k), r(U, B),
                         (rng.random((U, B)) < 0.7).astype(np.float32), r(U, B, k, D), m(U, B, k))
    agent = agents.make_dqn_prior()
    state = jax.device_get(agent.init(jax.random.key(0), D))
    losses = []
    if mode == "worker":
        from prior_rl import distributed
        assert jax.process_count() == 2 and len(jax.devices()) == 2 and len(jax.local_devices()) == 1
        mesh = parallel.make_mesh()  # spans both processes
        update = parallel.make_sharded_update(agent, mesh)
        state = distributed.put(state, mesh)
        sharded = distributed.put(batches, mesh, P(None, "data"))
        assert sharded.reward.addressable_shards[0].data.shape == (U, B // 2)  # this process holds half the batch
        for _ in range(2):
            state, metrics = jax.block_until_ready(update(state, sharded))
            losses.append(distributed.fetch(metrics["loss"]))
        state = distributed.fetch(state)
    else:  # the single-process, single-device update on the same global batch
        for _ in range(2):
            state, metrics = jax.block_until_ready(agent.update(state, batches))
            losses.append(np.asarray(metrics["loss"]))
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    np.savez(out, loss=np.stack(losses), **{f"leaf{i}": x for i, x in enumerate(leaves)})
    print("done", mode)
""")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_env() -> dict:
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def run_scripts_together(script: str, argvs: list[list[str]], timeout_s: float) -> list[str]:
    """Start ``python -c script *argv`` for every argv at once (local CPU processes, ``_cpu_env``), wait for all,
    and return each one's output (stdout and stderr); fails with the tail of the first that did not exit 0."""
    import subprocess
    import sys

    env = _cpu_env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for argv in argvs
    ]
    try:
        outs = [p.communicate(timeout=timeout_s)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


@pytest.mark.slow  # ~40 s on the shared 2-core machine: three Python processes start JAX at once
def test_two_process_data_parallel_update_equals_one_process(tmp_path):
    import numpy as np

    port = _free_port()
    argvs = [["worker", str(tmp_path / f"p{i}.npz"), str(i), str(port)] for i in (0, 1)]
    run_scripts_together(MULTIHOST, [*argvs, ["single", str(tmp_path / "single.npz")]], timeout_s=240)
    single = np.load(tmp_path / "single.npz")
    for i in (0, 1):
        got = np.load(tmp_path / f"p{i}.npz")
        assert set(got.files) == set(single.files)
        for name in single.files:
            np.testing.assert_allclose(got[name], single[name], rtol=1e-5, atol=1e-5, err_msg=f"process {i}: {name}")


def _cli_in_subprocess(port: int, *extra: str, timeout_s: float = 2):
    import subprocess
    import sys

    code = (
        "import sys\nfrom prior_rl import cli, distributed\n"
        f"distributed.DEFAULT_TIMEOUT_S = {timeout_s}\n"
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    argv = ["train", *FROZEN, "--coordinator", f"127.0.0.1:{port}", *extra]
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv], env=_cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("process_id", [0, 1])
def test_unreachable_coordinator_is_one_clear_error(tmp_path, process_id):
    port = _free_port()
    proc = _cli_in_subprocess(
        port, "--num-processes", "2", "--process-id", str(process_id), "--run-dir", str(tmp_path / "run")
    )
    out, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("prior-rl: error: ") and f"127.0.0.1:{port}" in lines[0]
    expected = "could not reach the coordinator" if process_id else "only 1 of 2 processes arrived"
    assert expected in lines[0] and "Traceback" not in err


@pytest.mark.slow  # ~40 s: two processes load JAX and MiniLM and compile the update at once
def test_joined_processes_train_one_run_and_only_process_0_writes_it(tmp_path):
    port = _free_port()
    short = ["--algo", "dqn", "--env-steps", "60", "--num-envs", "2", "--eval-every", "60", "--eval-episodes", "2"]
    procs = [
        _cli_in_subprocess(
            port,
            *short,
            "--num-processes",
            "2",
            "--process-id",
            str(i),
            "--run-dir",
            str(tmp_path / f"run{i}"),
            timeout_s=60,
        )
        for i in (0, 1)
    ]
    outs = [proc.communicate(timeout=300) for proc in procs]
    for i, (proc, (out, err)) in enumerate(zip(procs, outs)):
        assert proc.returncode == 0, err[-3000:]
        assert f"process {i} of 2" in err, err[-2000:]
    stdout = outs[0][0]  # gloo prints a "[Gloo] Rank 0 is connected" line first
    summary = json.loads(stdout[stdout.index("{") :])
    assert summary["env_steps"] == 60 and summary["run_dir"] == str(tmp_path / "run0")
    assert "run_dir" not in outs[1][0]  # one writer: process 1 prints no summary and writes no run folder
    assert (tmp_path / "run0" / "metrics.csv").exists() and not (tmp_path / "run1").exists()


@pytest.mark.parametrize(
    "argv", [["train", "--algo", "ppo"], ["offline", "--algo", "cql-prior", "--dataset-size", "100"]]
)
def test_loops_that_do_not_span_processes_refuse_the_coordinator_before_joining(tmp_path, argv):
    code = "import sys\nfrom prior_rl import cli\nsys.exit(cli.main(sys.argv[1:]))"
    args = [*argv, "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2", "--process-id", "1"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=_cpu_env(), capture_output=True, text=True, timeout=120
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "does not run across processes yet" in lines[0] and "dqn-prior/dqn/llm" in lines[0]


SWEEP = ["sweep", "--env", "frozen-lake", "--algo", "ppo", "--features", "onehot", "--llm", "expert-mix:0.5"]
SWEEP += ["--env-steps", "1024", "--eval-every", "512", "--eval-episodes", "4", "--seeds", "4"]


@pytest.mark.slow  # ~60 s: three Python processes compile the same PPO program at once on 2 cores
def test_two_process_sweep_equals_the_one_process_sweep(tmp_path):
    """``prior-rl sweep`` across 2 local CPU processes (one device each): the seeds are split over both devices,
    process 0 writes the curves, and they equal a one-process run of the same seeds."""
    import csv
    import subprocess
    import sys

    code = "import sys\nfrom prior_rl import cli\nsys.exit(cli.main(sys.argv[1:]))"
    port, env = _free_port(), _cpu_env()
    runs = [[*SWEEP, "--out", str(tmp_path / "one")]]
    runs += [
        [*SWEEP, "--out", str(tmp_path / "two"), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
        + ["--process-id", str(i)]
        for i in (0, 1)
    ]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for argv in runs
    ]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()[-3000:]
    assert b"2 devices" in outs[1][1]  # the backend line of a joined process names both processes' devices
    one = list(csv.DictReader((tmp_path / "one" / "curves.csv").open()))
    two = list(csv.DictReader((tmp_path / "two" / "curves.csv").open()))
    assert len(one) == 4 * 3 and one == two  # every seed's curve, bit for bit as printed


def test_sweep_seeds_must_split_evenly_over_the_devices(capsys):
    assert cli.main([*SWEEP[:-1], "3", "--devices", "2"]) == 2
    err = capsys.readouterr().err
    assert "sees only" in err or "cannot be split evenly over 2 devices" in err


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--coordinator", "localhost"], "is not HOST:PORT"),
        (["--coordinator", "127.0.0.1:70000"], "is not HOST:PORT"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "2"], "needs --process-id"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"], "out of range"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "0", "--process-id", "0"], "--num-processes"),
        (["--num-processes", "2", "--process-id", "1"], "go with --coordinator"),
        (["--coordinator", "auto", "--process-id", "1"], "drop --process-id"),
    ],
)
def test_distributed_options_are_checked_before_anything_starts(fake_runs, capsys, extra, fragment):
    assert cli.main(["train", *FROZEN, *extra]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("prior-rl: error: ") and fragment in err[0], err
    assert not fake_runs
