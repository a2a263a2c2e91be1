"""Prior quality along expert trajectories: the LLM prior's probability of the expert's action, per prompt family
and scoring choice, on ALFWorld (28 training + 26 unseen tasks), Overcooked (Tomato Salad, Tomato-Lettuce) and
Frozen Lake (gymnasium's 4x4 and 8x8 maps).

    python -m benchmarks.prior_alfworld                        # everything (~2 h on 2 CPU cores)
    python -m benchmarks.prior_alfworld --stride 4             # every fourth ALFWorld game (~40 min)
    python -m benchmarks.prior_alfworld --quick                # one game per suite, 1 demonstration (the test)

Every state along the expert's trajectory from reset is scored under each prompt family:

* ``env``: the environment's own prompt (``obs.prompt``); ``paper``: RL-LLM-Prior's query
  (:class:`prior_rl.prior.prompts.PromptBuilder`). For ALFWorld and Frozen Lake the two are the same text.
* ``transcript``: :class:`prior_rl.prior.transcripts.TranscriptPrompt` (header, ``--n-demos`` expert
  demonstrations of other training tasks, this episode's transcript, ``"> "``; ALFWorld turns 0 end with ReAct's
  opening thought unless ``--no-think``), ``fixed`` selection; ``transcript-similar``: the most similar
  demonstrations instead.

Each (prompt, admissible actions) is scored once with summed token log-probs through ``ActionPrior.score`` (the
uncached path, full prompt text); the ``mean`` scores are the sums divided by each continuation's token count,
exactly what ``ActionPrior(normalize=True)`` computes. Per suite, variant and scoring: mean and minimum
p(expert) over the states, how often the expert action ranks first (ties count as first), and
P(expert among k exact samples) = 1 − (1 − p)^k averaged over the states; uniform = 1 / #actions.
Writes ``benchmarks/results/prior_alfworld.json`` (``--quick``: ``prior_alfworld_quick.json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import envs
from benchmarks.common import machine, print_table, write_json
from envs.history import WithTranscript

SUITES = {
    # suite -> (env name, env options, number of games or None for one episode from reset)
    "alfworld-train": ("alfworld-pick", {"split": "train"}),
    "alfworld-unseen": ("alfworld-pick", {"split": "unseen"}),
    "overcooked-tomato-salad": ("overcooked-tomato-salad", {}),
    "overcooked-tomato-lettuce-salad": ("overcooked-tomato-lettuce-salad", {}),
    "frozen-lake-4x4": ("frozen-lake", {}),
    "frozen-lake-8x8": ("frozen-lake", {"map_name": "8x8", "max_steps": 40}),
}
VARIANTS = ("env", "paper", "transcript", "transcript-similar")
SCORINGS = ("mean", "sum")


def expert_episode(env: Any, seed: int) -> list[tuple[Any, int]]:
    """(observation, expert index) at every state of the expert's episode from ``reset(seed)``."""
    obs, _ = env.reset(seed=seed)
    states = []
    while True:
        expert = env.expert_action()
        states.append((obs, expert))
        obs, _, terminated, truncated, info = env.step(expert)
        if terminated or truncated:
            if not info["success"]:
                raise RuntimeError(f"{env.name}: the expert failed from seed {seed}")
            return states


def make_prompt_fns(
    variants: Sequence[str], n_demos: int, max_turns: int | None, think: bool = True
) -> dict[str, tuple[Any, str]]:
    """variant -> (obs -> prompt text, action prefix)."""
    from prior_rl.prior.prompts import PromptBuilder
    from prior_rl.prior.transcripts import TranscriptPrompt

    fns: dict[str, tuple[Any, str]] = {}
    for v in variants:
        if v == "env":
            fns[v] = (lambda obs: obs.prompt, " ")
        elif v == "paper":
            fns[v] = (PromptBuilder(), " ")
        elif v.startswith("transcript"):
            selection = "similar" if v.endswith("similar") else "fixed"
            tp = TranscriptPrompt(
                n_demos=n_demos, selection=selection, max_turns=max_turns, think=think, make_env=envs.make
            )
            fns[v] = (tp.text, tp.action_prefix)
        else:
            raise ValueError(f"unknown prompt variant {v!r}; use {', '.join(VARIANTS)}")
    return fns


class Scorer:
    """Summed log-probs of (prompt, continuations), each distinct pair scored once; token counts for the mean."""

    def __init__(self, prior: Any):
        self.prior = prior
        self.tok = prior.llm.tokenizer
        self.memo: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
        self.ntok: dict[str, int] = {}
        self.calls = 0
        self.prompt_tokens: list[int] = []

    def prepare(self, text: str, prefix: str, actions: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        # ActionPrior's rule: a prompt's trailing spaces move into the continuation
        stripped = text.rstrip(" ")
        lead = text[len(stripped) :] + prefix
        return stripped, tuple(lead + a for a in actions)

    def run(self, items: list[tuple[str, tuple[str, ...]]]) -> None:
        todo = list(dict.fromkeys(k for k in items if k not in self.memo))
        if todo:
            scores = self.prior.score([p for p, _ in todo], [list(c) for _, c in todo])
            self.calls += len(todo)
            for key, s in zip(todo, scores):
                self.memo[key] = np.asarray(s, np.float64)
                self.prompt_tokens.append(len(self.tok.encode(key[0])))

    def logprobs(self, key: tuple[str, tuple[str, ...]], scoring: str) -> np.ndarray:
        s = self.memo[key]
        if scoring == "mean":
            for c in key[1]:
                if c not in self.ntok:
                    self.ntok[c] = len(self.tok.encode(c, add_special_tokens=False))
            s = s / np.array([self.ntok[c] for c in key[1]], np.float64)
        return s - np.logaddexp.reduce(s)


def summarise(probs: list[float], firsts: list[bool], uniform: list[float], k: int) -> dict[str, float]:
    p = np.array(probs)
    return {
        "states": len(p),
        "mean p(expert)": float(p.mean()),
        "min p(expert)": float(p.min()),
        "expert first": float(np.mean(firsts)),
        f"P(expert in {k})": float(np.mean(1 - (1 - p) ** k)),
        "uniform p": float(np.mean(uniform)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--games", type=int, default=None, help="only the first N ALFWorld games of each split")
    parser.add_argument("--stride", type=int, default=1, help="every S-th ALFWorld game (0, S, 2S, ...)")
    parser.add_argument("--n-demos", type=int, default=3)
    parser.add_argument("--max-turns", type=int, default=None)
    parser.add_argument("--no-think", action="store_true", help="ALFWorld transcripts without the ReAct thought")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--quick", action="store_true", help="one game per ALFWorld split, 1 demonstration")
    parser.add_argument("--out", default=None, help="results name (default prior_alfworld[_quick])")
    parser.add_argument("--out-dir", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    given = list(argv) if argv is not None else sys.argv[1:]
    if args.quick:
        args.games, args.n_demos = 1, 1
        if "--suites" not in given:
            args.suites = ["alfworld-train", "overcooked-tomato-salad", "frozen-lake-4x4"]
        if "--variants" not in given:
            args.variants = ["env", "transcript"]

    from prior_rl.run import ModelStore

    t0 = time.perf_counter()
    prior = ModelStore().prior(args.llm, 1.0, "env", False)  # sums; the means are derived from them
    scorer = Scorer(prior)
    fns = make_prompt_fns(args.variants, args.n_demos, args.max_turns, not args.no_think)
    rows: list[dict[str, Any]] = []
    per_game: list[dict[str, Any]] = []
    suites_meta = {}
    for suite in args.suites:
        name, options = SUITES[suite]
        env = WithTranscript(envs.make(name, **options))
        n_games = getattr(env, "num_games", 1)
        games = list(range(0, n_games, max(args.stride, 1)))
        if args.games is not None:
            games = games[: args.games]
        suites_meta[suite] = {"env": name, "options": options, "games": games}
        collected: dict[tuple[str, str], tuple[list[float], list[bool], list[float]]] = {
            (v, s): ([], [], []) for v in args.variants for s in SCORINGS
        }
        ts = time.perf_counter()
        for game in games:
            states = expert_episode(env, game)
            keys = {
                v: [scorer.prepare(fn(obs), prefix, obs.actions) for obs, _ in states]
                for v, (fn, prefix) in fns.items()
            }
            scorer.run([k for v in keys for k in keys[v]])
            task = states[0][0].task
            for v in args.variants:
                for scoring in SCORINGS:
                    game_p = []
                    for key, (obs, expert) in zip(keys[v], states):
                        lp = scorer.logprobs(key, scoring)
                        p = float(np.exp(lp[expert]))
                        game_p.append(p)
                        probs, firsts, uniform = collected[(v, scoring)]
                        probs.append(p)
                        firsts.append(bool(lp[expert] >= lp.max()))
                        uniform.append(1.0 / len(obs.actions))
                    per_game.append(
                        {
                            "suite": suite,
                            "game": game,
                            "task": task,
                            "variant": v,
                            "scoring": scoring,
                            "p(expert)": game_p,
                        }
                    )
            print(f"  {suite} game {game} ({task}): {len(states)} states, {time.perf_counter() - ts:.0f} s", flush=True)
        for v in args.variants:
            for scoring in SCORINGS:
                rows.append(
                    {"suite": suite, "prompt": v, "scoring": scoring, **summarise(*collected[(v, scoring)], args.k)}
                )
        suites_meta[suite]["wall_s"] = time.perf_counter() - ts
        env.close()
    columns = [
        "suite",
        "prompt",
        "scoring",
        "states",
        "mean p(expert)",
        "min p(expert)",
        "expert first",
        f"P(expert in {args.k})",
        "uniform p",
    ]
    print_table(rows, columns)
    wall = time.perf_counter() - t0
    tokens = np.array(scorer.prompt_tokens or [0])
    print(
        f"{scorer.calls} distinct prompts scored in {wall:.0f} s (prompt tokens: median {np.median(tokens):.0f}, "
        f"max {tokens.max()})"
    )
    payload = {
        "benchmark": "prior_alfworld",
        "argv": list(argv) if argv is not None else None,
        "llm": args.llm,
        "n_demos": args.n_demos,
        "max_turns": args.max_turns,
        "think": not args.no_think,
        "stride": args.stride,
        "games": args.games,
        "k": args.k,
        "suites": suites_meta,
        "rows": rows,
        "per_game": per_game,
        "llm_calls": scorer.calls,
        "prompt_tokens": {"median": float(np.median(tokens)), "max": int(tokens.max())},
        "wall_s": wall,
        "machine": machine(),
    }
    name = args.out or ("prior_alfworld_quick" if args.quick else "prior_alfworld")
    write_json(name, payload, Path(args.out_dir) if args.out_dir else None)
    return payload


if __name__ == "__main__":
    main()
