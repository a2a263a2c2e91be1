"""ALFWorld Pick & Place: DQN-Prior vs DQN vs the pure-LLM policy on the 28 training tasks; the trained Q on the
26 unseen tasks; and a sweep of k, the number of prior candidates, at test time.

    python -m experiments.alfworld --quick          # a smoke run for the tests (about a minute)
    python -m experiments.alfworld                  # the measured run behind experiments/RESULTS.md

The paper's claims (1) and (3) on ALFWorld: DQN-Prior learns faster than DQN and beats the LLM it samples from, and
its value function generalises to unseen tasks. Every evaluation plays each task of a split once (28 training games,
26 unseen), greedily. Every LLM call is a CPU forward pass of SmolLM2 over a ~200-token prompt and 25–45 admissible
commands (about 1 s on an idle 2-core CPU), so the prior's answers are kept in a persistent cache
(``--prior-cache``): a second run, or a run interrupted and started again, pays only for states it has not seen.

Each finished (method, prior, prompt, seed) is kept in ``units/*.json``; a rerun skips those, so a long run
stopped at any point loses only the unit in flight. Outputs (written as each method finishes, atomically):
``results.csv`` (one row per method × seed × split × k), ``curves.csv`` (training-task success vs env samples)
and ``alfworld.png`` (two panels: learning on the training tasks; unseen-task success vs k).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np

from experiments import common
from prior_rl.run import ModelStore, TrainConfig, evaluate, make_policy, train
from prior_rl.run.sweep import atomic_write

RESULTS = Path(__file__).resolve().parent / "results" / "alfworld"
DEFAULT_PRIOR_CACHE = (
    Path(os.environ.get("PRIOR_RL_CACHE", Path.home() / ".cache" / "prior_rl")) / "alfworld_prior_cache.npz"
)
METHODS = ("dqn-prior", "dqn", "llm", "llm-sampled")
LABELS = {
    "dqn-prior": "DQN-Prior, SmolLM2 prior",
    "dqn": "DQN (all commands)",
    "llm": "LLM (greedy)",
    "llm-sampled": "LLM (sampled)",
}


def split_sizes() -> dict[str, int]:
    """Games per split (an evaluation plays each once)."""
    import envs

    sizes = {}
    for split in ("train", "unseen"):
        env = envs.make("alfworld-pick", split=split)
        sizes[split] = env.num_games
        env.close()
    return sizes


def run(
    seeds: list[int],
    out: Path,
    env_steps: int,
    cap: int,
    k_sweep: list[int],
    evals: int = 4,
    eval_episodes: Optional[int] = None,
    methods: tuple[str, ...] = METHODS,
    prior_cache: Optional[Path] = None,
    synthetic: tuple[float, ...] = (),
    synthetic_seeds: Optional[list[int]] = None,
    store: Optional[ModelStore] = None,
    prompt: str = "env",
    env_workers: int = 0,
) -> list[dict]:
    """Train and evaluate every method; ``eval_episodes`` None = every game of the split once. ``prompt``: the LLM
    prior's prompt family ("transcript": 3 expert demonstrations of other training tasks + the episode so far,
    summed scores; :mod:`prior_rl.prior.transcripts`). ``synthetic``: also
    DQN-Prior and the sampled prior policy with the expert-mixture prior (``prior_rl.prior.synthetic``) at each of these
    p(expert), over ``synthetic_seeds`` (default ``seeds``; these runs make no LLM calls, so they afford more).
    ``store``: the models every run shares (default: a new store for this call). ``env_workers``: step the training
    copies in that many worker processes (``envs.workers``; the same transitions as in-process, 0 = in-process)."""
    store = store if store is not None else ModelStore()
    out.mkdir(parents=True, exist_ok=True)
    sizes = split_sizes()
    episodes = {s: eval_episodes or n for s, n in sizes.items()}
    rows: list[dict] = []
    curves: list[dict] = []
    base = dict(
        env="alfworld-pick",
        num_envs=2,
        env_workers=env_workers,
        eval_episodes=episodes["train"],
        max_episode_steps=cap,
        max_candidates=64,
        prompt=prompt,
        learning_starts=20,
        train_every=10,
        updates_per_train=8,
        **common.quiet_train_kwargs(),
    )
    # the SmolLM2 prior every run gets from the store: its prompt cache is the one kept on disk
    cache = PersistentPriorCache(store.run_prior(TrainConfig(algo="llm", **base)), prior_cache)
    plan = [(algo, "smollm2", seeds) for algo in methods]
    plan += [
        (algo, f"expert-mix:{p:g}", synthetic_seeds or seeds)
        for p in synthetic
        for algo in ("dqn-prior", "llm-sampled")
    ]
    planned: set[Path] = set()  # this call's units; the outputs also keep every other finished unit in ``out``
    for method, llm, method_seeds in plan:
        algo = "llm" if method.startswith("llm") else method
        for seed in method_seeds:
            done = unit_path(out, method, llm, prompt, seed)
            planned.add(done)
            if done.exists():  # finished by an earlier call: a stopped run resumes at the unit in flight
                unit = json.loads(done.read_text())
                rows += unit["rows"]
                curves += unit["curves"]
                print(f"[alfworld] {method} {llm} {prompt} seed {seed}: done before, skipped", flush=True)
                continue
            n_rows, n_curves = len(rows), len(curves)
            config = TrainConfig(
                algo=algo, seed=seed, env_steps=env_steps, eval_every=max(env_steps // evals, 1), llm=llm, **base
            )
            prior = llm if algo != "dqn" else ""
            row = dict(
                method=method,
                prior=prior,
                seed=seed,
                env_steps=env_steps if algo != "llm" else 0,
                cap=cap,
                prompt=prompt,
            )
            t0 = time.perf_counter()
            calls0 = cache.misses()
            if algo == "llm":  # the prior as a policy does not learn: it is only evaluated
                policy = make_policy("llm", config, prior=store.run_prior(config), sample=method == "llm-sampled").bind(
                    None
                )
                final = evaluate(config, policy, episodes["train"], seed=10_000 + seed * 1000)
                rows.append(
                    {
                        **row,
                        "split": "train",
                        "k": "",
                        **_eval_cols(final),
                        "llm_calls": cache.misses() - calls0,
                        "wall_s": round(time.perf_counter() - t0, 1),
                    }
                )
            else:
                result = train(config, store=store)
                policy = result.act
                curves += common.curve_rows(result.history, method=method, prior=prior, seed=seed)
                # train_success is the success rate of the last 20 training episodes at each log row (every 100
                # samples, ~7 episodes): its maximum is 0 exactly when no training episode succeeded
                train_success = [h["train_success"] for h in result.history if "train_success" in h]
                rows.append(
                    {
                        **row,
                        "split": "train",
                        "k": _k(algo, config.k),
                        **_eval_cols(result.final_eval),
                        "train_episodes": result.history[-1].get("episodes", 0),
                        "train_success_max": max(train_success, default=0.0),
                        "llm_calls": cache.misses() - calls0,
                        "wall_s": round(time.perf_counter() - t0, 1),
                    }
                )
            cache.save()
            unseen = dataclasses.replace(config, env_options=(("split", "unseen"),), eval_episodes=episodes["unseen"])
            sweep = k_sweep if algo == "dqn-prior" else [None]
            for k in sweep:
                t0 = time.perf_counter()
                calls0 = cache.misses()
                act = policy if k is None or k == config.k else _with_k(result, k)
                ev = evaluate(
                    unseen if k is None else dataclasses.replace(unseen, k=k),
                    act,
                    episodes["unseen"],
                    seed=30_000 + seed,
                )
                rows.append(
                    {
                        **row,
                        "split": "unseen",
                        "k": _k(algo, k),
                        **_eval_cols(ev),
                        "llm_calls": cache.misses() - calls0,
                        "wall_s": round(time.perf_counter() - t0, 1),
                    }
                )
                cache.save()
            done.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(done, json.dumps({"rows": rows[n_rows:], "curves": curves[n_curves:]}) + "\n")
            planned.add(done)
            all_rows, all_curves = with_other_units(out, planned, rows, curves)
            common.write_csv(out / "results.csv", all_rows)
            common.write_csv(out / "curves.csv", all_curves)
            print(
                f"[alfworld] {method} {prior} seed {seed} done: "
                + ", ".join(
                    f"{r['split']} k={r['k'] or '-'} {r['success']:.3f}"
                    for r in rows
                    if r["method"] == method and r["prior"] == prior and r["seed"] == seed
                ),
                flush=True,
            )
    rows, curves = with_other_units(out, planned, rows, curves)
    plot(rows, curves, out / "alfworld.png", episodes)
    return rows


def with_other_units(out: Path, planned: set[Path], rows: list[dict], curves: list[dict]) -> tuple[list, list]:
    """``rows``/``curves`` followed by those of the finished units in ``out`` that this call did not plan, so that a
    call for some seeds or methods (``--seeds 1 2``) does not shrink results.csv to them."""
    rows, curves = list(rows), list(curves)
    for path in sorted((out / "units").glob("*.json")):
        if path not in planned:
            unit = json.loads(path.read_text())
            rows += unit["rows"]
            curves += unit["curves"]
    return rows, curves


def unit_path(out: Path, method: str, llm: str, prompt: str, seed: int) -> Path:
    """The file that marks one (method, prior, prompt, seed) as finished and holds its rows and curve points."""
    return out / "units" / f"{method}-{llm.replace(':', '')}-{prompt}-s{seed}.json"


def _k(algo: str, k: Optional[int]) -> Any:
    return (k or 5) if algo == "dqn-prior" else ""


def _eval_cols(ev: dict) -> dict:
    return {"success": ev["eval_success"], "return": ev["eval_return"], "length": ev["eval_length"]}


class PersistentPriorCache:
    """``prior.cache`` loaded from and saved (atomically) to ``path`` when one is given: at start, from inside the
    cache's ``put`` at most every ``every_s`` seconds, and whenever :meth:`save` is called."""

    def __init__(self, prior: Any, path: Optional[Path], every_s: float = 120.0):
        from prior_rl.llm.cache import PriorCache

        self.prior = prior
        self.path = path
        self._saved_at = time.monotonic()
        cache = prior.cache
        # an earlier instance's hook (another run in this process) is replaced, not stacked
        put = getattr(cache.put, "unhooked", cache.put)
        cache.put = put
        if path is None:
            return
        loaded = PriorCache.load(path, missing_ok=True)
        cache.update(loaded)
        print(f"[alfworld] prior cache {path}: {len(loaded)} states loaded", flush=True)

        def put_and_save(key, value):
            # runs in the main thread between LLM calls, so the saved file never sees a half-updated cache
            put(key, value)
            self.save(every_s=every_s)

        put_and_save.unhooked = put
        cache.put = put_and_save

    def misses(self) -> int:
        return self.prior.cache.misses

    def save(self, every_s: float = 0.0) -> None:
        """Save now, or (``every_s`` > 0) only if that long has passed since the last save, so a killed run loses
        at most a few minutes of LLM calls."""
        if self.path is None or time.monotonic() - self._saved_at < every_s:
            return
        self.prior.cache.save(self.path)
        self._saved_at = time.monotonic()


def _with_k(result, k: int) -> Callable:
    """The trained Q acting (greedily) over k prior candidates instead of the k it was trained with: the run's
    agent, featurizer and prior (the store's, so its cache is the persistent one) with a k-candidate source."""
    policy = result.policy
    return make_policy(
        "q",
        dataclasses.replace(result.config, k=k),
        policy.agent,
        policy.prior,
        policy.featurizer,
        prior_candidates=True,
    ).bind(result.agent_state)


def _label(method: str, prior: str) -> str:
    if prior.startswith("expert-mix:"):
        return f"DQN-Prior, synthetic p(expert)={prior.split(':')[1]}"
    return LABELS[method]


def plot(rows: list[dict], curves: list[dict], path: Path, episodes: dict[str, int]) -> Path:
    """Panel 1: training-task success vs env samples (mean ± std over seeds; the LLM as a line).
    Panel 2: unseen-task success vs k for each DQN-Prior prior, with DQN and the LLM as lines."""
    learning = common.mean_std(curves, ["method", "prior"], "env_steps", "eval_success")
    panel1 = {
        "curves": {_label(m, pr): [p[:3] for p in pts] for (m, pr), pts in learning.items()},
        "hlines": {},
        "xlabel": "environment samples",
        "ylabel": f"success, {episodes['train']} training tasks",
        "title": "learning (claim 1)",
    }
    unseen = [r for r in rows if r["split"] == "unseen"]
    by_k = common.mean_std([r for r in unseen if r["method"] == "dqn-prior"], ["method", "prior"], "k", "success")
    panel2 = {
        "curves": {_label(m, pr): [p[:3] for p in pts] for (m, pr), pts in by_k.items()},
        "hlines": {},
        "xlabel": "k (prior candidates at test time; trained with k=5)",
        "ylabel": f"success, {episodes['unseen']} unseen tasks",
        "title": "generalisation (claim 3)",
    }
    train_rows = [r for r in rows if r["split"] == "train"]
    for m in ("llm", "llm-sampled", "dqn"):
        for panel, pool in ((panel1, train_rows), (panel2, unseen)):
            vals = [float(r["success"]) for r in pool if r["method"] == m and r["prior"] in ("smollm2", "")]
            if vals and (m != "dqn" or panel is panel2):
                panel["hlines"][f"{LABELS[m]}: {np.mean(vals):.2f}"] = float(np.mean(vals))
    # one colour per method/prior in both panels
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    labels = list(dict.fromkeys([*panel1["curves"], *panel2["curves"]]))
    styles = {label: {"color": palette[i % len(palette)]} for i, label in enumerate(labels)}
    panel1["styles"] = panel2["styles"] = styles
    return common.plot_panels([panel1, panel2], path, width=4.6)


def main(argv: list[str] | None = None, store: Optional[ModelStore] = None) -> list[dict]:
    """The command line; ``store``: models to share with other callers (default: a new one for this run)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--env-steps", type=int, default=None)
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=None,
        help="episodes per evaluation (default: every game of the split once)",
    )
    parser.add_argument("--evals", type=int, default=None, help="evaluations on the training tasks during training")
    parser.add_argument("--cap", type=int, default=None, help="steps per episode (expert plans take 4–5)")
    parser.add_argument("--k-sweep", type=int, nargs="*", default=None)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--synthetic",
        type=float,
        nargs="*",
        default=None,
        metavar="P",
        help="also DQN-Prior with a synthetic prior putting P on the expert's command "
        "(prior_rl/prior/synthetic.py): what a stronger prior would change (full mode: 0.3 0.6)",
    )
    parser.add_argument(
        "--prior-cache",
        default=None,
        help=f"npz file for the prior's answers, read at start and saved as runs finish "
        f"(default {DEFAULT_PRIOR_CACHE}; 'none' disables; --quick: none)",
    )
    parser.add_argument(
        "--synthetic-seeds",
        type=int,
        nargs="*",
        default=None,
        help="seeds of the synthetic-prior runs (default: --seeds; full mode: 0 1 2)",
    )
    parser.add_argument(
        "--prompt",
        choices=("env", "paper", "transcript"),
        default="env",
        help="the LLM prior's prompt (transcript: expert demonstrations of other training tasks + the episode so far)",
    )
    parser.add_argument(
        "--env-workers",
        type=int,
        choices=(0, 1, 2),
        default=0,
        help="worker processes that step the 2 training copies' ALFWorld engines (0: in this process)",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.quick:
        seeds, steps, episodes, cap, ks, evals, cache, synth, synth_seeds = [0], 2, 1, 2, [1], 1, None, (0.5,), [0]
    else:
        seeds, steps, episodes, cap, ks, evals, cache, synth, synth_seeds = (
            [0],
            2000,
            None,
            15,
            [1, 3, 5, 10],
            4,
            DEFAULT_PRIOR_CACHE,
            (0.3, 0.6),
            [0, 1],
        )
    if args.prior_cache is not None:
        cache = None if args.prior_cache.lower() == "none" else Path(args.prior_cache)
    t0 = time.perf_counter()
    rows = run(
        args.seeds if args.seeds is not None else seeds,
        Path(args.out),
        args.env_steps or steps,
        args.cap or cap,
        args.k_sweep if args.k_sweep is not None else ks,
        args.evals or evals,
        args.eval_episodes or episodes,
        tuple(args.methods),
        cache,
        tuple(args.synthetic) if args.synthetic is not None else synth,
        args.synthetic_seeds if args.synthetic_seeds is not None else synth_seeds,
        store if store is not None else ModelStore(),
        args.prompt,
        env_workers=args.env_workers,
    )
    print(
        f"{'method':10s} {'prior':15s} {'seed':>4s} {'split':7s} {'k':>3s} {'success':>8s} {'length':>7s} "
        f"{'llm calls':>9s}"
    )
    for r in rows:
        print(
            f"{r['method']:10s} {r['prior']:15s} {r['seed']:4d} {r['split']:7s} {str(r['k']):>3s} {r['success']:8.3f} "
            f"{r['length']:7.1f} {r['llm_calls']:9d}"
        )
    print(f"wall time {time.perf_counter() - t0:.0f} s; outputs in {args.out}")
    return rows


if __name__ == "__main__":
    main()
