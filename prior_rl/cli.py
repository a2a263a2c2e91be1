"""``prior-rl`` command line: train online, train offline, generate datasets.

    prior-rl train --env overcooked-tomato-salad --algo dqn-prior --llm smollm2 --env-steps 2000 --seed 0
    prior-rl train ... --run-dir runs/x --checkpoint-every 200 [--resume]
    prior-rl dataset --env overcooked-tomato-lettuce-salad --size 4000 --out data/salad.jsonl.gz
    prior-rl offline --algo cql-prior --dataset data/salad.jsonl.gz
    prior-rl sweep --env overcooked-tomato-lettuce-salad --algo dqn-prior --seeds 64 --env-steps 20000

``--dataset path/to/raw_lettuce_data_bala752000.pkl`` trains on the paper's own file instead (fetch it yourself
from the reference repository, yanxue7/RL-LLM-Prior, ``value-based/overcooked_data/``); it is read as plain data,
never run as code.

Each run writes ``metrics.csv``, TensorBoard events (``tb/``), ``config.json`` and ``success.png`` (success rate vs
environment samples) into its run directory (default ``runs/<env>-<algo>-s<seed>``).

Bad input (an unknown name, a size that is not positive, a missing dataset, an unwritable output) is answered with
one line ``prior-rl: error: ...`` on stderr and exit status 2, before anything is loaded or written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import envs

PROG = "prior-rl"
EXIT_USAGE = 2
# help text only: the configs check the names (and list the valid ones) when they are built
ONLINE_ALGOS_HELP = "dqn-prior, dqn, llm, ppo-prior, ppo"
OFFLINE_ALGOS_HELP = "cql-prior, cql"


class UsageError(Exception):
    """Bad command-line input; ``main`` prints it as one ``prior-rl: error:`` line and returns 2."""


def version() -> str:
    """The installed distribution's version, else the package's ``__version__`` (a source checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("prior-rl")
    except PackageNotFoundError:
        from prior_rl import __version__

        return __version__


class _Parser(argparse.ArgumentParser):
    """argparse, except that an error raises :class:`UsageError` (one line) instead of printing the usage block
    and exiting, so that every subcommand reports bad input the same way."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---- argument types: each rejects bad values with a message that says what is accepted ----------------------


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _bounded(parse: Callable[[str], Any], ok: Callable[[Any], bool], requirement: str) -> Callable[[str], Any]:
    """An argparse type: ``parse`` the text, then refuse values for which ``ok`` is false, naming ``requirement``."""

    def check(text: str) -> Any:
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
        return value

    return check


positive_int = _bounded(_int, lambda v: v >= 1, "a positive integer (1 or more)")
nonnegative_int = _bounded(_int, lambda v: v >= 0, "0 or a positive integer")
probability = _bounded(_float, lambda v: 0.0 <= v <= 1.0, "a fraction between 0 and 1")
positive_float = _bounded(_float, lambda v: v > 0.0, "a positive number")
nonnegative_float = _bounded(_float, lambda v: v >= 0.0, "0 or a positive number")


def _optional_steps(text: str) -> Optional[int]:
    if text.lower() in ("none", "0"):
        return None
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of steps (or 0 / none for the default), got {text!r}"
        )
    return value


def add_distributed_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """``--coordinator`` / ``--num-processes`` / ``--process-id``; ``what`` says what joining does for the command."""
    p.add_argument(
        "--coordinator",
        type=_coordinator,
        default=None,
        metavar="HOST:PORT|auto",
        help="join a multi-process JAX runtime: process 0's address (with --num-processes, --process-id), or "
        f"'auto' to read all three from SLURM/OpenMPI; {what}",
    )
    p.add_argument("--num-processes", type=positive_int, default=None, help="processes in the runtime (--coordinator)")
    p.add_argument("--process-id", type=nonnegative_int, default=None, help="this process, 0..N-1 (--coordinator)")


def _coordinator(text: str) -> str:
    if text == "auto":
        return text
    from prior_rl.distributed import DistributedError, check_address

    try:
        return check_address(text)
    except DistributedError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or 'auto' under SLURM/OpenMPI)") from None


def env_name(text: str) -> str:
    if text not in envs.names():
        raise argparse.ArgumentTypeError(f"unknown environment {text!r}; valid names are: {', '.join(envs.names())}")
    return text


# ---- file checks, done before anything is loaded ------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable_dir(path: Path, flag: str, value: Path) -> None:
    """``path`` is a directory we can write into, or one we can create: its nearest existing ancestor is a
    directory in which a probe file can be created (a real write, so it also holds for root and read-only
    mounts). ``flag`` / ``value`` name the option in the message."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {value}: {path} is a file, not a directory; choose another {flag}")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UsageError(f"{flag} {value}: {base} is a file, not a directory; choose another {flag}")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".prior-rl-write-test-")
    except OSError as exc:
        raise UsageError(
            f"{flag} {value}: cannot write in {base} ({exc.strerror or exc}); choose a writable {flag}"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _check_out_file(path: Path) -> None:
    from prior_rl.io import datasets

    if path.is_dir():
        raise UsageError(f"--out {path} is a directory; give a file name such as {path / 'salad.jsonl.gz'}")
    if not path.name.lower().endswith(datasets.JSONL_SUFFIXES):
        raise UsageError(
            f"--out {path}: datasets are written as JSON lines; end the name in one of "
            f"{', '.join(datasets.JSONL_SUFFIXES)} (e.g. data/salad.jsonl.gz)"
        )
    _check_writable_dir(path.parent, "--out", path)


def _check_dataset_file(path: Path) -> None:
    from prior_rl.io import datasets

    if not path.exists():
        raise UsageError(
            f"--dataset {path} does not exist; give an existing dataset file, or generate one with "
            f"'{PROG} dataset --out FILE' (or use --dataset-size N to generate one in memory)"
        )
    if not path.is_file():
        raise UsageError(f"--dataset {path} is not a file")
    try:
        datasets.dataset_format(path)
    except ValueError as exc:
        raise UsageError(f"--dataset: {exc}") from None


# ---- parser -------------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", type=env_name, default=None, help=f"environment: one of {', '.join(envs.names())}")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument(
        "--llm",
        default="smollm2",
        help="LLM prior: 'smollm2' (embedded), a local HF dir or a .gguf file; 'expert-mix:P' is a synthetic prior "
        "with P on the env's expert command (alfworld-pick)",
    )
    p.add_argument(
        "--llm-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="the prior's parameters and activations (bfloat16 halves memory; on CPU it is slower)",
    )
    p.add_argument(
        "--llm-shards",
        type=positive_int,
        default=1,
        metavar="N",
        help="place the prior tensor-parallel over N devices (heads and MLP columns split; N must divide them)",
    )
    p.add_argument("--encoder", default="minilm", help="Q features: 'minilm' (embedded) or a local HF BERT dir")
    p.add_argument("--k", type=positive_int, default=5, help="prior candidates per state (paper: 5)")
    p.add_argument(
        "--prior-mode",
        choices=("exact", "generate"),
        default="exact",
        help="exact: sample candidates from the exact prior over admissible actions; "
        "generate: k LLM generations mapped to actions (the paper's rule)",
    )
    p.add_argument(
        "--no-generation-cache",
        dest="generation_cache",
        action="store_false",
        help="--prior-mode generate: draw k new generations at every visit of a prompt (default: drawn once per "
        "prompt and reused, the reference's per-prompt cache)",
    )
    p.add_argument(
        "--prompt",
        choices=("env", "paper", "chat", "transcript", "transcript-state"),
        default="env",
        help="env: the environment's prompt, actions scored as its continuation (TWOSOME); "
        "paper: RL-LLM-Prior's query listing the admissible actions; chat: that in the chat template; "
        "transcript: expert demonstrations of other training tasks + this episode's transcript (online runs); "
        "transcript-state: the same demonstrations + the current state only (a function of the observation: "
        "offline runs and the compiled loop)",
    )
    p.add_argument(
        "--transcript-demos",
        type=nonnegative_int,
        default=3,
        metavar="N",
        help="--prompt transcript: expert demonstrations in the preamble (default 3)",
    )
    p.add_argument(
        "--transcript-selection",
        choices=("fixed", "similar"),
        default="fixed",
        help="--prompt transcript: the first N other training tasks (fixed) or the most similar ones",
    )
    p.add_argument(
        "--transcript-turns",
        type=_bounded(_int, lambda v: v >= 2, "an integer >= 2 (turn 0 and the newest turn)"),
        default=None,
        metavar="T",
        help="--prompt transcript: keep at most T turns of the episode (default: all that fit the context)",
    )
    p.add_argument(
        "--context-cache",
        choices=("episode", "preamble", "off"),
        default="episode",
        help="--prompt transcript: KV caching, preamble + per-episode history (default), preamble only, or none; "
        "the scores are the same",
    )
    p.add_argument(
        "--history",
        type=nonnegative_int,
        default=0,
        metavar="H",
        help="show the last H (state, action) steps in the paper/chat Overcooked prompt (reference: 5)",
    )
    scoring = p.add_mutually_exclusive_group()
    scoring.add_argument(
        "--sum-logprobs",
        dest="length_normalize",
        action="store_const",
        const=False,
        help="score actions by summed token log-probs (default for --prompt transcript)",
    )
    scoring.add_argument(
        "--mean-logprobs",
        dest="length_normalize",
        action="store_const",
        const=True,
        help="score actions by mean token log-probs, TWOSOME's normalisation (default for env/paper/chat)",
    )
    p.add_argument("--feature-style", default=None, choices=("paper", "paper_alfworld", "task"))
    p.add_argument(
        "--max-episode-steps",
        type=_optional_steps,
        default=None,
        help="per-episode step cap (default: 31 Tomato, 51 Salad, 20 Frozen Lake, 50 ALFWorld)",
    )
    p.add_argument("--eval-episodes", type=positive_int, default=10)
    p.add_argument(
        "--devices",
        type=positive_int,
        default=1,
        help="run each update data-parallel over this many devices (the minibatch is split)",
    )
    add_distributed_arguments(
        p, "checks the connection (train/offline across processes is not wired yet; prior-rl sweep is: docs/scaling.md)"
    )
    p.add_argument("--run-dir", default=None, help="where logs, plots and checkpoints go")
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=0, help="updates between checkpoints (0 = none)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --run-dir")
    p.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,offline,sweep,dataset}")

    t = sub.add_parser("train", help="online training (DQN-Prior, DQN, PPO-Prior, PPO, pure LLM)")
    _common(t)
    t.add_argument("--algo", default="dqn-prior", help=f"one of {ONLINE_ALGOS_HELP}")
    t.add_argument("--env-steps", type=positive_int, default=2000, help="environment samples (summed over copies)")
    t.add_argument("--num-envs", type=positive_int, default=4)
    t.add_argument(
        "--env-workers",
        type=nonnegative_int,
        default=0,
        metavar="W",
        help="step the env copies in W worker processes (0: in this process); for ALFWorld's engine",
    )
    t.add_argument("--epsilon", type=probability, default=0.2)
    t.add_argument(
        "--inv-temperature",
        type=positive_float,
        default=None,
        help="Boltzmann over candidates with softmax(inv_temp·Q) (the reference's --alpha 10)",
    )
    t.add_argument("--eval-every", type=positive_int, default=500)
    t.add_argument("--llm-sample", action="store_true", help="pure-LLM policy samples instead of greedy")

    o = sub.add_parser("offline", help="offline training (CQL-Prior, CQL)")
    _common(o)
    o.add_argument("--algo", default="cql-prior", help=f"one of {OFFLINE_ALGOS_HELP}")
    o.add_argument(
        "--dataset",
        default=None,
        help="dataset file: JSON lines (.jsonl, .jsonl.gz) or the paper's raw_lettuce_data_bala752000.pkl",
    )
    o.add_argument(
        "--dataset-size", type=positive_int, default=None, help="sub-sample to / generate this many transitions"
    )
    o.add_argument("--updates", type=positive_int, default=10_000)
    o.add_argument("--eval-every", type=positive_int, default=500)
    o.add_argument("--cql-beta", type=nonnegative_float, default=5.0)

    w = sub.add_parser(
        "sweep",
        help="many seeds of the compiled DQN-Prior/DQN/LLM or PPO/PPO-Prior loop on the JAX envs in one program",
        description="One jax.jit(jax.vmap(train)) over seeds (and over synthetic priors with --p-expert): per-seed "
        "curves (curves.csv), IQM with 95%% stratified bootstrap intervals (summary.json) and a plot (iqm.png).",
    )
    w.add_argument(
        "--env", type=env_name, default="overcooked-tomato-salad", help="an Overcooked task, or frozen-lake (4x4)"
    )
    w.add_argument("--algo", default="dqn-prior", help="dqn-prior, dqn, llm, ppo or ppo-prior")
    w.add_argument("--seeds", type=positive_int, default=16, help="seeds 0..N-1 (keys fold_in(key(--seed), i))")
    w.add_argument("--seed", type=nonnegative_int, default=0, help="base seed")
    w.add_argument("--env-steps", type=positive_int, default=None, help="default 3000 (PPO: 10240)")
    w.add_argument(
        "--eval-every", type=positive_int, default=None, help="default 500 (PPO: 1024, a multiple of its 128 rollout)"
    )
    w.add_argument("--eval-episodes", type=positive_int, default=10)
    w.add_argument("--llm", default="smollm2", help="the prior: smollm2, a local model, or expert-mix:P")
    w.add_argument("--prompt", choices=("env", "paper", "chat", "transcript-state"), default="env")
    w.add_argument("--encoder", default="minilm")
    w.add_argument("--k", type=positive_int, default=None, help="prior samples per step (DQN-Prior; default 5)")
    w.add_argument("--kl-coef", type=nonnegative_float, default=None, help="α of PPO-Prior (default 0.1)")
    w.add_argument(
        "--prior-floor",
        type=probability,
        default=0.0,
        help="mix the prior with this share of uniform over the admissible actions (a control; default 0)",
    )
    w.add_argument(
        "--features",
        choices=("text", "text-split", "onehot", "llm"),
        default="text",
        help="Q features: the paper's strings, state and action encoded apart (text-split), the one-hot oracle, or "
        "the prior LLM's hidden state after each action (llm)",
    )
    w.add_argument(
        "--discount", choices=("macro", "smdp"), default=None, help="γ per macro (default), or γ^τ (semi-MDP); DQN"
    )
    w.add_argument("--p-expert", type=probability, nargs="+", default=None, metavar="P", help="sweep expert-mix:P")
    w.add_argument("--out", default=None, help="output directory (default runs/sweep-<env>-<algo>)")
    w.add_argument(
        "--devices",
        type=positive_int,
        default=1,
        help="split the seeds over this many local devices (with --coordinator: over every device of every process)",
    )
    add_distributed_arguments(w, "the seeds are split over every process's devices and process 0 writes --out")

    d = sub.add_parser("dataset", help="generate an offline dataset (expert + ε-random mix)")
    d.add_argument("--env", type=env_name, default="overcooked-tomato-lettuce-salad")
    d.add_argument("--size", type=positive_int, required=True, help="transitions to generate")
    d.add_argument("--success-fraction", type=probability, default=0.75)
    d.add_argument("--max-episode-steps", type=positive_int, default=51)
    d.add_argument("--seed", type=nonnegative_int, default=0)
    d.add_argument("--out", required=True, help="output file, .jsonl or .jsonl.gz (written atomically)")
    return parser


# ---- commands -----------------------------------------------------------------------------------------------


def _run_dataset(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out_file(out)
    from prior_rl.io import datasets

    try:
        data = datasets.generate(args.env, args.size, args.success_fraction, args.max_episode_steps, seed=args.seed)
    except RuntimeError as exc:  # the success fraction cannot be reached on this environment
        raise UsageError(f"{exc}; try another --success-fraction or a larger --max-episode-steps") from None
    try:
        path = datasets.save_transitions(data, out)
    except OSError as exc:
        raise UsageError(f"cannot write --out {out} ({exc.strerror or exc}); nothing was written") from None
    print(json.dumps({"path": str(path), **datasets.dataset_stats(data)}, indent=2))
    return 0


def _run_training(args: argparse.Namespace) -> int:
    default_env = "overcooked-tomato-salad" if args.command == "train" else "overcooked-tomato-lettuce-salad"
    env = args.env or default_env
    run_dir = args.run_dir or str(Path("runs") / f"{env}-{args.algo}-s{args.seed}")
    _check_writable_dir(Path(run_dir), "--run-dir", Path(run_dir))
    if args.command == "offline":
        if args.dataset is None and args.dataset_size is None:
            raise UsageError("give a dataset: --dataset FILE, or --dataset-size N to generate N transitions")
        if args.dataset is not None:
            _check_dataset_file(Path(args.dataset))
    common = dict(
        env=env,
        seed=args.seed,
        llm=args.llm,
        llm_dtype=args.llm_dtype,
        llm_shards=args.llm_shards,
        encoder=args.encoder,
        k=args.k,
        prior_mode=args.prior_mode,
        prompt=args.prompt,
        length_normalize=args.length_normalize,
        transcript_demos=args.transcript_demos,
        transcript_selection=args.transcript_selection,
        transcript_turns=args.transcript_turns,
        context_cache=args.context_cache,
        generation_cache=args.generation_cache,
        history=args.history,
        feature_style=args.feature_style,
        max_episode_steps=args.max_episode_steps,
        eval_episodes=args.eval_episodes,
        devices=args.devices,
        run_dir=run_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        progress=not args.no_progress,
    )
    # building the config checks the remaining names (--algo) before anything is loaded
    if args.command == "train":
        from prior_rl.train import TrainConfig, train

        config = TrainConfig(
            algo=args.algo,
            env_steps=args.env_steps,
            num_envs=args.num_envs,
            env_workers=args.env_workers,
            epsilon=args.epsilon,
            inv_temperature=args.inv_temperature,
            eval_every=args.eval_every,
            llm_sample=args.llm_sample,
            **common,
        )
        run: Callable = train
    else:
        from prior_rl.offline import OfflineConfig, train_offline

        config = OfflineConfig(
            algo=args.algo,
            dataset=args.dataset,
            dataset_size=args.dataset_size,
            updates=args.updates,
            eval_every=args.eval_every,
            cql_beta=args.cql_beta,
            plot=True,
            **common,
        )
        run = train_offline
    rank = _start_distributed(args)
    print(f"{PROG}: {_backend_line(args.devices)}", file=sys.stderr)
    result = run(config)
    if rank != 0:  # one writer: process 0 has the run folder and prints the summary
        return 0
    last = result.history[-1]
    summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in last.items()}
    print(json.dumps({"run_dir": str(result.run_dir), **summary}, indent=2))
    return 0


def _run_sweep(args: argparse.Namespace) -> int:
    out = Path(args.out or Path("runs") / f"sweep-{args.env}-{args.algo}")
    _check_writable_dir(out, "--out", out)
    config = _sweep_config(args)
    from prior_rl.run import sweep

    processes = _join_processes(args)
    print(f"{PROG}: {_backend_line(args.devices)}", file=sys.stderr)
    mesh = _sweep_mesh(args, processes)
    result = sweep.run_sweep(config, args.seeds, args.p_expert, base_seed=args.seed, mesh=mesh)
    import jax

    if jax.process_index() != 0:  # one writer: process 0 has every seed's curves too
        return 0
    summary = sweep.write_sweep(result, out)
    keep = ("setting", "eval", "final_iqm", "final_iqm_lo", "final_iqm_hi", "to_0.9_median", "to_0.9_reached")
    rows = [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items() if k in keep} for r in summary["rows"]]
    timing = {k: round(summary[k], 2) for k in ("table_s", "compile_s", "run_s", "samples_per_s")}
    print(json.dumps({"out": str(out), **timing, "rows": rows}, indent=2))
    return 0


def _sweep_mesh(args: argparse.Namespace, processes: int) -> Any:
    """None (one device), or the mesh the seeds are split over: ``--devices`` local ones, or with several processes
    every device of every process; the seed count must divide evenly."""
    if processes == 1 and args.devices == 1:
        return None
    from prior_rl import parallel

    if processes > 1 and args.devices != 1:
        raise UsageError("--devices applies to one process; with --coordinator the seeds go to every device")
    mesh = parallel.make_mesh(None if processes > 1 else args.devices)
    if args.seeds % mesh.devices.size:
        raise UsageError(
            f"--seeds {args.seeds} cannot be split evenly over {mesh.devices.size} devices ({processes} process"
            f"{'es' if processes > 1 else ''}); use a multiple of {mesh.devices.size}"
        )
    return mesh


def _sweep_config(args: argparse.Namespace) -> Any:
    """The compiled loop's config of ``prior-rl sweep``: :class:`JitConfig` (value-based, the LLM policy) or
    :class:`PPOJitConfig`; an option that the chosen algorithm does not use is an error, not ignored."""
    from prior_rl.run import jitted, jitted_ppo

    ppo = args.algo in jitted_ppo.ALGOS
    common = dict(
        env=args.env,
        algo=args.algo,
        env_steps=args.env_steps or (10_240 if ppo else 3000),
        eval_every=args.eval_every or (1024 if ppo else 500),
        eval_episodes=args.eval_episodes,
        llm=args.llm,
        prompt=args.prompt,
        encoder=args.encoder,
        features=args.features,
        prior_floor=args.prior_floor,
    )
    if ppo:
        for flag, value in (("--k", args.k), ("--discount", args.discount)):
            if value is not None:
                raise UsageError(f"{flag} applies to dqn-prior/dqn/llm, not --algo {args.algo}; drop it")
        if args.kl_coef is not None and args.algo != "ppo-prior":
            raise UsageError("--kl-coef is PPO-Prior's α; use --algo ppo-prior (or drop --kl-coef)")
        kl = {} if args.kl_coef is None else {"kl_coef": args.kl_coef}
        return jitted_ppo.PPOJitConfig(**common, **kl)
    if args.kl_coef is not None:
        raise UsageError(f"--kl-coef applies to --algo ppo-prior, not {args.algo}; drop it")
    return jitted.JitConfig(**common, k=args.k or 5, discount=args.discount or "macro")


def enable_compilation_cache() -> Optional[str]:
    """Turn on JAX's persistent compilation cache for this process (``$PRIOR_RL_COMPILATION_CACHE``, default
    ``~/.cache/prior_rl/jax``; ``off`` disables it), so a second run of the same configuration loads its compiled
    programs instead of compiling them again. Returns the directory, or None when off."""
    where = os.environ.get("PRIOR_RL_COMPILATION_CACHE", "~/.cache/prior_rl/jax")
    if where.lower() in ("off", "0", "none", ""):
        return None
    import jax

    path = os.path.expanduser(where)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def _start_distributed(args: argparse.Namespace) -> int:
    """``--coordinator`` / ``--num-processes`` / ``--process-id``: check them and join the other processes
    (``prior_rl.distributed``); returns this process's rank. Across processes the value-based loop (dqn-prior, dqn,
    llm) splits the environment copies and the prior's new prompts and runs one update over every process's
    devices; the PPO and offline loops do not run across processes yet, and say so before anything is loaded."""
    from prior_rl.run.config import VALUE_ALGOS

    across = (*VALUE_ALGOS, "llm")  # the value loop's algorithms: the loop that runs across processes
    if args.coordinator is not None and (args.command != "train" or args.algo not in across):
        what = f"{args.command} --algo {args.algo}"
        raise UsageError(
            f"{what} does not run across processes yet; --coordinator works with train --algo "
            f"{'/'.join(across)}, or use prior-rl sweep (seeds across processes), see docs/scaling.md"
        )
    if _join_processes(args) > 1:
        import jax

        return jax.process_index()
    return 0


def _join_processes(args: argparse.Namespace) -> int:
    """Join the runtime of ``--coordinator`` (checked first); returns the process count (1 without it)."""
    given = {"--num-processes": args.num_processes, "--process-id": args.process_id}
    if args.coordinator is None:
        if any(v is not None for v in given.values()):
            raise UsageError("--num-processes and --process-id go with --coordinator HOST:PORT")
        return 1
    from prior_rl import distributed

    if args.coordinator == "auto":
        if any(v is not None for v in given.values()):
            raise UsageError(
                "--coordinator auto reads the process count and id from SLURM/OpenMPI; drop "
                + " and ".join(k for k, v in given.items() if v is not None)
            )
        distributed.initialize()
    else:
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise UsageError(f"--coordinator {args.coordinator} needs {' and '.join(missing)}")
        distributed.check_arguments(args.coordinator, args.num_processes, args.process_id)
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    import jax

    return jax.process_count()


def _backend_line(devices: int) -> str:
    """``jax 0.10.2 on cpu: 1 device (cpu:0)``: what this run computes on. Called once the arguments are valid;
    ``--devices`` beyond what JAX sees is refused here (one error line, before anything is loaded)."""
    import jax

    found = jax.devices()
    backend = jax.default_backend()
    names = [str(d) for d in found]
    shown = ", ".join(names if len(names) <= 4 else [*names[:2], "...", names[-1]])
    kind = found[0].device_kind
    what = f"{len(found)} device{'s' if len(found) > 1 else ''} ({kind + ': ' if kind != backend else ''}{shown})"
    if devices > len(found):
        raise UsageError(
            f"--devices {devices}: jax {jax.__version__} sees only {what} on {backend}; lower --devices (on a CPU, "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} makes fake devices for a plumbing test)"
        )
    line = f"jax {jax.__version__} on {backend}: {what}"
    if jax.process_count() > 1:
        line += f", process {jax.process_index()} of {jax.process_count()}"
    return line


def _one_line(message: object) -> str:
    return " ".join(str(message).split()) or "unknown error"


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for bad input, with one line on stderr)."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return exc.code if isinstance(exc.code, int) else 0
        if args.command == "dataset":
            return _run_dataset(args)
        enable_compilation_cache()
        if args.command == "sweep":
            return _run_sweep(args)
        return _run_training(args)
    except (UsageError, ValueError, OSError) as exc:  # OSError includes FileNotFoundError / PermissionError
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
