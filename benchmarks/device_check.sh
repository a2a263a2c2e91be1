#!/usr/bin/env bash
# The benchmarks' accelerator-relevant rows on whatever JAX finds (GPU, TPU, or the CPU), in one command:
#
#   benchmarks/device_check.sh                    # on a GPU machine: JSON in benchmarks/results/device/
#   benchmarks/device_check.sh --quick --out /tmp/device   # 2 minutes on a 2-core CPU (plumbing test)
#
# 1. env.json      jax version, backend, devices (and nvidia-smi's view when there is one)
# 2. learner.json  the JAX rows of benchmarks/learner.py (scanned DQN-Prior / CQL-Prior updates, one update per
#                  dispatch, replay sampling in-call) on one device, and the data-parallel DQN-Prior update on
#                  1, 2, 4, ... up to every device (`python -m benchmarks.learner --worker-devices N`, the rows
#                  `--devices` produces): updates/s and updates/s per device, and |sharded - single| each time.
#                  On a CPU the multi-device rows use fake devices (a plumbing check, not scaling). The PyTorch
#                  rows of the full benchmark are left out (torch here is a CPU build; run
#                  `python -m benchmarks.learner --devices ...` for them).
# 3. prior.json    LLM-prior scoring (ActionPrior.score, the path training uses) of the Overcooked- and
#                  ALFWorld-size states of benchmarks/prior.py, batches of 1/8/64 states, SmolLM2 in float32 and
#                  bfloat16 (the prior's dtype option: load_llm(..., dtype=jnp.bfloat16)), plus a Qwen2.5-0.5B-
#                  shaped model with random bf16 weights (speed does not depend on the values) to see a larger
#                  prior; states/s, and achieved TFLOP/s from benchmarks/memory_model.py's FLOP count.
# 4. jitted.json   the compiled DQN-Prior loop of benchmarks/jitted.py (Tomato Salad, 500 samples per seed, no
#                  Python-loop row): samples/s for 1 and 64 seeds (also 256 on an accelerator) and the fraction of
#                  the measured matmul rate; it builds the Tomato Salad tables first (21 prompts, seconds); and
#                  one row of the compiled PPO loop (one-hot features, 2,048 samples, the most seeds).
#
# Each step has a time limit (15 + 120 + 110 + 55 s: 5 minutes at most); a step that fails or runs out is recorded
# in summary.json (rc 124 = out of time), the JSON rows it finished are kept, and the other steps still run.
set -uo pipefail

QUICK=0
OUT=benchmarks/results/device
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --out) [ $# -ge 2 ] || { echo "device_check.sh: --out needs a directory" >&2; exit 2; }
      case "$2" in /*) OUT="$2" ;; *) OUT="$PWD/$2" ;; esac; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown option $1 (use --quick, --out DIR)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export DEVICE_CHECK_OUT="$OUT" DEVICE_CHECK_QUICK="$QUICK"
START=$(date +%s)
STATUS=()

step() {  # step NAME LIMIT_S python-code...
  local name="$1" limit="$2"
  shift 2
  local t0
  t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" python -c "$1" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  STATUS+=("\"$name\": {\"rc\": $rc, \"wall_s\": $(($(date +%s) - t0))}")
  [ "$rc" -eq 0 ] || echo "== $name FAILED (rc $rc; 124 = out of time), see $OUT/$name.log"
}

# ---- 1. what JAX sees -----------------------------------------------------------------------------------------
step env 15 '
import json, os, subprocess, jax
from benchmarks.common import machine, write_json
info = machine()
info["device_kind"] = jax.devices()[0].device_kind
info["device_count"] = jax.device_count()
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
        "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
except (OSError, subprocess.TimeoutExpired):
    info["nvidia_smi"] = None
print(json.dumps(info, indent=1))
write_json("env", info, os.environ["DEVICE_CHECK_OUT"])
'

# ---- 2. learner -----------------------------------------------------------------------------------------------
step learner 120 '
import json, os, time
import numpy as np, jax
from benchmarks import learner
from benchmarks.common import machine, print_table, write_json
quick = os.environ["DEVICE_CHECK_QUICK"] == "1"
seconds, upc = (1.0, 50) if quick else (2.0, 200)
batches = learner.random_batches(upc)
rows = []
for algo in ("dqn-prior", "cql-prior"):
    benches, memory, _ = learner.jax_benches(algo, batches, upc)
    for (_, mode), r in learner.measure(benches, seconds, 3).items():
        ups = float(np.median(r))
        row = {"algo": algo, "mode": mode, "updates/s": ups, "ms/update": 1e3 / ups}
        if "pre-made" in mode:
            row.update({"GFLOP/s": memory["step_flops"] * ups / 1e9, "compile s": memory["compile_s"]})
        rows.append(row)
print_table(rows, ["algo", "mode", "updates/s", "ms/update", "GFLOP/s", "compile s"])
payload = {"benchmark": "learner (JAX rows, via benchmarks/device_check.sh)", "quick": quick, "machine": machine(),
           "shapes": {"batch": learner.B, "k": learner.K, "feat_dim": learner.D}, "updates_per_call": upc,
           "seconds_per_bench": seconds, "rows": rows, "devices": []}
write_json("learner", payload, os.environ["DEVICE_CHECK_OUT"])  # kept if the device rows run out of time
n = jax.device_count() if jax.default_backend() != "cpu" else 2
devices = sorted({d for d in (1, 2, 4, 8, 16) if d <= n} | {n})
drows = learner.device_rows(devices, seconds, upc)
print_table(drows, ["devices", "backend", "device_kind", "updates/s", "updates/s per device",
                    "max |sharded - single|", "compile+first s", "note"])
payload["devices"] = drows
write_json("learner", payload, os.environ["DEVICE_CHECK_OUT"])
'

# ---- 3. prior scoring -----------------------------------------------------------------------------------------
step prior 110 '
import os, time
import jax, jax.numpy as jnp
from benchmarks import memory_model as mm
from benchmarks.common import machine, print_table, write_json
from benchmarks.prior import alfworld_set, overcooked_set, timed
from prior_rl.llm.llama import init_params
from prior_rl.llm.weights import load_llm
from prior_rl.prior import ActionPrior
quick = os.environ["DEVICE_CHECK_QUICK"] == "1"
gpu = jax.default_backend() != "cpu"
reps = 3 if quick else 5
sets = {"overcooked": overcooked_set(), "alfworld": alfworld_set()}
if quick:
    sets.pop("alfworld")
batches = (1, 8, 64) if gpu else ((1,) if quick else (1, 8))
t0 = time.perf_counter()
llm = load_llm("smollm2")
load_s = time.perf_counter() - t0
bf16 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.bfloat16), tree)  # = load_llm(..., dtype=jnp.bfloat16)
models = [("SmolLM2-135M", mm.ARCHS[0], "float32", llm), ("SmolLM2-135M", mm.ARCHS[0], "bfloat16",
          llm._replace(params=bf16(llm.params)))]
if gpu or not quick:
    qwen = mm.ARCHS[1]
    cfg = mm.llama_config(qwen)
    models.append(("Qwen2.5-0.5B (random weights)", qwen, "bfloat16",
                   llm._replace(name="qwen-shaped", config=cfg, params=init_params(cfg, dtype=jnp.bfloat16))))
rows = []
payload = {"benchmark": "prior scoring (via benchmarks/device_check.sh)", "quick": quick, "machine": machine(),
           "reps": reps, "load_s": load_s, "rows": rows,
           "note": "the prior supports bfloat16 (load_llm dtype); the same prompt is repeated B times per call and "
                   "scored each time (ActionPrior.score has no cache)"}
for name, arch, dtype, model in models:
    prior = ActionPrior(model, normalize=True)
    tok = model.tokenizer
    for set_name, (prompt, actions) in sets.items():
        conts = [" " + a for a in actions]
        P = len(tok.encode(prompt))
        a_tok = sum(len(tok.encode(c, add_special_tokens=False)) for c in conts) / len(conts)
        flops = mm.flops_per_state(arch, P, len(actions), a_tok)
        for B in batches:
            fn = lambda: prior.score([prompt] * B, [conts] * B)
            first, s = timed(fn, reps)
            rows.append({"model": name, "dtype": dtype, "set": set_name, "states/call": B, "actions": len(actions),
                         "s/call": s, "states/s": B / s, "cand/s": B * len(actions) / s,
                         "achieved TFLOP/s": B * flops / s / 1e12, "compile+first s": first,
                         "roofline states/s (H200 bf16)": mm.roofline_states_per_s(
                             arch, {"prompt": P, "actions": len(actions), "action_tokens": a_tok}, B)["states/s"]})
            print(f"{name} {dtype} {set_name} B={B}: {B / s:.3g} states/s, compile+first {first:.1f} s", flush=True)
            write_json("prior", payload, os.environ["DEVICE_CHECK_OUT"])  # row by row: kept if time runs out
print_table(rows, ["model", "dtype", "set", "states/call", "states/s", "cand/s", "achieved TFLOP/s", "s/call",
                   "compile+first s", "roofline states/s (H200 bf16)"])
'

# ---- 4. the compiled loop ------------------------------------------------------------------------------------
step jitted 55 '
import os, sys, jax
from benchmarks import jitted
seeds = ["1", "64", "256"] if jax.default_backend() != "cpu" else ["1", "64"]
sys.argv = ["jitted", "--quick", "--no-python", "--seeds", *seeds, "--out", os.environ["DEVICE_CHECK_OUT"]]
jitted.main()
'

TOTAL=$(($(date +%s) - START))
(IFS=,; echo "{${STATUS[*]}, \"total_s\": $TOTAL}") > "$OUT/summary.json"
echo "== done in ${TOTAL}s: $(cat "$OUT/summary.json")"
grep -q '"rc": [1-9]' "$OUT/summary.json" && exit 1
exit 0
