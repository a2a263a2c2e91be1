"""Claim: offline, the LLM prior cuts the data CQL needs by > 90% (CQL-Prior vs CQL on Tomato-Lettuce Salad).

    python -m experiments.offline_cql            # full: 2 seeds; sizes 250…4000 (generated),
                                                 # 250/1000/4329 (paper's file)
    python -m experiments.offline_cql --quick    # pipeline check (seconds)

Two data sources, each sub-sampled to growing sizes (nested: a smaller set is a subset of a larger one for the
same seed):

* ``generated``: :func:`prior_rl.io.datasets.generate` (expert + ε-random episodes of at most 51 steps, 75%
  successful, like the paper's "bala75" set), one set per seed at the largest size; the data seed is the run seed.
* ``reference``: the paper's own 4,329-transition file (``$PRIOR_RL_REFERENCE_DIR``, else
  ``../shared/reference_offline/``), when present.

For every (source, size, seed) both CQL-Prior (k = 5 SmolLM2 prior candidates in the logsumexp and the backup)
and CQL (all 8 admissible actions) train for the same number of updates; the greedy policy over the method's own
candidates is evaluated every ``eval_every`` updates. The final evaluation and the best one seen (the paper keeps
its best model) are both recorded.

Writes: ``runs.csv`` (every evaluation), ``by_size.csv`` (final and best success per source/method/size, mean ±
std over seeds), ``smallest.csv`` (smallest size at which each method reaches its own best, and 0.9), and
``success_vs_size.png``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from experiments import common
from prior_rl.io import datasets

if TYPE_CHECKING:
    from prior_rl.run import ModelStore

NAME = "offline_cql"
ENV = "overcooked-tomato-lettuce-salad"
METHODS = (("CQL-Prior", "cql-prior"), ("CQL", "cql"))


def budget(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "generated": [60, 120],
            "reference": [120],
            "updates": 40,
            "eval_every": 20,
            "eval_episodes": 1,
            "max_episode_steps": 6,
        }
    return {
        "generated": [250, 500, 1000, 2000, 4000],
        "reference": [250, 1000, 4329],
        "updates": 3000,
        "eval_every": 1000,
        "eval_episodes": 5,
    }


def run(
    quick: bool = False,
    out: Optional[str] = None,
    seeds: Optional[int] = None,
    sources: Optional[list[str]] = None,
    sizes: Optional[list[int]] = None,
    updates: Optional[int] = None,
    eval_every: Optional[int] = None,
    store: Optional[ModelStore] = None,
) -> Path:
    """``sizes`` / ``updates`` / ``eval_every`` override the budget (sizes apply to every selected source).
    ``store``: the models every run shares (default: a new store for this call)."""
    from prior_rl.run import ModelStore, OfflineConfig, train_offline

    store = store if store is not None else ModelStore()

    folder = common.results_dir(NAME, out)
    b = budget(quick)
    if sizes:
        b["generated"] = b["reference"] = sorted(sizes)
    b.update({k: v for k, v in (("updates", updates), ("eval_every", eval_every)) if v})
    n_seeds = seeds or (1 if quick else 2)
    sources = sources or ["generated", "reference"]
    if "reference" in sources and not common.REFERENCE_DATASET.exists():
        common.log(f"reference dataset not found at {common.REFERENCE_DATASET}; skipping that source")
        sources = [s for s in sources if s != "reference"]
    clock = common.Stopwatch()
    # generated data: one set per seed at the largest size (51-step episodes, as the paper's), written to a temp
    # folder; every size is a nested random subset of it, as the reference subsets are of the paper's file
    tmp = tempfile.TemporaryDirectory(prefix="offline_cql_")
    files = {}
    if "generated" in sources:
        for seed in range(n_seeds):
            data = datasets.generate(ENV, max(b["generated"]), 0.75, 51, seed=seed)
            files[seed] = str(datasets.save_transitions(data, Path(tmp.name) / f"generated_s{seed}.jsonl.gz"))
    items = []
    for source in sources:
        for size in b[source]:
            for seed in range(n_seeds):
                for method, algo in METHODS:
                    path = str(common.REFERENCE_DATASET) if source == "reference" else files[seed]
                    data = {"dataset": path}
                    items.append(
                        (
                            source,
                            size,
                            seed,
                            method,
                            OfflineConfig(
                                env=ENV,
                                algo=algo,
                                dataset_size=size,
                                dataset_seed=seed,
                                seed=seed,
                                updates=b["updates"],
                                eval_every=b["eval_every"],
                                eval_episodes=b["eval_episodes"],
                                max_episode_steps=b.get("max_episode_steps"),
                                **data,
                                **common.quiet_train_kwargs(),
                            ),
                        )
                    )

    def one(item):
        source, size, seed, method, config = item
        result = train_offline(config, store=store)
        tagged = common.curve_rows(result.history, source=source, method=method, size=size, seed=seed)
        for r in tagged:
            r["wall_s"] = round(result.wall_s, 2)
        return tagged

    rows = [
        r
        for tagged in common.run_each(items, one, lambda it: f"{it[0]} n={it[1]} seed {it[2]} {it[3]}")
        for r in tagged
    ]
    tmp.cleanup()
    common.write_csv(
        folder / "runs.csv",
        rows,
        [
            "source",
            "method",
            "size",
            "seed",
            "updates",
            "eval_success",
            "eval_return",
            "best_eval_success",
            "coverage",
            "dataset_size",
            "wall_s",
        ],
    )
    by_size = summarize(rows)
    common.write_csv(folder / "by_size.csv", by_size)
    smallest = smallest_sizes(by_size)
    common.write_csv(folder / "smallest.csv", smallest)
    plot(by_size, folder, b["updates"], n_seeds)
    common.log(f"{NAME}: {clock.elapsed():.0f}s wall, results in {folder}")
    print(common.markdown_table(by_size, list(by_size[0])))
    print(common.markdown_table(smallest, list(smallest[0])))
    return folder


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Final-evaluation and best-evaluation success per (source, method, size): mean ± std over seeds."""
    out = []
    keys = sorted({(r["source"], r["method"], int(r["size"])) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
    for source, method, size in keys:
        mine = [r for r in rows if (r["source"], r["method"], int(r["size"])) == (source, method, size)]
        seeds = sorted({r["seed"] for r in mine})
        finals = [max((r for r in mine if r["seed"] == s), key=lambda r: int(r["updates"])) for s in seeds]
        f = [float(r["eval_success"]) for r in finals]
        best = [float(r["best_eval_success"]) for r in finals]
        ret = [float(r["eval_return"]) for r in finals]
        out.append(
            {
                "source": source,
                "method": method,
                "size": size,
                "seeds": len(seeds),
                "final_success_mean": float(np.mean(f)),
                "final_success_std": float(np.std(f)),
                "best_success_mean": float(np.mean(best)),
                "best_success_std": float(np.std(best)),
                "final_return_mean": float(np.mean(ret)),
                "prior_coverage": float(np.mean([float(r["coverage"]) for r in finals])),
            }
        )
    return out


def smallest_sizes(by_size: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per source and method: its best final success over sizes and the smallest size reaching it (within 0.05),
    and the smallest size reaching 0.9 — the numbers behind a "fewer samples" comparison."""
    out = []
    for source in sorted({r["source"] for r in by_size}):
        for method, _ in METHODS:
            pts = sorted(
                (r["size"], r["final_success_mean"]) for r in by_size if r["source"] == source and r["method"] == method
            )
            if not pts:
                continue
            top = max(s for _, s in pts)
            at_top = next(n for n, s in pts if s >= top - 0.05)
            at_09 = next((n for n, s in pts if s >= 0.9 - 1e-9), None)
            out.append(
                {
                    "source": source,
                    "method": method,
                    "best_final_success": top,
                    "smallest_size_at_best": at_top,
                    "smallest_size_at_0.9": at_09 if at_09 is not None else f"not reached within {pts[-1][0]}",
                }
            )
    return out


def plot(by_size: list[dict[str, Any]], folder: Path, updates: int, n_seeds: int) -> None:
    panels = []
    for source in sorted({r["source"] for r in by_size}):
        curves, styles = {}, {}
        for (method, _), color in zip(METHODS, ("C0", "C1")):
            for metric, tag, ls in (("final", "final", "-"), ("best", "best eval", "--")):
                pts = [
                    (r["size"], r[f"{metric}_success_mean"], r[f"{metric}_success_std"])
                    for r in by_size
                    if r["source"] == source and r["method"] == method
                ]
                if pts:
                    curves[f"{method} ({tag})"] = pts
                    styles[f"{method} ({tag})"] = {"color": color, "ls": ls}
        label = "generated (expert + ε-random, 75% success)" if source == "generated" else "paper's dataset (subsets)"
        panels.append(
            {
                "curves": curves,
                "styles": styles,
                "xlabel": "dataset size (transitions)",
                "ylabel": "success rate",
                "title": label,
                "logx": True,
            }
        )
    common.plot_panels(
        panels,
        folder / "success_vs_size.png",
        title=f"Offline Tomato-Lettuce Salad: CQL-Prior vs CQL ({updates} updates, {n_seeds} seed(s))",
    )


def main(argv: Optional[list[str]] = None, store: Optional[ModelStore] = None) -> Path:
    """The command line; ``store``: models to share with other callers (default: a new one for this run)."""
    from prior_rl.run import ModelStore

    p = common.parser(__doc__, NAME)
    p.add_argument("--sources", nargs="+", default=None, choices=["generated", "reference"])
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="override the dataset sizes")
    p.add_argument("--updates", type=int, default=None, help="override the number of gradient updates")
    p.add_argument("--eval-every", type=int, default=None, help="override the evaluation interval (updates)")
    args = p.parse_args(argv)
    return run(
        args.quick,
        args.out,
        args.seeds,
        args.sources,
        args.sizes,
        args.updates,
        args.eval_every,
        store if store is not None else ModelStore(),
    )


if __name__ == "__main__":
    main()
