"""Per-step cost of the LLM prior on ALFWorld-size states, zero-shot vs transcript prompts, with and without the
preamble / episode KV caches, against transformers + torch scoring the same token ids (same SmolLM2 weights).

    python -m benchmarks.prior_context --quick   # 6-step episodes, 2 timed rounds (~15 min on 2 shared cores)
    python -m benchmarks.prior_context           # 8 steps, 3 rounds, + 8 env copies per call, torch naive transcript

Rows (Σ log p(" " + action | prompt) for 25 admissible actions; per-step wall time, tokenisation included):

* zero-shot: the reference's ALFWorld prompt (~147 tokens), ``ActionPrior.score`` (one prefill, candidates as a
  prefix trie);
* transcript: a synthesised ALFWorld transcript prompt, a ~1.15k-token preamble (header + 3 expert
  demonstrations, the format of ``prior_rl/prior/transcripts.py``) + this episode's turns + ``"> "``, about 1.3k to
  1.55k tokens over the episode's steps, scored with ``context_cache="off"`` (full prefill every step),
  ``"preamble"`` (preamble KV cached) and ``"episode"`` (preamble + per-episode incremental KV);
* torch naive: one padded sequence per candidate (prompt + action), one batched forward;
* torch prefix-cached: the prompt encoded once, its ``past_key_values`` repeated over the candidates (lamorel's
  ``pre_encode_inputs``), every step from scratch.

Every method runs once per timed round (interleaved, so a drifting machine load hits them alike): the zero-shot
rows, then one episode per transcript method, each episode a fresh env copy (its episode cache starts cold at turn
0) with the token lengths of a warm-up episode that compiled every shape. A transcript row's s/step is the mean over
the episode's steps of each step's median over rounds; a zero-shot row's is the median over rounds. "GFLOP/s"
counts the arithmetic each of our rows must do (real tokens and keys, no padding), against a 2048³ float32 matmul
under XLA measured in every round (median). Writes ``benchmarks/results/prior_context.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import machine, print_table, write_json
from benchmarks.prior import (
    ALF_OBJECTS,
    alfworld_set,
    load_reference,
    timed,
    torch_naive_scores,
    torch_prefix_scores,
)
from envs.base import TextObservation

ROOM = (
    "You are in the middle of a room. Looking quickly around you, you see "
    + ", ".join(f"a {o}" for o in ALF_OBJECTS[:-1])
    + f", and a {ALF_OBJECTS[-1]}."
)
DEMOS = [
    ("put some pen on armchair.", "pen", "desk 2", "armchair 1", ["drawer 1", "shelf 2", "desk 1", "desk 2"]),
    ("put a book in shelf.", "book", "bed 1", "shelf 1", ["sidetable 1", "dresser 1", "drawer 2", "bed 1"]),
    ("put some keychain on safe.", "keychain", "drawer 3", "safe 1", ["drawer 2", "sidetable 2", "bed 1", "drawer 3"]),
]


def _seen(place: str, k: int) -> str:
    items = [f"a {x} {(k + i) % 10}" for i, x in enumerate(("book", "cd", "pencil", "alarmclock"))]
    return f"On the {place}, you see " + ", ".join(items[:-1]) + f", and {items[-1]}."


def demonstration(task: str, obj: str, where: str, target: str, route: list[str]) -> str:
    lines = [f"Your task is to: {task}\n{ROOM}\n"]
    for i, place in enumerate(route):
        seen = _seen(place, i + 1) if place != where else f"On the {place}, you see a {obj} 1, and a pen 3."
        lines.append(f"> go to {place}\nYou arrive at {place}. {seen}\n")
    lines.append(f"> take {obj} 1 from {where}\nYou pick up the {obj} 1 from the {where}.\n")
    lines.append(f"> go to {target}\nYou arrive at {target}. On the {target}, you see a pillow 1.\n")
    lines.append(f"> put {obj} 1 in/on {target}\nYou put the {obj} 1 in/on the {target}.\n")
    return "".join(lines)


PREAMBLE = (
    f"Interact with a household to solve a task. Here are {len(DEMOS)} examples.\n\n"
    + "\n".join(demonstration(*d) for d in DEMOS)
    + "\nHere is the task.\n"
)
ROUTE = ["desk 1", "drawer 1", "drawer 2", "sidetable 1", "shelf 1", "dresser 1", "bed 1", "shelf 2", "drawer 3"]


def episode(copy: int, steps: int) -> list[str]:
    """Turns of env copy ``copy`` (a digit in turn 0 and in every observation, so copies differ from turn 0 on but
    tokenise to the same lengths)."""
    turns = [f"Your task is to: put some cellphone on armchair.\n{ROOM} (copy {copy})\n"]
    for t in range(1, steps):
        place = ROUTE[(t - 1) % len(ROUTE)]
        turns.append(f"> go to {place}\nYou arrive at {place}. {_seen(place, copy)}\n")
    return turns


def transcript(copy: int, t: int, steps: int):
    from prior_rl.prior.segments import SegmentedPrompt

    # the cue "> " with its trailing space moved into the continuation, as ActionPrior.logprobs does
    return SegmentedPrompt(PREAMBLE, tuple(episode(copy, steps)[: t + 1]), ">")


# ---------------------------------------------------------------------------------------------------------------
def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
    f = jax.jit(lambda x, y: x @ y)
    _, t = timed(lambda: f(a, a), reps)
    return 2 * n**3 / t / 1e9


def step_flops(cfg, blocks: Sequence[tuple[int, int]], node_depths: Sequence[int], context: int) -> float:
    """Arithmetic of one scoring step: ``blocks`` = (tokens encoded, keys before them) (causal within), then the
    candidates' prefix-trie nodes (``node_depths``: each node's depth; a node attends to ``context`` keys and its
    ancestors), with the head's logsumexp on every node."""
    D, H, KV, Dh, inter, L, V = (
        cfg.hidden_size,
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.head_dim,
        cfg.intermediate_size,
        cfg.num_layers,
        cfg.vocab_size,
    )
    per_token = 2 * L * (D * (H + 2 * KV) * Dh + H * Dh * D + 3 * D * inter)
    per_pair = 4 * L * H * Dh
    head = 2 * D * V
    flops = 0.0
    for n, before in blocks:
        flops += per_token * n + per_pair * (n * before + n * (n + 1) / 2)
    for d in node_depths:
        flops += per_token + per_pair * (context + d + 1) + head
    return flops + head  # the logits after the prompt


def run(quick: bool, with_torch: bool, steps: int | None = None) -> dict[str, Any]:
    from prior_rl.llm.weights import MODELS, load_llm
    from prior_rl.prior import ActionPrior
    from prior_rl.prior.scoring import context_action_logprobs, trie_action_logprobs
    from prior_rl.prior.segments import token_ids

    steps = steps or (6 if quick else 8)
    rounds = 2 if quick else 3
    reps = 3
    llm = load_llm("smollm2")
    tok, cfg = llm.tokenizer, llm.config
    zs_prompt, actions = alfworld_set()
    conts = [" " + a for a in actions]
    c_ids = [tok.encode(c, add_special_tokens=False) for c in conts]
    # the candidates as ActionPrior scores them: a prefix trie, one node per distinct token prefix
    node_depths = [len(p) - 1 for p in {tuple(c[: i + 1]) for c in c_ids for i in range(len(c))}]
    n_pre = len(tok.encode(PREAMBLE))
    lens = [len(token_ids(transcript(0, t, steps), tok)) for t in range(steps)]
    for c in range(1, 10):  # every copy must tokenise to the same lengths (no compilation inside timed episodes)
        assert [len(token_ids(transcript(c, t, steps), tok)) for t in range(steps)] == lens, c
    turn_lens = [lens[0] - n_pre] + [b - a for a, b in zip(lens, lens[1:])]
    print(f"preamble {n_pre} tokens; transcript prompts {lens[0]}..{lens[-1]} tokens over {steps} steps", flush=True)

    modes = ("off", "preamble", "episode")
    priors = {mode: ActionPrior(llm, normalize=False, context_cache=mode) for mode in modes}
    zs = priors["off"]
    n_zs = len(tok.encode(zs_prompt))
    model = load_reference(str(MODELS["smollm2"].path())) if with_torch else None
    pad = tok.pad_id
    zs_ids = tok.encode(zs_prompt)

    methods: dict[str, Any] = {m: (lambda seg, m=m: priors[m].score([seg], [conts])[0]) for m in modes}
    if with_torch:
        import torch

        best = (float("inf"), 1)
        for threads in sorted({1, os.cpu_count() or 1}):  # torch gets its faster thread setting
            torch.set_num_threads(threads)
            _, t = timed(lambda: torch_prefix_scores(model, zs_ids, c_ids, pad), reps)
            best = min(best, (t, threads))
        torch.set_num_threads(best[1])
        print(f"torch threads: {best[1]}", flush=True)
        methods["torch-prefix"] = lambda seg: torch_prefix_scores(model, token_ids(seg, tok), c_ids, pad)

    def play(name: str, copy: int) -> tuple[list[float], list[np.ndarray]]:
        times, out = [], []
        for t in range(steps):
            seg = transcript(copy, t, steps)
            t0 = time.perf_counter()
            out.append(np.asarray(methods[name](seg)))
            times.append(time.perf_counter() - t0)
        return times, out

    # warm-up: compile every shape (zero-shot, and a transcript episode of copy 9 per method)
    t0 = time.perf_counter()
    zs_scores = zs.score([zs_prompt], [conts])[0]
    compile_s = {"zero-shot": time.perf_counter() - t0}
    for name in modes:
        t0 = time.perf_counter()
        play(name, 9)
        compile_s[name] = time.perf_counter() - t0
    n_compiled = (context_action_logprobs._cache_size(), trie_action_logprobs._cache_size())

    # timed rounds, every method interleaved in each (the shared machine's load drifts)
    gflops: list[float] = []
    zero: dict[str, list[float]] = {"ours": [], "torch-prefix": [], "torch-naive": []}
    runs: dict[str, list[list[float]]] = {m: [] for m in methods}
    scores: dict[str, list[np.ndarray]] = {}
    pc_zs = naive_zs = None
    for r in range(rounds):
        gflops.append(matmul_gflops())
        zero["ours"].append(timed(lambda: zs.score([zs_prompt], [conts]), reps)[1])
        if with_torch:
            zero["torch-prefix"].append(timed(lambda: torch_prefix_scores(model, zs_ids, c_ids, pad), reps)[1])
            pc_zs = torch_prefix_scores(model, zs_ids, c_ids, pad)
            if r == 0:
                zero["torch-naive"].append(timed(lambda: torch_naive_scores(model, zs_ids, c_ids, pad), 1)[1])
                naive_zs = torch_naive_scores(model, zs_ids, c_ids, pad)
        for name in methods:
            times, out = play(name, r)
            runs[name].append(times)
            if r == 0:
                scores[name] = out
        print(f"round {r + 1}/{rounds} done", flush=True)
    recompiled = (context_action_logprobs._cache_size(), trie_action_logprobs._cache_size()) != n_compiled
    gf = statistics.median(gflops)
    print(f"XLA float32 matmul 2048^3: median {gf:.1f} GFLOP/s over rounds {[round(g) for g in gflops]}")
    per_step = {m: [statistics.median(ts) for ts in zip(*rs)] for m, rs in runs.items()}
    t_zs = statistics.median(zero["ours"])

    # arithmetic each of our methods must do per step (real tokens and keys), averaged over the steps
    flops: dict[str, list[float]] = {m: [] for m in modes}
    for t in range(steps):
        n = lens[t]
        flops["off"].append(step_flops(cfg, [(n, 0)], node_depths, n))
        flops["preamble"].append(step_flops(cfg, [(n - n_pre, n_pre)], node_depths, n))
        new = turn_lens[t] + 1  # the new turn and the cue
        flops["episode"].append(step_flops(cfg, [(new, n - new)], node_depths, n))
    f_zs = step_flops(cfg, [(n_zs, 0)], node_depths, n_zs)

    def perf(f: float, t: float) -> dict[str, float]:
        return {"GFLOP/step": f / 1e9, "GFLOP/s": f / t / 1e9, "% of matmul": 100 * f / t / 1e9 / gf}

    rows: list[dict[str, Any]] = [
        {
            "prompt": "zero-shot",
            "method": "ours (prefill once, candidates as a prefix trie)",
            "prompt tokens": n_zs,
            "s/step": t_zs,
            **perf(f_zs, t_zs),
            "compile+first s": compile_s["zero-shot"],
        }
    ]
    labels = {
        "off": "ours, uncached (full prefill every step)",
        "preamble": "ours + preamble KV cache",
        "episode": "ours + preamble + episode KV cache",
        "torch-prefix": "torch prefix-cached (past_key_values repeated), every step",
    }
    if with_torch:
        rows.append(
            {
                "prompt": "zero-shot",
                "method": "torch naive (prompt+action per row)",
                "prompt tokens": n_zs,
                "s/step": zero["torch-naive"][0],
            }
        )
        rows.append(
            {
                "prompt": "zero-shot",
                "method": "torch prefix-cached (past_key_values repeated)",
                "prompt tokens": n_zs,
                "s/step": statistics.median(zero["torch-prefix"]),
            }
        )
    for name in methods:
        t_mean = statistics.fmean(per_step[name])
        row = {
            "prompt": "transcript",
            "method": labels[name],
            "prompt tokens": f"{lens[0]}-{lens[-1]}",
            "s/step": t_mean,
            "s/step (last step)": per_step[name][-1],
        }
        if name in modes:
            row.update({**perf(statistics.fmean(flops[name]), t_mean), "compile+first s": compile_s[name]})
        rows.append(row)

    ref = scores["off"]
    exact: dict[str, float | None] = {
        f"{m} vs uncached": float(max(np.abs(a - b).max() for a, b in zip(scores[m], ref)))
        for m in ("preamble", "episode")
    }
    if with_torch:
        exact["ours zero-shot vs torch prefix-cached"] = float(np.abs(zs_scores - pc_zs).max())
        exact["torch naive vs torch prefix-cached, zero-shot"] = float(np.abs(naive_zs - pc_zs).max())
        exact["ours uncached vs torch prefix-cached, transcript"] = float(
            max(np.abs(a - b).max() for a, b in zip(ref, scores["torch-prefix"]))
        )
        exact["ours episode-cached vs torch prefix-cached, transcript"] = float(
            max(np.abs(a - b).max() for a, b in zip(scores["episode"], scores["torch-prefix"]))
        )
    ep_stats = priors["episode"].stats()

    batched = None
    if not quick:
        # 8 env copies per call with the episode cache (copy 9 in every row compiles the shapes), and zero-shot
        B = 8
        pb = ActionPrior(llm, normalize=False, context_cache="episode")
        for warm in (True, False):
            times = []
            for t in range(steps):
                segs = [transcript(9 if warm else c + 1, t, steps) for c in range(B)]
                t0 = time.perf_counter()
                pb.score(segs, [conts] * B)
                times.append(time.perf_counter() - t0)
        t_b = statistics.fmean(times)
        _, t_zs8 = timed(lambda: zs.score([zs_prompt] * B, [conts] * B), reps)
        batched = {"envs": B, "transcript episode-cached s/step": t_b, "zero-shot s/call": t_zs8}
        rows.append(
            {
                "prompt": "zero-shot",
                "method": f"ours, {B} envs per call (per env)",
                "prompt tokens": n_zs,
                "s/step": t_zs8 / B,
                **perf(f_zs * B, t_zs8),
            }
        )
        rows.append(
            {
                "prompt": "transcript",
                "method": f"ours + preamble + episode KV cache, {B} envs per call (per env)",
                "prompt tokens": f"{lens[0]}-{lens[-1]}",
                "s/step": t_b / B,
                **perf(statistics.fmean(flops["episode"]) * B, t_b),
            }
        )
        if with_torch:  # 25 sequences of ~1.5k tokens: minutes per call, so once, at the last step
            ids = token_ids(transcript(0, steps - 1, steps), tok)
            t0 = time.perf_counter()
            naive_tr = torch_naive_scores(model, ids, c_ids, pad)
            t_naive = time.perf_counter() - t0
            rows.append(
                {
                    "prompt": "transcript",
                    "method": "torch naive (prompt+action per row), last step only",
                    "prompt tokens": lens[-1],
                    "s/step": t_naive,
                    "s/step (last step)": t_naive,
                }
            )
            exact["torch naive vs torch prefix-cached, transcript last step"] = float(
                np.abs(naive_tr - scores["torch-prefix"][-1]).max()
            )

    # generate mode: k = 5 generations on a prompt's first visit, reused on revisits (the generation cache)
    gen = ActionPrior(llm, lambda o: o.prompt, normalize=False, max_new_tokens=10)
    obs = TextObservation(prompt=zs_prompt, actions=tuple(actions), task="", state="")
    gen.candidates(0, [obs], 5, mode="generate")  # compile
    gen.generation_cache.clear()
    t0 = time.perf_counter()
    gen.candidates(1, [obs], 5, mode="generate")
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(20):
        gen.candidates(2 + i, [obs], 5, mode="generate")
    generation = {
        "first visit s": t_first,
        "revisit s": (time.perf_counter() - t0) / 20,
        "hits": gen.counters["generation_hits"],
        "misses": gen.counters["generation_misses"],
    }

    by = {(r["prompt"], r["method"]): r["s/step"] for r in rows}
    t_ep, t_off = by[("transcript", labels["episode"])], by[("transcript", labels["off"])]
    targets: dict[str, Any] = {
        "transcript cached <= 2x zero-shot per step": {"ratio": t_ep / t_zs, "met": t_ep <= 2 * t_zs},
        "transcript cached >= 5x faster than uncached": {"speedup": t_off / t_ep, "met": t_off >= 5 * t_ep},
    }
    if with_torch:
        t_pc_zs = by[("zero-shot", "torch prefix-cached (past_key_values repeated)")]
        t_pc_tr = by[("transcript", labels["torch-prefix"])]
        targets[">= 3x torch prefix-cached, zero-shot"] = {"speedup": t_pc_zs / t_zs, "met": t_pc_zs >= 3 * t_zs}
        targets[">= 3x torch prefix-cached, transcript"] = {"speedup": t_pc_tr / t_ep, "met": t_pc_tr >= 3 * t_ep}
        for r in rows:
            r["vs torch prefix-cached"] = (t_pc_zs if r["prompt"] == "zero-shot" else t_pc_tr) / r["s/step"]
    return {
        "rows": rows,
        "targets": targets,
        "exactness max |Δ score|": exact,
        "episode_cache_stats": ep_stats,
        "batched": batched,
        "generation_cache": generation,
        "matmul_gflops_per_round": gflops,
        "zero_shot_s_per_round": zero,
        "per_step_s": per_step,
        "steps": steps,
        "rounds": rounds,
        "preamble_tokens": n_pre,
        "prompt_tokens_per_step": lens,
        "actions": len(actions),
        "recompiled_during_timing": recompiled,
    }


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="6-step episodes, 2 timed rounds, no 8-env rows")
    ap.add_argument("--no-torch", action="store_true", help="skip the transformers + torch rows")
    ap.add_argument("--steps", type=int, default=None, help="episode length (default 6 with --quick, else 8)")
    args = ap.parse_args(argv)
    info = {"machine": machine(), "load_avg_start": os.getloadavg()}
    result = run(args.quick, not args.no_torch, args.steps)
    print_table(
        result["rows"],
        [
            "prompt",
            "method",
            "prompt tokens",
            "s/step",
            "s/step (last step)",
            "vs torch prefix-cached",
            "GFLOP/step",
            "GFLOP/s",
            "% of matmul",
            "compile+first s",
        ],
    )
    print()
    for name, value in result["targets"].items():
        print(f"{name}: {value}")
    print("exactness (max |Δ score|):", result["exactness max |Δ score|"])
    print("generate mode:", result["generation_cache"])
    cmd = (
        "python -m benchmarks.prior_context"
        + (" --quick" if args.quick else "")
        + (" --no-torch" if args.no_torch else "")
        + (f" --steps {args.steps}" if args.steps else "")
    )
    path = write_json("prior_context", {**info, **result, "command": cmd, "load_avg_end": os.getloadavg()})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
