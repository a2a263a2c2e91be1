"""Ablations of the prior: k, α, generated vs exact candidates, prompt and length normalisation, the LLM cache,
and how much probability the prior puts on the expert's action.

    python -m experiments.prior_ablations            # full
    python -m experiments.prior_ablations --quick    # pipeline check (seconds)
    python -m experiments.prior_ablations --parts pexpert cache   # a subset

Four parts, one process and one model store (SmolLM2 loads once):

* ``pexpert`` — for every prompt variant (env / paper / chat × mean / sum of token log-probs) the prior's
  p(expert action | s) over the states of expert trajectories of Tomato Salad, Tomato-Lettuce Salad and Frozen
  Lake: mean, min, how often the expert action is the prior's argmax, and the mass on the first listed action.
  Also the success of the greedy pure-LLM policy with that prompt. (``pexpert.csv``, ``pexpert.png``)
* ``genexact`` — at the same states, how often k = 5 candidates contain the expert action when drawn from the
  exact prior vs generated and mapped by the paper's rule, with the env and the paper prompt.
  (``generate_vs_exact.csv``)
* ``cache`` — the same observation stream (the expert's actions with ε = 0.3 random ones) drives the prior's
  candidate source with the per-prompt cache on and off, and in "generate" mode (k sampled generations, never
  cached): LLM dispatches and prompts scored per env step, and wall time after compilation. (``cache.csv``)
* ``train`` — DQN-Prior on Tomato Salad with one knob changed from the default (k = 5, argmax over candidates,
  exact prior, env prompt, mean log-probs): k ∈ {1, 3, 5, 10}; Boltzmann softmax(β·Q) with β ∈ {1, 10} (the
  reference's ``--alpha 10``) instead of argmax; each prompt variant. 5 seeds, 1,500 env samples each.
  (``train_curves.csv``, ``train_summary.csv``, ``train_k_alpha.png``, ``train_prior.png``)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from experiments import common

if TYPE_CHECKING:
    from prior_rl.run import ModelStore

NAME = "prior_ablations"
PEXPERT_ENVS = {
    "overcooked-tomato-salad": "Tomato Salad",
    "overcooked-tomato-lettuce-salad": "Tomato-Lettuce",
    "frozen-lake": "Frozen Lake",
}
PROMPTS = [("env", True), ("env", False), ("paper", True), ("paper", False), ("chat", True), ("chat", False)]
PARTS = ("pexpert", "genexact", "cache", "train")


def prompt_label(prompt: str, normalize: bool) -> str:
    return f"{prompt}/{'mean' if normalize else 'sum'}"


def expert_states(env_name: str, episodes: int, cap: Optional[int] = None) -> list[tuple[Any, int]]:
    """Distinct (observation, expert action) pairs along expert trajectories from reset seeds 0..episodes-1."""
    import envs
    from prior_rl.run import DEFAULT_EPISODE_STEPS

    env = envs.make(env_name, max_steps=cap or DEFAULT_EPISODE_STEPS[env_name])
    seen, out = set(), []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        while True:
            a = env.expert_action()
            key = (obs.prompt, obs.actions)
            if key not in seen:
                seen.add(key)
                out.append((obs, a))
            obs, _, term, trunc, _ = env.step(a)
            if term or trunc:
                break
    env.close()
    return out


def part_pexpert(quick: bool, folder: Path, store: ModelStore) -> list[dict[str, Any]]:
    from prior_rl.run import TrainConfig, train

    rows = []
    variants = PROMPTS[:1] if quick else PROMPTS
    for env_name, label in PEXPERT_ENVS.items():
        states = expert_states(env_name, 2 if quick else 5)
        for prompt, norm in variants:
            prior = store.prior("smollm2", 1.0, prompt, norm)
            lps = prior.logprobs([o for o, _ in states])
            p_exp = np.array([np.exp(lp[a]) for lp, (_, a) in zip(lps, states)])
            top1 = np.array([int(np.argmax(lp)) == a for lp, (_, a) in zip(lps, states)])
            first = np.array([np.exp(lp[0]) for lp in lps])
            # the greedy pure-LLM policy with this prompt: does following the prior's argmax solve the task?
            res = train(
                TrainConfig(
                    env=env_name,
                    algo="llm",
                    prompt=prompt,
                    length_normalize=norm,
                    env_steps=4,
                    eval_every=10**9,
                    eval_episodes=1 if quick else 5,
                    max_episode_steps=6 if quick else None,
                    **common.quiet_train_kwargs(),
                ),
                store=store,
            )
            rows.append(
                {
                    "env": label,
                    "prompt": prompt_label(prompt, norm),
                    "states": len(states),
                    "p_expert_mean": float(p_exp.mean()),
                    "p_expert_min": float(p_exp.min()),
                    "expert_is_argmax": float(top1.mean()),
                    "p_first_listed_mean": float(first.mean()),
                    "greedy_llm_success": float(res.final_eval["eval_success"]),
                }
            )
            common.log(f"pexpert {label} {prompt_label(prompt, norm)}: mean {p_exp.mean():.3f} min {p_exp.min():.3f}")
    common.write_csv(folder / "pexpert.csv", rows)
    groups: dict[str, dict[str, tuple[float, float]]] = {}
    for r in rows:
        groups.setdefault(r["prompt"], {})[r["env"]] = (r["p_expert_mean"], 0.0)
    common.plot_bars(
        groups,
        folder / "pexpert.png",
        ylabel="p(expert action), mean over expert states",
        title="SmolLM2-135M prior: probability of the expert action per prompt variant",
    )
    print(common.markdown_table(rows, list(rows[0])))
    return rows


def part_genexact(quick: bool, folder: Path, store: ModelStore, k: int = 5) -> list[dict[str, Any]]:
    """At the expert states: how often k = 5 candidates contain the expert action, drawn from the exact prior
    vs from k generations mapped to actions by the paper's rule (unmatched text → the last admissible action),
    and how many distinct actions they hold. Generation is tried with the env prompt (free text after "…you
    should first") and the paper's prompt (which lists the admissible actions, so the model can copy one)."""
    draws = 1 if quick else 4
    modes = [("exact", "env")] if quick else [("exact", "env"), ("exact", "paper")]
    modes += [("generate", "env")] + ([] if quick else [("generate", "paper")])
    rows = []
    for env_name, label in PEXPERT_ENVS.items():
        if quick and env_name != "overcooked-tomato-salad":
            continue
        states = expert_states(env_name, 2 if quick else 5)
        obs = [o for o, _ in states]
        expert = np.array([a for _, a in states])
        last = np.array([len(o.actions) - 1 for o in obs])
        for mode, prompt in modes:
            prior = store.prior("smollm2", 1.0, prompt, True)
            hit, frac, distinct, fallback = [], [], [], []
            t0 = time.perf_counter()
            for d in range(draws):
                cand = np.asarray(prior.candidates(1000 + d, obs, k, mode=mode))
                hit += list((cand == expert[:, None]).any(1))
                frac += list((cand == expert[:, None]).mean(1))
                distinct += [len(set(row)) for row in cand.tolist()]
                fallback += list((cand == last[:, None]).mean(1))
            rows.append(
                {
                    "env": label,
                    "mode": mode,
                    "prompt": prompt,
                    "k": k,
                    "states": len(states),
                    "draws": draws,
                    "expert_in_candidates": float(np.mean(hit)),
                    "expert_share_of_candidates": float(np.mean(frac)),
                    "distinct_actions": float(np.mean(distinct)),
                    "last_action_share": float(np.mean(fallback)),
                    "wall_s": time.perf_counter() - t0,
                }
            )
            common.log(f"generate-vs-exact {label} {mode}/{prompt}: expert in candidates {np.mean(hit):.2f}")
    common.write_csv(folder / "generate_vs_exact.csv", rows)
    print(common.markdown_table(rows, list(rows[0])))
    return rows


class _CallCounter:
    """Counts the prior's jitted LLM dispatches (scoring chunks, generation calls) and prompts scored."""

    def __init__(self, prior: Any):
        self.prior, self.dispatches, self.prompts = prior, 0, 0
        self._score_chunk, self._generate = prior._score_chunk, prior.generate

        def score_chunk(p_ids, c_ids):
            self.dispatches += 1
            self.prompts += len(p_ids)
            return self._score_chunk(p_ids, c_ids)

        def generate(rng, observations, k):
            self.dispatches += 1
            self.prompts += len(observations)
            return self._generate(rng, observations, k)

        prior._score_chunk, prior.generate = score_chunk, generate

    def restore(self) -> None:
        # drop the instance attributes so the class methods are used again
        del self.prior._score_chunk, self.prior.generate


def _stream(env_name: str, steps: int, seed: int = 0) -> list[Any]:
    """Observations along the expert's trajectory with ε = 0.3 uniform-random actions (resets included)."""
    import envs

    env = envs.make(env_name)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(steps):
        out.append(obs)
        a = int(rng.integers(len(obs.actions))) if rng.random() < 0.3 else env.expert_action()
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            obs, _ = env.reset(seed=int(rng.integers(1000)))
    env.close()
    return out


def part_cache(quick: bool, folder: Path, store: ModelStore) -> list[dict[str, Any]]:
    """LLM dispatches per env step and wall time of the candidate source, cache on vs off, exact vs generate.
    Every distinct prompt is run once before timing, so JIT compilation (one per padded shape) is not timed."""
    from prior_rl.bridge.candidates import PriorCandidates
    from prior_rl.prior import ActionPrior, PriorCache

    llm = store.llm("smollm2")  # the store's SmolLM2; these priors are built here, outside the store
    rows = []
    settings = [("exact", True), ("exact", False)] + ([] if quick else [("generate", False)])
    for env_name in ("overcooked-tomato-salad", "overcooked-tomato-lettuce-salad"):
        for mode, cached in settings:
            n = (12 if quick else 120) if mode == "exact" else 40  # generation is ~3x slower per call
            stream = _stream(env_name, n)
            warm = ActionPrior(llm, prompt_fn=lambda o: o.prompt, cache=None)
            unique = list({o.prompt: o for o in stream}.values())
            for o in unique:
                PriorCandidates(warm, 5, mode)(np.random.default_rng(0), [o])
            prior = ActionPrior(llm, prompt_fn=lambda o: o.prompt, cache=PriorCache() if cached else None)
            source = PriorCandidates(prior, 5, mode)
            counter = _CallCounter(prior)
            rng = np.random.default_rng(0)
            t0 = time.perf_counter()
            for obs in stream:
                source(rng, [obs])
            wall = time.perf_counter() - t0
            counter.restore()
            rows.append(
                {
                    "env": PEXPERT_ENVS[env_name],
                    "prior_mode": mode,
                    "cache": "on" if cached else "off",
                    "env_steps": n,
                    "distinct_prompts": len(unique),
                    "llm_dispatches": counter.dispatches,
                    "dispatches_per_step": counter.dispatches / n,
                    "prompts_scored": counter.prompts,
                    "wall_s": wall,
                    "ms_per_step": 1000 * wall / n,
                }
            )
            common.log(f"cache {env_name} {mode} cache={cached}: {counter.dispatches} dispatches, {wall:.1f}s")
    common.write_csv(folder / "cache.csv", rows)
    print(common.markdown_table(rows, list(rows[0])))
    return rows


def train_variants(quick: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(group, label, TrainConfig overrides); the default (k=5, argmax, exact, env/mean) appears once per group
    and runs once. A DQN-Prior run in "generate" mode is not trained here: at ~1.4 s per generation call on this
    CPU (cache.csv) a 1,500-sample run with its evaluations costs tens of minutes; the prior-level comparison is
    in generate_vs_exact.csv."""
    if quick:
        return [
            ("k", "k=1", {"k": 1}),
            ("alpha", "softmax β=10", {"inv_temperature": 10.0}),
            ("prior", "exact paper/mean", {"prompt": "paper"}),
        ]
    out = [("k", f"k={k}", {"k": k}) for k in (1, 3, 5, 10)]
    out += [
        ("alpha", "argmax", {}),
        ("alpha", "softmax β=1", {"inv_temperature": 1.0}),
        ("alpha", "softmax β=10", {"inv_temperature": 10.0}),
    ]
    out += [
        (
            "prior",
            f"exact {prompt_label(p, n)}",
            {"prompt": p, "length_normalize": n} if (p, n) != ("env", True) else {},
        )
        for p, n in PROMPTS
    ]
    return out


def part_train(quick: bool, folder: Path, n_seeds: int, store: ModelStore) -> list[dict[str, Any]]:
    from prior_rl.run import TrainConfig, train

    env_name = "overcooked-tomato-salad"
    b = (
        {"env_steps": 40, "eval_every": 20, "eval_episodes": 1, "max_episode_steps": 6}
        if quick
        else {"env_steps": 1500, "eval_every": 250, "eval_episodes": 10}
    )
    variants = train_variants(quick)
    results: dict[Any, list[dict[str, Any]]] = {}  # identical configs run once, shared by groups
    rows: list[dict[str, Any]] = []
    for group, label, over in variants:
        for seed in range(n_seeds):
            config = TrainConfig(env=env_name, algo="dqn-prior", seed=seed, **b, **over, **common.quiet_train_kwargs())
            key = config  # a frozen dataclass: the default variant of each group runs once
            if key not in results:
                # the prior (and its prompt cache) is shared by every run given this store: count this run's misses
                prior = store.run_prior(config)
                misses0 = prior.cache.misses
                t0 = time.perf_counter()
                res = train(config, store=store)
                tagged = common.curve_rows(res.history)
                for r in tagged:
                    r["wall_s"] = round(res.wall_s, 2)
                    r["new_llm_calls"] = prior.cache.misses - misses0
                results[key] = tagged
                common.log(
                    f"train {group} {label} seed {seed}: success {res.final_eval['eval_success']:.2f}, "
                    f"{time.perf_counter() - t0:.1f}s"
                )
            rows += [{"group": group, "variant": label, "seed": seed, **r} for r in results[key]]
    common.write_csv(
        folder / "train_curves.csv",
        rows,
        [
            "group",
            "variant",
            "seed",
            "env_steps",
            "eval_success",
            "eval_return",
            "llm_calls",
            "new_llm_calls",
            "wall_s",
        ],
    )
    summary = []
    for group, label, _ in variants:
        mine = [r for r in rows if r["group"] == group and r["variant"] == label]
        seeds = sorted({r["seed"] for r in mine})
        finals = [max((r for r in mine if r["seed"] == s), key=lambda r: r["env_steps"]) for s in seeds]
        curve = common.mean_std(mine, ["variant"], "env_steps", "eval_success")[(label,)]
        calls = [float(r.get("new_llm_calls") or 0) for r in finals]
        summary.append(
            {
                "group": group,
                "variant": label,
                "seeds": len(seeds),
                "final_success_mean": float(np.mean([float(r["eval_success"]) for r in finals])),
                "final_success_std": float(np.std([float(r["eval_success"]) for r in finals])),
                "auc_success": float(np.mean([p[1] for p in curve])),
                "samples_to_0.9": common.describe_crossing(common.first_crossing(curve, 0.9), b["env_steps"]),
                "new_llm_calls": float(np.mean(calls)),
                "distinct_prompts_seen": max(float(r.get("llm_calls") or 0) for r in finals),
                "wall_s": float(np.mean([float(r["wall_s"]) for r in finals])),
            }
        )
    common.write_csv(folder / "train_summary.csv", summary)
    for fname, groups in (("train_k_alpha.png", ("k", "alpha")), ("train_prior.png", ("prior",))):
        panels = []
        for g in groups:
            sub = [r for r in rows if r["group"] == g]
            if not sub:
                continue
            curves = {
                k[0]: [(x, m, s) for x, m, s, _ in pts]
                for k, pts in common.mean_std(sub, ["variant"], "env_steps", "eval_success").items()
            }
            panels.append(
                {
                    "curves": curves,
                    "xlabel": "environment samples",
                    "ylabel": "success rate",
                    "title": {
                        "k": "candidates k",
                        "alpha": "argmax vs Boltzmann softmax(β·Q)",
                        "prior": "candidate source / prompt",
                    }[g],
                }
            )
        if panels:
            common.plot_panels(
                panels,
                folder / fname,
                width=5.0 if len(panels) == 1 else 4.2,
                title=f"DQN-Prior on Tomato Salad, one knob changed ({n_seeds} seed(s))",
            )
    print(common.markdown_table(summary, list(summary[0])))
    return summary


def run(
    quick: bool = False,
    out: Optional[str] = None,
    seeds: Optional[int] = None,
    parts: Optional[list[str]] = None,
    store: Optional[ModelStore] = None,
) -> Path:
    """The selected parts, every one using ``store`` (a :class:`prior_rl.run.ModelStore`; default a new one)."""
    from prior_rl.run import ModelStore

    store = store if store is not None else ModelStore()
    folder = common.results_dir(NAME, out)
    clock = common.Stopwatch()
    parts = parts or list(PARTS)
    n_seeds = seeds or (1 if quick else 5)
    if "pexpert" in parts:
        part_pexpert(quick, folder, store)
    if "genexact" in parts:
        part_genexact(quick, folder, store)
    if "cache" in parts:
        part_cache(quick, folder, store)
    if "train" in parts:
        part_train(quick, folder, n_seeds, store)
    common.log(f"{NAME}: {clock.elapsed():.0f}s wall, results in {folder}")
    return folder


def main(argv: Optional[list[str]] = None, store: Optional[ModelStore] = None) -> Path:
    """The command line; ``store``: models to share with other callers (default: a new one for this run)."""
    from prior_rl.run import ModelStore

    p = common.parser(__doc__, NAME)
    p.add_argument("--parts", nargs="+", choices=PARTS, default=None)
    args = p.parse_args(argv)
    return run(args.quick, args.out, args.seeds, args.parts, store if store is not None else ModelStore())


if __name__ == "__main__":
    main()
