"""LLM-prior throughput: our JAX scoring (one prefill per prompt, candidates on its KV cache) vs transformers + torch
scoring each prompt+action string as its own sequence (the usual way) and, in a second row per set, torch's
strongest usual way (the prompt encoded once, its ``past_key_values`` repeated over the candidates, as lamorel's
``pre_encode_inputs``), same SmolLM2 weights, same machine, same run; plus generated tokens per second. With
``--expert-table``: the prior's probability of the expert action in every reachable Overcooked Tomato Salad state,
for each prompt variant.

    python -m benchmarks.prior --quick          # a few repetitions (about 2–3 min on 2 cores)
    python -m benchmarks.prior                  # more repetitions, batch of 8 envs, no-cache JAX path too
    python -m benchmarks.prior --expert-table   # Overcooked Tomato Salad: p(expert action) per state

Writes ``benchmarks/results/prior.json`` (or ``prior_expert_table.json``) atomically.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import machine, print_table, write_json
from envs.base import TextObservation

ALF_OBJECTS = [
    "armchair 1",
    "bed 1",
    "desk 1",
    "desk 2",
    "drawer 1",
    "drawer 2",
    "drawer 3",
    "dresser 1",
    "garbagecan 1",
    "laundryhamper 1",
    "shelf 1",
    "shelf 2",
    "sidetable 1",
    "sidetable 2",
    "safe 1",
]


def overcooked_set() -> tuple[str, list[str]]:
    """Overcooked-size: the Tomato-Lettuce Salad reset prompt (~60 tokens) and its 8 actions."""
    import envs

    env = envs.make("overcooked-tomato-lettuce-salad")
    obs, _ = env.reset()
    return obs.prompt, list(obs.actions)


def alfworld_set() -> tuple[str, list[str]]:
    """ALFWorld-size: a Pick & Place-style observation (~150 tokens) with 25 admissible actions."""
    actions = (
        [f"go to {o}" for o in ALF_OBJECTS]
        + [f"open drawer {i}" for i in (1, 2, 3)]
        + [
            "examine desk 1",
            "inventory",
            "look",
            "take cellphone 1 from desk 1",
            "take pen 2 from desk 1",
            "take book 1 from desk 1",
            "take keychain 3 from desk 1",
        ]
    )
    state = (
        "You arrive at desk 1. On the desk 1, you see a book 1, a cellphone 1, a keychain 3, a pen 2, and a "
        "pencil 1. Looking quickly around you, you also see " + ", ".join(f"a {o}" for o in ALF_OBJECTS[:12])
    )
    prompt = (
        f"Task: Your task is to: put some cellphone on armchair.\nCurrent observation:{state}\n"
        "Please select an action from the admissible actions. \n Action:"
    )
    return prompt, actions[:25]


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    """(first call seconds incl. compilation, median seconds of ``reps`` further calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def timed_torch(fn: Callable[[], Any], reps: int) -> tuple[float, int]:
    """(median seconds, threads) for the faster of 1 thread and all cores: on a CPU shared with other jobs, torch's
    spinning intra-op threads can make 2 threads several times slower than 1, so torch gets its best setting."""
    import torch

    best = (float("inf"), 0)
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        _, t = timed(fn, reps)
        best = min(best, (t, threads))
    torch.set_num_threads(os.cpu_count() or 1)
    return best


def load_reference(path: str):
    """transformers + torch on the same GGUF (transformers' own dequantiser; no accelerate needed)."""
    import torch
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = load_gguf_checkpoint(path, return_tensors=False)["config"]
    config = transformers.LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")})
    model = transformers.LlamaForCausalLM(config)
    state = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model, torch_dtype=torch.float32)
    model.load_state_dict(state["tensors"], strict=False)
    model.tie_weights()
    return model.eval()


def torch_scores(model, tok, prompt: str, actions: Sequence[str]) -> np.ndarray:
    """Σ log p(action | prompt), one padded sequence per candidate, one batched forward."""
    import torch

    p_len = len(tok.encode(prompt))
    seqs = [tok.encode(prompt + " " + a) for a in actions]
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), tok.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    out = np.zeros(len(seqs), np.float32)
    for i, s in enumerate(seqs):
        targets = torch.tensor(s[p_len:])
        out[i] = logp[i, torch.arange(p_len - 1, len(s) - 1), targets].sum().item()
    return out


def torch_prefix_scores(model, prompt_ids: Sequence[int], cont_ids: Sequence[Sequence[int]], pad_id: int) -> np.ndarray:
    """Σ log p(continuation | prompt) the strongest usual torch way (lamorel's ``pre_encode_inputs``): the prompt is
    encoded once, its ``past_key_values`` repeated over the candidates, and the candidates run as one padded batch
    on that cache (only the last prompt position's logits are computed in the prefill)."""
    import torch

    with torch.inference_mode():
        Tp = len(prompt_ids)
        out = model(input_ids=torch.tensor([list(prompt_ids)]), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[0, -1].float(), -1)
        past = out.past_key_values
        A, Ta = len(cont_ids), max(map(len, cont_ids))
        past.batch_repeat_interleave(A)
        ids = torch.full((A, Ta), pad_id, dtype=torch.long)
        mask = torch.zeros((A, Ta), dtype=torch.long)
        for i, c in enumerate(cont_ids):
            ids[i, : len(c)] = torch.tensor(list(c))
            mask[i, : len(c)] = 1
        attn = torch.cat([torch.ones((A, Tp), dtype=torch.long), mask], 1)
        pos = (Tp + torch.arange(Ta)).expand(A, Ta)
        # transformers >= 5.x names the cache argument `cache` (`past_key_values` is deprecated there)
        cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        logp = torch.log_softmax(
            model(input_ids=ids, attention_mask=attn, position_ids=pos, **{cache_kw: past}).logits.float(), -1
        )
    out_scores = np.zeros(A, np.float32)
    for i, c in enumerate(cont_ids):
        rest = logp[i, torch.arange(len(c) - 1), torch.tensor(list(c[1:]), dtype=torch.long)].sum().item()
        out_scores[i] = first[c[0]].item() + rest
    return out_scores


def torch_naive_scores(model, prompt_ids: Sequence[int], cont_ids: Sequence[Sequence[int]], pad_id: int) -> np.ndarray:
    """:func:`torch_scores` on given token ids: one padded sequence per candidate, one batched forward."""
    import torch

    p_len = len(prompt_ids)
    seqs = [list(prompt_ids) + list(c) for c in cont_ids]
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    out = np.zeros(len(seqs), np.float32)
    for i, s in enumerate(seqs):
        out[i] = logp[i, torch.arange(p_len - 1, len(s) - 1), torch.tensor(s[p_len:])].sum().item()
    return out


# ---------------------------------------------------------------------------------------------------------------
def throughput(quick: bool, with_torch: bool) -> dict[str, Any]:
    from prior_rl.llm.padding import bucket_length, pad_sequences
    from prior_rl.llm.weights import MODELS, load_llm
    from prior_rl.prior import ActionPrior, sample_actions, sequence_logprobs

    reps = 3 if quick else 5
    t0 = time.perf_counter()
    llm = load_llm("smollm2")
    load_ours = time.perf_counter() - t0
    tok = llm.tokenizer
    prior = ActionPrior(llm, normalize=False)
    model = None
    load_torch = None
    if with_torch:
        t0 = time.perf_counter()
        model = load_reference(str(MODELS["smollm2"].path()))
        load_torch = time.perf_counter() - t0
    rows, gen_rows = [], []
    batches = (1,) if quick else (1, 8)
    for set_name, (prompt, actions) in (("overcooked", overcooked_set()), ("alfworld", alfworld_set())):
        n_prompt = len(tok.encode(prompt))
        n_act = float(np.mean([len(tok.encode(" " + a, add_special_tokens=False)) for a in actions]))
        ref_scores = None
        if model is not None:
            t_torch, torch_threads = timed_torch(lambda: torch_scores(model, tok, prompt, actions), reps)
            ref_scores = torch_scores(model, tok, prompt, actions)
            p_ids = tok.encode(prompt)
            c_ids = [tok.encode(" " + a, add_special_tokens=False) for a in actions]
            t_pc, pc_threads = timed_torch(lambda: torch_prefix_scores(model, p_ids, c_ids, tok.pad_id), reps)
            pc_scores = torch_prefix_scores(model, p_ids, c_ids, tok.pad_id)
        for B in batches:
            fn = lambda: prior.score([prompt] * B, [[" " + a for a in actions]] * B)
            first, t_ours = timed(fn, reps)
            ours = fn()[0]
            row = {
                "set": set_name,
                "envs": B,
                "actions": len(actions),
                "prompt tokens": n_prompt,
                "action tokens (mean)": round(n_act, 1),
                "ours compile+first s": round(first, 2),
                "ours s/call": t_ours,
                "ours cand/s": B * len(actions) / t_ours,
            }
            if model is not None:
                # torch scores env by env: B separate batched forwards of len(actions) sequences
                row.update(
                    {
                        "torch s/call": t_torch * B,
                        "torch cand/s": len(actions) / t_torch,
                        "torch threads": torch_threads,
                        "speedup": (B * len(actions) / t_ours) / (len(actions) / t_torch),
                        "max |Δ score|": float(np.abs(ours - ref_scores).max()),
                    }
                )
            rows.append(row)
        if model is not None:
            t_ours1 = next(r["ours s/call"] for r in rows if r["set"] == set_name and r["envs"] == 1)
            rows.append(
                {
                    "set": set_name,
                    "envs": 1,
                    "actions": len(actions),
                    "prompt tokens": n_prompt,
                    "action tokens (mean)": round(n_act, 1),
                    "ours s/call": t_ours1,
                    "ours cand/s": len(actions) / t_ours1,
                    "torch s/call": t_pc,
                    "torch cand/s": len(actions) / t_pc,
                    "torch threads": pc_threads,
                    "speedup": t_pc / t_ours1,
                    "max |Δ score|": float(
                        np.abs(np.asarray(prior.score([prompt], [[" " + a for a in actions]])[0]) - pc_scores).max()
                    ),
                    "note": "torch prefix-cached (prompt encoded once, past_key_values repeated over the candidates)",
                }
            )
        if not quick:  # our no-cache path: every candidate re-encodes the prompt (isolates the prefix cache)
            seqs = [tok.encode(prompt + " " + a) for a in actions]
            T = bucket_length(max(map(len, seqs)))
            st, sm = pad_sequences(seqs, T, tok.pad_id)
            tm = sm.copy()
            tm[:, :n_prompt] = False
            fn = lambda: sequence_logprobs(llm.params, st, sm, tm, config=llm.config)
            first, t_nc = timed(fn, reps)
            rows.append(
                {
                    "set": set_name,
                    "envs": 1,
                    "actions": len(actions),
                    "prompt tokens": n_prompt,
                    "action tokens (mean)": round(n_act, 1),
                    "ours compile+first s": round(first, 2),
                    "ours s/call": t_nc,
                    "ours cand/s": len(actions) / t_nc,
                    "note": "ours, no KV cache",
                }
            )

    # Generation: k samples of G tokens per prompt, no stop tokens so every branch makes exactly G tokens.
    prompt, _ = overcooked_set()
    ids = tok.encode(prompt)
    pt, pm = pad_sequences([ids], bucket_length(len(ids)), tok.pad_id)
    no_stop = jnp.zeros(llm.config.vocab_size, bool)
    for k, G in ((5, 10),) if quick else ((5, 10), (15, 20)):
        fn = lambda: sample_actions(
            llm.params, jax.random.key(0), pt, pm, no_stop, config=llm.config, k=k, max_new_tokens=G, temperature=1.0
        )
        first, t = timed(fn, reps)
        row = {
            "k": k,
            "new tokens": G,
            "prompt tokens": len(ids),
            "ours compile+first s": round(first, 2),
            "ours s/call": t,
            "ours tokens/s": k * G / t,
        }
        if model is not None:
            import torch

            x = torch.tensor([ids])

            def gen():
                with torch.inference_mode():
                    return model.generate(
                        x,
                        attention_mask=torch.ones_like(x),
                        do_sample=True,
                        top_p=1.0,
                        top_k=0,
                        num_return_sequences=k,
                        max_new_tokens=G,
                        min_new_tokens=G,
                        pad_token_id=tok.pad_id,
                    )

            t_t, threads = timed_torch(gen, reps)
            row.update(
                {"torch s/call": t_t, "torch tokens/s": k * G / t_t, "speedup": t_t / t, "torch threads": threads}
            )
        gen_rows.append(row)
    return {"scoring": rows, "generation": gen_rows, "load_s": {"ours": load_ours, "torch": load_torch}, "reps": reps}


# ---------------------------------------------------------------------------------------------------------------
def tomato_salad_states() -> list[tuple[TextObservation, int]]:
    """Every non-terminal true state reachable in Tomato Salad, with its observation and expert action."""
    from envs.overcooked.core import initial_state, macro_transition, observation_vector, task_spec
    from envs.overcooked.env import text_observation
    from envs.overcooked.expert import plan

    task = 0
    start = initial_state(task).world
    seen, queue = {start}, deque([start])
    while queue:
        world = queue.popleft()
        for a in range(task_spec(task).num_actions):
            result = macro_transition(task, world, a)
            if not result.success and result.next_world not in seen:
                seen.add(result.next_world)
                queue.append(result.next_world)
    worlds = sorted(seen)
    return [(text_observation(task, observation_vector(task, w)), plan(task, w).actions[0]) for w in worlds]


def expert_table() -> dict[str, Any]:
    from prior_rl.llm.weights import load_llm
    from prior_rl.prior import ActionPrior
    from prior_rl.prior.prompts import PromptBuilder

    llm = load_llm("smollm2")
    states = tomato_salad_states()
    observations = [o for o, _ in states]
    variants = {
        "env/mean": ActionPrior(llm, lambda o: o.prompt, normalize=True),
        "env/sum": ActionPrior(llm, lambda o: o.prompt, normalize=False),
        "paper/mean": ActionPrior(llm, PromptBuilder(), normalize=True),
        "paper/sum": ActionPrior(llm, PromptBuilder(), normalize=False),
        "chat/mean": ActionPrior(llm, PromptBuilder(chat=True), normalize=True),
        "chat/sum": ActionPrior(llm, PromptBuilder(chat=True), normalize=False),
    }
    probs = {name: [np.exp(lp) for lp in prior.logprobs(observations)] for name, prior in variants.items()}
    rows = []
    for i, (o, e) in enumerate(states):
        row = {
            "#": i,
            "state": o.state.replace("There is a fixed cutting board in the room. ", "")[:90],
            "expert": o.actions[e],
        }
        for name in variants:
            p = probs[name][i]
            row[name] = float(p[e])
            row[name + " rank"] = int((p > p[e]).sum()) + 1
        rows.append(row)
    summary = []
    for name in variants:
        pe = np.array([r[name] for r in rows])
        ranks = np.array([r[name + " rank"] for r in rows])
        summary.append(
            {
                "variant": name,
                "mean p(expert)": float(pe.mean()),
                "top-1": float((ranks == 1).mean()),
                "p(expert in 5 samples)": float(np.mean(1 - (1 - pe) ** 5)),
                "uniform p": float(np.mean([1 / len(o.actions) for o, _ in states])),
            }
        )
    return {"states": rows, "summary": summary, "n_states": len(rows)}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, one env per call")
    ap.add_argument("--no-torch", action="store_true", help="skip the transformers + torch reference")
    ap.add_argument(
        "--expert-table",
        action="store_true",
        help="only the Overcooked Tomato Salad table of p(expert action) per state",
    )
    args = ap.parse_args(argv)
    info = {"machine": machine(), "load_avg_start": os.getloadavg()}
    if args.expert_table:
        result = expert_table()
        cols = [
            "#",
            "state",
            "expert",
            "env/mean",
            "env/mean rank",
            "paper/mean",
            "paper/mean rank",
            "chat/mean",
            "chat/mean rank",
            "env/sum",
            "paper/sum",
            "chat/sum",
        ]
        print_table(result["states"], cols)
        print()
        print_table(result["summary"], ["variant", "mean p(expert)", "top-1", "p(expert in 5 samples)", "uniform p"])
        path = write_json(
            "prior_expert_table", {**info, **result, "command": "python -m benchmarks.prior --expert-table"}
        )
    else:
        result = throughput(args.quick, not args.no_torch)
        print_table(
            result["scoring"],
            [
                "set",
                "envs",
                "actions",
                "prompt tokens",
                "action tokens (mean)",
                "ours cand/s",
                "torch cand/s",
                "speedup",
                "ours s/call",
                "torch s/call",
                "torch threads",
                "ours compile+first s",
                "max |Δ score|",
                "note",
            ],
        )
        print()
        print_table(
            result["generation"],
            [
                "k",
                "new tokens",
                "prompt tokens",
                "ours tokens/s",
                "torch tokens/s",
                "speedup",
                "ours s/call",
                "torch s/call",
                "torch threads",
                "ours compile+first s",
            ],
        )
        cmd = (
            "python -m benchmarks.prior" + (" --quick" if args.quick else "") + (" --no-torch" if args.no_torch else "")
        )
        path = write_json("prior", {**info, **result, "command": cmd, "load_avg_end": os.getloadavg()})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
