"""Many seeds (and priors) of the compiled loop in one program, written as per-seed curves, a summary and a plot.

    result = run_sweep(JitConfig(env="overcooked-tomato-lettuce-salad", env_steps=20_000), seeds=64)
    write_sweep(result, Path("runs/sweep"))      # curves.csv, summary.json, iqm.png
    prior-rl sweep --env overcooked-tomato-lettuce-salad --algo dqn-prior --seeds 64 --env-steps 20000

Seed ``i`` trains from ``fold_in(key(base_seed), i)``, so its curve does not depend on how many seeds run with it.
``p_experts`` adds a second vmap axis: one synthetic expert-mix prior per value (:func:`jitted.expert_mix_logp`),
all compiled once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np

from prior_rl.io.logs import save_figure
from prior_rl.run import jitted, stats

THRESHOLD = 0.9


@dataclasses.dataclass
class SweepResult:
    """curves[name]: [settings, seeds, evals] for every metric of :func:`jitted.make_train`; ``settings`` labels the
    first axis (the prior of each row: the config's own, or ``expert-mix:P``), ``p_expert`` its measured mean
    p(expert) over the prompts."""

    config: jitted.JitConfig
    seeds: list[int]
    settings: list[str]
    p_expert: list[float]
    steps: np.ndarray
    curves: dict[str, np.ndarray]
    table_s: float
    compile_s: float
    run_s: float


def seed_keys(seeds: Sequence[int], base_seed: int = 0) -> jax.Array:
    """[S] keys: ``fold_in(key(base_seed), i)`` for each seed ``i``."""
    base = jax.random.key(base_seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(np.asarray(seeds, np.uint32))


def compile_and_run(fn: Any, *args: Any) -> tuple[Any, float, float]:
    """(``fn(*args)`` ready on device, compile seconds, run seconds) of a jitted ``fn``, compiled ahead of the run
    so the two times are apart."""
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, compile_s, time.perf_counter() - t


def run_sweep(
    config: Any,
    seeds: int | Sequence[int],
    p_experts: Optional[Sequence[float]] = None,
    base_seed: int = 0,
    store: Any = None,
    mesh: Any = None,
) -> SweepResult:
    """Train ``config`` for every seed (and every synthetic prior of ``p_experts``) in one compiled call.
    ``config``: a :class:`jitted.JitConfig` (DQN-Prior, DQN, the LLM policy) or a
    :class:`prior_rl.run.jitted_ppo.PPOJitConfig` (PPO, PPO-Prior), whose ``online_view()`` names the tables.
    ``mesh``: a 1-D ``jax.sharding.Mesh`` (its devices may span processes, :mod:`prior_rl.distributed`): the seeds
    are split over its devices, each device trains its share, and every process gets all the curves back; the
    number of seeds must be a multiple of the mesh size. Each seed's curve is the one a single device gives."""
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    t = time.perf_counter()
    tables, train = _tables_and_train(config, store)
    table_s = time.perf_counter() - t
    keys = seed_keys(seeds, base_seed)
    if p_experts:
        expert, _ = jitted.experts(config.env)
        logps = np.stack([jitted.expert_mix_logp(np.asarray(tables.mask), expert, p) for p in p_experts])
        settings = [f"expert-mix:{p:g}" for p in p_experts]
    else:
        logps, settings = np.asarray(tables.logp)[None], [config.llm]
    seeded = lambda data, logp: train(jax.random.wrap_key_data(data), logp)
    per_seed = jax.vmap(seeded, (0, None))  # [S] seeds for one prior
    one = lambda data, logp: jax.tree.map(lambda x: x[None], per_seed(data, logp[0]))  # the config's own prior
    fn = jax.vmap(per_seed, (None, 0)) if p_experts else one
    args = (jax.random.key_data(keys), logps)
    if mesh is None:
        out, compile_s, run_s = compile_and_run(jax.jit(fn), *args)
    else:
        out, compile_s, run_s = _run_on_mesh(fn, args, mesh)
    curves = {k: np.asarray(v) for k, v in out.items()}
    steps = curves.pop("env_steps")[0, 0]
    p_measured = [jitted.mean_p_expert(config.env, lp) for lp in logps]
    return SweepResult(config, seeds, settings, p_measured, steps, curves, table_s, compile_s, run_s)


def _tables_and_train(config: Any, store: Any) -> tuple[jitted.Tables, Any]:
    if isinstance(config, jitted.JitConfig):
        tables = jitted.build_tables(config, store)
        return tables, jitted.make_train(config, tables)
    from prior_rl.run import jitted_ppo

    tables = jitted.build_tables(config.online_view(), store)
    return tables, jitted_ppo.make_train(config, tables)


def _run_on_mesh(fn: Any, args: tuple, mesh: Any) -> tuple[dict, float, float]:
    """``fn(key data [S, 2], logps [H, P, A])`` with the seed axis split over ``mesh``; outputs gathered to numpy
    on every process."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from prior_rl import distributed

    data, logps = args
    size = mesh.devices.size
    if data.shape[0] % size:
        raise ValueError(
            f"{data.shape[0]} seeds cannot be split evenly over {size} devices; use a multiple of {size} seeds"
        )
    placed = (distributed.put(np.asarray(data), mesh, P(mesh.axis_names[0])), distributed.put(logps, mesh))
    out_sharding = NamedSharding(mesh, P(None, mesh.axis_names[0]))  # [H, S, ...]: split on S
    out, compile_s, run_s = compile_and_run(jax.jit(fn, out_shardings=out_sharding), *placed)
    return distributed.fetch(out), compile_s, run_s


def summarize(result: SweepResult, reps: int = 2000) -> list[dict[str, Any]]:
    """One row per (setting, evaluation mode): the final success's IQM and mean, and the IQM of each seed's mean
    success over the evaluation points (``auc``: sample efficiency), with 95% stratified bootstrap intervals; the
    samples to reach :data:`THRESHOLD` success (median, interval, fraction of seeds)."""
    rows = []
    for h, setting in enumerate(result.settings):
        for mode in jitted.EVAL_MODES:
            curves = result.curves[f"eval_success_{mode}"][h]  # [S, E]
            final = curves[:, -1]
            lo, hi = stats.bootstrap_ci(final, stats.iqm, reps)
            m_lo, m_hi = stats.bootstrap_ci(final, lambda x: float(x.mean()), reps)
            auc = curves.mean(1)  # mean success over the evaluation points: sample efficiency
            a_lo, a_hi = stats.bootstrap_ci(auc, stats.iqm, reps)
            reach = stats.reach_summary(stats.samples_to_reach(curves, result.steps, THRESHOLD), result.steps[-1], reps)
            rows.append(
                {
                    "setting": setting,
                    "p_expert": round(result.p_expert[h], 4),
                    "eval": mode,
                    "seeds": len(result.seeds),
                    "final_iqm": stats.iqm(final),
                    "final_iqm_lo": lo,
                    "final_iqm_hi": hi,
                    "final_mean": float(final.mean()),
                    "final_mean_lo": m_lo,
                    "final_mean_hi": m_hi,
                    "auc_iqm": stats.iqm(auc),
                    "auc_iqm_lo": a_lo,
                    "auc_iqm_hi": a_hi,
                    **{f"to_{THRESHOLD:g}_{k}": v for k, v in reach.items()},
                    "distinct_prompts": float(result.curves["distinct_prompts"][h][:, -1].mean()),
                }
            )
    return rows


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place (readable as a normal file:
    mkstemp's 0600 is widened to 0644 minus the umask)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o644 & ~umask)
    os.replace(tmp, path)


def curve_csv(result: SweepResult) -> str:
    """CSV text: one line per (setting, seed, evaluation point) with every metric."""
    names = sorted(result.curves)
    lines = [",".join(["setting", "seed", "env_steps", *names])]
    for h, setting in enumerate(result.settings):
        for s, seed in enumerate(result.seeds):
            for e, step in enumerate(result.steps):
                values = [f"{float(result.curves[n][h, s, e]):.6g}" for n in names]
                lines.append(",".join([setting, str(seed), str(int(step)), *values]))
    return "\n".join(lines) + "\n"


def plot_iqm(result: SweepResult, path: Path, mode: str = "greedy", reps: int = 500) -> None:
    """Success vs env samples: the IQM over seeds with its 95% bootstrap band, one line per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=110)
    for h, setting in enumerate(result.settings):
        curves = result.curves[f"eval_success_{mode}"][h]
        mid = [stats.iqm(curves[:, e]) for e in range(curves.shape[1])]
        band = np.array([stats.bootstrap_ci(curves[:, e], stats.iqm, reps) for e in range(curves.shape[1])])
        ax.plot(result.steps, mid, label=setting)
        ax.fill_between(result.steps, band[:, 0], band[:, 1], alpha=0.25)
    c = result.config
    ax.set(xlabel="environment samples", ylabel=f"success ({mode}), IQM", ylim=(-0.02, 1.02))
    ax.set_title(f"{c.env} {c.algo}, {len(result.seeds)} seeds", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def write_sweep(result: SweepResult, out_dir: Path, plot: bool = True) -> dict[str, Any]:
    """``curves.csv``, ``summary.json`` (config, timings, :func:`summarize` rows) and ``iqm.png`` in ``out_dir``
    (each written to a temporary file and renamed). Returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "curves.csv", curve_csv(result))
    summary = {
        "config": dataclasses.asdict(result.config),
        "seeds": result.seeds,
        "settings": result.settings,
        "table_s": result.table_s,
        "compile_s": result.compile_s,
        "run_s": result.run_s,
        "samples_per_s": len(result.settings) * len(result.seeds) * result.config.env_steps / result.run_s,
        "rows": summarize(result),
    }
    atomic_write(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if plot:
        plot_iqm(result, out_dir / "iqm.png")
    return summary


__all__ = [
    "THRESHOLD",
    "SweepResult",
    "atomic_write",
    "curve_csv",
    "plot_iqm",
    "run_sweep",
    "seed_keys",
    "summarize",
    "write_sweep",
]
