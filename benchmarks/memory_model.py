"""Memory and throughput model of the LLM prior per model size, checked against what this machine can measure.

    python -m benchmarks.memory_model --quick    # the model + checks on SmolLM2 (~1 minute on 2 cores)
    python -m benchmarks.memory_model            # also more timing repetitions and the ALFWorld-size check

For SmolLM2-135M, Qwen2.5-0.5B and the paper's Qwen1.5-7B / 14B / 32B (the reference scripts' defaults,
docs/method.md), from their published ``config.json`` values (constants below):

* **parameter bytes per device** for 1/2/4/8-way tensor parallelism (Megatron layout: q/k/v and gate/up split by
  output columns — whole heads —, o and down by input rows; norms replicated), float32 and bfloat16, with the
  embedding table and the untied output head either **vocab-sharded** (split over the devices; the main figure)
  or **replicated** (every device holds them). Heads that do not divide evenly are rounded up (the largest device
  is reported; ``uneven`` says so); KV heads fewer than the devices are replicated (each device holds one).
* **KV-cache bytes per scored state**: (prompt length P + A actions × action length a) tokens × per layer
  2·kv_heads·head_dim·dtype bytes (the whole cache of one state's scoring call: the prompt's prefix cache and the
  packed candidates' own keys/values).
* **FLOPs per scored state**: 2 × multiply-adds of the useful work — every layer's matmuls on the P + A·a tokens,
  causal attention (each token against its prompt and its own candidate's earlier tokens), the output head on the
  1 + Σ(a − 1) positions whose next token is scored.
* a **roofline** for an H200 (published peak: 989 TFLOP/s dense bf16, 4.8 TB/s HBM, 141 GB): states/s upper bound
  for a call scoring B states, max(compute, reading the weights + the B caches once). An upper bound, not a
  measurement: ``benchmarks/device_check.sh`` measures on a GPU.

Checks against this machine (the script fails if one does not hold):

* the formula's parameter count equals the shapes of our Flax ``LlamaLM`` for every model (``jax.eval_shape``:
  nothing is allocated), and the bytes of the actually loaded SmolLM2 (``load_llm("smollm2")``);
* the KV bytes equal the key/value arrays our scoring path allocates for a real Overcooked-size state
  (``ActionPrior``'s bucketed shapes through ``LlamaLM``, by ``eval_shape``) at its padded lengths;
* the FLOP model at the padded, dense-attention shapes our code runs is compared with XLA's cost analysis of the
  compiled ``packed_action_logprobs`` (within 5%; XLA counts the body of the ``nn.scan`` over layers once, so it
  is compared with one layer + the head), and the measured CPU time gives achieved GFLOP/s.

Writes ``benchmarks/results/memory_model.json`` (``--out DIR`` elsewhere).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import machine, print_table, write_json

GB = 1e9


@dataclasses.dataclass(frozen=True)
class Arch:
    """The published config.json values that size a Llama-family decoder."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool
    source: str


# Hugging Face config.json of each checkpoint (num_hidden_layers, hidden_size, num_attention_heads,
# num_key_value_heads, head_dim = hidden/heads, intermediate_size, vocab_size, tie_word_embeddings; Qwen2-family
# models (model_type qwen2, Qwen1.5 included) have q/k/v biases).
ARCHS: tuple[Arch, ...] = (
    Arch("SmolLM2-135M", 30, 576, 9, 3, 64, 1536, 49152, True, False, "HuggingFaceTB/SmolLM2-135M-Instruct"),
    Arch("Qwen2.5-0.5B", 24, 896, 14, 2, 64, 4864, 151936, True, True, "Qwen/Qwen2.5-0.5B"),
    Arch("Qwen1.5-7B", 32, 4096, 32, 32, 128, 11008, 151936, False, True, "Qwen/Qwen1.5-7B"),
    Arch("Qwen1.5-14B", 40, 5120, 40, 40, 128, 13696, 152064, False, True, "Qwen/Qwen1.5-14B"),
    Arch("Qwen1.5-32B", 64, 5120, 40, 8, 128, 27392, 152064, False, True, "Qwen/Qwen1.5-32B"),
)
TP_DEGREES = (1, 2, 4, 8)
DTYPES = {"float32": 4, "bfloat16": 2}

# Scored-state shapes (SmolLM2 token counts of benchmarks/prior.py's two sets; other tokenizers differ by ~10%).
SCENARIOS = {
    "overcooked": {"prompt": 51, "actions": 8, "action_tokens": 4.0},
    "alfworld": {"prompt": 147, "actions": 25, "action_tokens": 5.4},
}

# Published H200 SXM figures (NVIDIA datasheet): dense bf16 tensor-core peak, HBM3e bandwidth and capacity.
H200 = {"name": "H200 SXM", "bf16_flops": 989e12, "hbm_bytes_per_s": 4.8e12, "hbm_bytes": 141e9}


# ---------------------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------------------
def param_count(a: Arch) -> int:
    """Exact number of parameters (what our loader builds: stacked layers, tied or untied head)."""
    return param_elements_per_device(a, 1, vocab_sharded=True)


def param_elements_per_device(a: Arch, tp: int, vocab_sharded: bool = True) -> int:
    """Parameters on the most loaded device under ``tp``-way tensor parallelism."""
    D, Dh, F = a.hidden, a.head_dim, a.intermediate
    hq, hkv = math.ceil(a.heads / tp), math.ceil(a.kv_heads / tp)  # whole heads per device; ≥ 1 KV head each
    layer = (
        D * hq * Dh  # q_proj (column split)
        + 2 * D * hkv * Dh  # k_proj, v_proj (column split, replicated when kv_heads < tp)
        + hq * Dh * D  # o_proj (row split)
        + 3 * D * math.ceil(F / tp)  # gate, up (column), down (row)
        + 2 * D  # the two RMSNorm weights, replicated
    )
    if a.qkv_bias:
        layer += (hq + 2 * hkv) * Dh
    rows = math.ceil(a.vocab / tp) if vocab_sharded else a.vocab
    vocab = rows * D * (1 if a.tied else 2)  # embedding table (+ untied head)
    return a.layers * layer + vocab + D  # + final norm


def uneven(a: Arch, tp: int) -> bool:
    return a.heads % tp != 0 or a.intermediate % tp != 0 or (a.kv_heads % tp != 0 and a.kv_heads > tp)


def kv_bytes_per_token(a: Arch, dtype_bytes: int, tp: int = 1) -> int:
    """Keys and values of one token over all layers (per device under ``tp``: its KV heads only)."""
    return a.layers * 2 * math.ceil(a.kv_heads / tp) * a.head_dim * dtype_bytes


def scored_tokens(prompt: int, actions: int, action_tokens: float) -> float:
    return prompt + actions * action_tokens


def kv_bytes_per_state(a: Arch, prompt: int, actions: int, action_tokens: float, dtype_bytes: int, tp: int = 1):
    return scored_tokens(prompt, actions, action_tokens) * kv_bytes_per_token(a, dtype_bytes, tp)


def _layer_matmul_flops_per_token(a: Arch) -> int:
    D, H, KV, Dh, F = a.hidden, a.heads, a.kv_heads, a.head_dim, a.intermediate
    return 2 * (D * H * Dh + 2 * D * KV * Dh + H * Dh * D + 3 * D * F)


def flops_per_state(a: Arch, prompt: int, actions: int, action_tokens: float) -> float:
    """Useful FLOPs of scoring one state (causal attention, head only where a token is scored)."""
    P, A, t = prompt, actions, action_tokens
    tokens = P + A * t
    attn_pairs = P * (P + 1) / 2 + A * (t * P + t * (t + 1) / 2)  # (query, key) pairs attended
    attention = a.layers * 4 * a.heads * a.head_dim * attn_pairs  # QKᵀ and PV
    head_rows = 1 + A * (t - 1)
    return a.layers * _layer_matmul_flops_per_token(a) * tokens + attention + 2 * a.hidden * a.vocab * head_rows


def flops_dense_padded(a: Arch, Tp: int, L: int, batch: int = 1) -> tuple[float, float]:
    """(all layers, output head) FLOPs our implementation spends on one ``packed_action_logprobs`` call at padded
    shapes: prefill of Tp tokens with dense Tp×Tp attention and the head on its last position, then the L packed
    tokens against the Tp-long prefix and themselves (dense, masked), and the head on L − 1 rows (chunks of ≤ 256)."""
    mm = a.layers * _layer_matmul_flops_per_token(a)
    att = a.layers * 4 * a.heads * a.head_dim
    rows = batch * (L - 1)
    chunk = min(256, rows)
    head_rows = batch + math.ceil(rows / chunk) * chunk
    return batch * (mm * (Tp + L) + att * (Tp * Tp + L * (Tp + L))), 2 * a.hidden * a.vocab * head_rows


def roofline_states_per_s(a: Arch, scenario: dict, batch: int, dtype_bytes: int = 2, tp: int = 1) -> dict:
    """Upper bound on states/s for calls of ``batch`` states on an H200 (per device under ``tp``)."""
    flops = batch * flops_per_state(a, scenario["prompt"], scenario["actions"], scenario["action_tokens"]) / tp
    weights = param_elements_per_device(a, tp) * dtype_bytes
    kv = batch * kv_bytes_per_state(a, scenario["prompt"], scenario["actions"], scenario["action_tokens"], 2, tp)
    t_compute = flops / H200["bf16_flops"]
    t_memory = (weights + kv) / H200["hbm_bytes_per_s"]
    t = max(t_compute, t_memory)
    return {"states/s": batch / t, "bound": "compute" if t_compute >= t_memory else "memory", "s/call": t}


def min_tp_that_fits(a: Arch, dtype_bytes: int, capacity: float, reserve: float = 0.1) -> int | None:
    """Smallest tp whose per-device weights fit in ``capacity`` bytes with ``reserve`` kept for activations/KV."""
    for tp in TP_DEGREES:
        if param_elements_per_device(a, tp) * dtype_bytes <= capacity * (1 - reserve):
            return tp
    return None


def model_tables() -> dict[str, Any]:
    params, kv, flops, roof = [], [], [], []
    for a in ARCHS:
        n = param_count(a)
        for dtype, nb in DTYPES.items():
            row: dict[str, Any] = {"model": a.name, "dtype": dtype, "params (M)": n / 1e6}
            for tp in TP_DEGREES:
                row[f"TP{tp} GB"] = param_elements_per_device(a, tp, vocab_sharded=True) * nb / GB
                row[f"TP{tp} GB, vocab replicated"] = param_elements_per_device(a, tp, vocab_sharded=False) * nb / GB
                row[f"TP{tp} uneven"] = uneven(a, tp)
            row["embedding+head GB"] = a.vocab * a.hidden * (1 if a.tied else 2) * nb / GB
            row["min TP on H200"] = min_tp_that_fits(a, nb, H200["hbm_bytes"])
            params.append(row)
        for name, s in SCENARIOS.items():
            tokens = scored_tokens(s["prompt"], s["actions"], s["action_tokens"])
            kv.append(
                {
                    "model": a.name,
                    "scenario": name,
                    "tokens/state": tokens,
                    "KV bytes/token bf16": kv_bytes_per_token(a, 2),
                    "KV MB/state f32": kv_bytes_per_state(a, s["prompt"], s["actions"], s["action_tokens"], 4) / 1e6,
                    "KV MB/state bf16": kv_bytes_per_state(a, s["prompt"], s["actions"], s["action_tokens"], 2) / 1e6,
                    "states per GB bf16": GB / kv_bytes_per_state(a, s["prompt"], s["actions"], s["action_tokens"], 2),
                }
            )
            f = flops_per_state(a, s["prompt"], s["actions"], s["action_tokens"])
            flops.append({"model": a.name, "scenario": name, "GFLOP/state": f / 1e9, "GFLOP/token": f / tokens / 1e9})
            for batch in (1, 64):
                r = roofline_states_per_s(a, s, batch)
                roof.append({"model": a.name, "scenario": name, "batch": batch, **r})
    return {"params": params, "kv": kv, "flops": flops, "roofline_h200_bf16_tp1": roof}


# ---------------------------------------------------------------------------------------------------------------
# checks against our code and the loaded model
# ---------------------------------------------------------------------------------------------------------------
def llama_config(a: Arch):
    from prior_rl.llm.llama import LlamaConfig

    return LlamaConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_layers=a.layers,
        num_heads=a.heads,
        num_kv_heads=a.kv_heads,
        head_dim=a.head_dim,
        tie_word_embeddings=a.tied,
        qkv_bias=a.qkv_bias,
        architecture="qwen2" if a.qkv_bias else "llama",
    )


def flax_param_count(a: Arch) -> int:
    """Parameters of our ``LlamaLM`` for this config, from ``eval_shape`` (no memory is allocated)."""
    import jax
    import jax.numpy as jnp

    from prior_rl.llm.llama import LlamaLM

    tokens = jnp.zeros((1, 1, 2), jnp.int32)
    shapes = jax.eval_shape(
        lambda k: LlamaLM(llama_config(a)).init(
            k, tokens, jnp.zeros_like(tokens), jnp.ones(tokens.shape, bool), method=LlamaLM.init_all
        ),
        jax.random.key(0),
    )
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)))


def scoring_kv_shapes(config, params, Tp: int, L: int, batch: int) -> list[tuple[tuple[int, ...], str]]:
    """Shapes and dtypes of the key/value arrays one ``packed_action_logprobs`` call allocates: the prefill's
    (becoming the shared prefix cache) and the packed candidates' own, traced through ``LlamaLM`` by eval_shape."""
    import jax
    import jax.numpy as jnp

    from prior_rl.llm.llama import LlamaLM, Prefix

    model = LlamaLM(config)

    def run(params):
        pt = jnp.zeros((batch, 1, Tp), jnp.int32)
        pos = jnp.zeros((batch, 1, Tp), jnp.int32)
        _, (k, v) = model.apply({"params": params}, pt, pos, jnp.ones((batch, 1, Tp), bool))
        prefix = Prefix(k[:, :, 0], v[:, :, 0], jnp.ones((batch, Tp), bool))
        ct = jnp.zeros((batch, 1, L), jnp.int32)
        _, (ck, cv) = model.apply({"params": params}, ct, ct, jnp.ones((batch, 1, L), bool), prefix=prefix, segments=ct)
        return k, v, ck, cv

    out = jax.eval_shape(run, params)
    return [(tuple(x.shape), str(x.dtype)) for x in out]


def check_smollm2(reps: int, sets: Sequence[str]) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.prior import alfworld_set, overcooked_set
    from prior_rl.llm.padding import next_pow2, pack_groups, pad_sequences
    from prior_rl.llm.weights import load_llm
    from prior_rl.prior import ActionPrior
    from prior_rl.prior.scoring import packed_action_logprobs

    a = ARCHS[0]
    t0 = time.perf_counter()
    llm = load_llm("smollm2")
    load_s = time.perf_counter() - t0
    c = llm.config
    loaded = {
        "layers": c.num_layers,
        "hidden": c.hidden_size,
        "heads": c.num_heads,
        "kv_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "intermediate": c.intermediate_size,
        "vocab": c.vocab_size,
        "tied": c.tie_word_embeddings,
    }
    published = {k: getattr(a, k) for k in loaded}
    if loaded != published:
        raise AssertionError(f"SmolLM2 constants {published} differ from the loaded config {loaded}")
    leaves = jax.tree.leaves(llm.params)
    measured_bytes = int(sum(x.nbytes for x in leaves))
    measured_count = int(sum(x.size for x in leaves))
    if measured_count != param_count(a) or measured_bytes != param_count(a) * 4:
        raise AssertionError(f"loaded SmolLM2: {measured_count} params / {measured_bytes} B, model {param_count(a)}")
    out: dict[str, Any] = {
        "loaded params": measured_count,
        "loaded float32 bytes": measured_bytes,
        "model float32 bytes": param_count(a) * 4,
        "load_s": load_s,
        "states": [],
    }
    # the packed layout (candidates end to end), whose compiled call is checked below; the default prefix-trie
    # layout packs fewer slots (ALFWorld's 25 actions: 86 instead of 135), so the packed figures bound it above
    prior = ActionPrior(llm, normalize=True, candidate_trie=False)
    for set_name in sets:
        prompt, actions = {"overcooked": overcooked_set, "alfworld": alfworld_set}[set_name]()
        conts = [" " + x for x in actions]
        p_ids = [llm.tokenizer.encode(prompt, add_special_tokens=True)]
        c_ids = [[llm.tokenizer.encode(x, add_special_tokens=False) for x in conts]]
        Tp, A, L = prior._shapes(p_ids, c_ids)  # the bucketed shapes ActionPrior's scoring call uses
        P, n_act = len(p_ids[0]), len(actions)
        act_tokens = sum(len(x) for x in c_ids[0])
        shapes = scoring_kv_shapes(c, llm.params, Tp, L, 1)
        itemsize = np.dtype(shapes[0][1]).itemsize
        alloc = int(sum(math.prod(s) * itemsize for s, _ in shapes))
        model_padded = kv_bytes_per_token(a, 4) * (Tp + L)
        if alloc != model_padded:
            raise AssertionError(f"{set_name}: scoring allocates {alloc} KV bytes, model says {model_padded}")
        model_exact = kv_bytes_per_state(a, P, n_act, act_tokens / n_act, 4)
        # XLA's FLOP count of the compiled call vs the model at the same (padded, dense) shapes
        pt, pm = pad_sequences(p_ids, Tp, llm.tokenizer.pad_id)
        ct, seg, off = pack_groups(c_ids, L, llm.tokenizer.pad_id)
        args = (llm.params, jnp.asarray(pt), jnp.asarray(pm), jnp.asarray(ct), jnp.asarray(seg), jnp.asarray(off))
        kw = dict(config=c, num_actions=next_pow2(n_act), normalize=True)
        compiled = packed_action_logprobs.lower(*args, **kw).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
        layers_flops, head_flops = flops_dense_padded(a, Tp, L)
        padded_flops = layers_flops + head_flops
        # XLA's cost analysis counts a while-loop body once: the layers run in one (nn.scan), so it sees one layer
        xla_view = layers_flops / a.layers + head_flops
        if not 0.95 <= xla_flops / xla_view <= 1.05:  # XLA also counts norms, softmax, RoPE: a few per mille
            raise AssertionError(f"{set_name}: XLA counts {xla_flops:.4g} FLOPs, the model {xla_view:.4g}")
        useful_flops = flops_per_state(a, P, n_act, act_tokens / n_act)
        fn = lambda: jax.block_until_ready(compiled(*args))
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        s = statistics.median(times)
        out["states"].append(
            {
                "set": set_name,
                "prompt tokens": P,
                "actions": n_act,
                "action tokens": act_tokens,
                "padded prompt Tp": Tp,
                "padded packed L": L,
                "kv arrays": [list(sh) for sh, _ in shapes],
                "kv dtype": shapes[0][1],
                "allocated KV bytes": alloc,
                "model KV bytes (padded lengths)": model_padded,
                "model KV bytes (exact lengths)": model_exact,
                "model GFLOP useful": useful_flops / 1e9,
                "model GFLOP padded dense": padded_flops / 1e9,
                "XLA GFLOP (one layer + head)": xla_flops / 1e9,
                "model GFLOP (one layer + head)": xla_view / 1e9,
                "XLA / model": xla_flops / xla_view,
                "s/state (CPU, median)": s,
                "achieved GFLOP/s (model padded)": padded_flops / s / 1e9,
            }
        )
    return out


def check_flax_shapes() -> list[dict[str, Any]]:
    rows = []
    for a in ARCHS:
        ours, model = flax_param_count(a), param_count(a)
        if ours != model:
            raise AssertionError(f"{a.name}: LlamaLM has {ours} parameters, the model counts {model}")
        rows.append({"model": a.name, "LlamaLM params (eval_shape)": ours, "model params": model})
    return rows


# ---------------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="Overcooked-size check only, 3 timing repetitions")
    ap.add_argument("--no-load", action="store_true", help="skip the checks that load SmolLM2 (model + eval_shape)")
    ap.add_argument("--out", default=None, help="directory for the JSON (default benchmarks/results)")
    args = ap.parse_args(argv)

    tables = model_tables()
    print("Parameter GB per device, tensor-parallel (embedding + untied head vocab-sharded; * = heads split unevenly)")
    rows = []
    for r in tables["params"]:
        row = {"model": r["model"], "dtype": r["dtype"], "params (M)": r["params (M)"]}
        for tp in TP_DEGREES:
            row[f"TP{tp}"] = f"{r[f'TP{tp} GB']:.3g}" + ("*" if r[f"TP{tp} uneven"] else "")
        row["TP8, vocab replicated"] = r["TP8 GB, vocab replicated"]
        row["embedding+head GB"] = r["embedding+head GB"]
        row["min TP on H200"] = r["min TP on H200"]
        rows.append(row)
    print_table(rows, list(rows[0]))
    print("\nKV cache per scored state (prompt P + A actions × a tokens; whole model, TP1)")
    print_table(tables["kv"], list(tables["kv"][0]))
    print("\nFLOPs per scored state (useful work: causal attention, head only where a token is scored)")
    print_table(tables["flops"], list(tables["flops"][0]))
    print(f"\nRoofline upper bound, {H200['name']}, bf16, one device, B states per call")
    print_table(tables["roofline_h200_bf16_tp1"], ["model", "scenario", "batch", "states/s", "bound", "s/call"])

    checks: dict[str, Any] = {"flax_param_counts": check_flax_shapes()}
    print("\nCheck: parameter count of our LlamaLM (eval_shape) = the model's, for every size")
    print_table(checks["flax_param_counts"], list(checks["flax_param_counts"][0]))
    if not args.no_load:
        sm = check_smollm2(3 if args.quick else 5, ("overcooked",) if args.quick else ("overcooked", "alfworld"))
        checks["smollm2"] = sm
        print(
            f"\nCheck: loaded SmolLM2 holds {sm['loaded params']:,} parameters = {sm['loaded float32 bytes']:,} B "
            f"float32 (model: {sm['model float32 bytes']:,} B)"
        )
        print_table(
            sm["states"],
            [
                "set",
                "prompt tokens",
                "action tokens",
                "padded prompt Tp",
                "padded packed L",
                "allocated KV bytes",
                "model KV bytes (padded lengths)",
                "model KV bytes (exact lengths)",
                "model GFLOP useful",
                "model GFLOP padded dense",
                "XLA GFLOP (one layer + head)",
                "model GFLOP (one layer + head)",
                "XLA / model",
                "s/state (CPU, median)",
                "achieved GFLOP/s (model padded)",
            ],
        )
    payload = {
        "benchmark": "memory_model",
        "quick": args.quick,
        "machine": machine(),
        "command": "python -m benchmarks.memory_model" + (" --quick" if args.quick else ""),
        "archs": [dataclasses.asdict(a) for a in ARCHS],
        "scenarios": SCENARIOS,
        "device_constants": H200,
        "tensor_parallel_layout": "q/k/v, gate/up column-split by whole heads / columns, o/down row-split, norms "
        "replicated; KV heads replicated when fewer than devices; uneven splits rounded up (largest device)",
        "embeddings": "main figures: embedding table and untied head vocab-sharded; '... vocab replicated' columns: "
        "every device holds them",
        **tables,
        "checks": checks,
    }
    path = write_json("memory_model", payload, args.out)
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
