"""The prior tensor-parallel and in bfloat16: tiny random Llama and Qwen2 checkpoints made by transformers load
sharded over 4 forced CPU devices (subprocess) and score like the unsharded float32 model; bad layouts are one
clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prior_rl.llm.llama import LlamaConfig
from prior_rl.llm.sharding import ShardingError, check_divisible, check_dtype, make_mesh, spec_for

ROOT = Path(__file__).resolve().parents[1]
# bfloat16 keeps 8 bits of mantissa: over these 2-layer models' log-probs (a few nats) that is about 1e-2 per token
BF16_BOUND = 0.1

SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from prior_rl.llm.weights import load_llm
from prior_rl.prior import ActionPrior

prompts = ["Your task is to: put some cellphone on armchair.\n>", "You arrive at desk 1. On the desk 1, you see"]
actions = [[" go to desk 1", " go to desk 2", " take cellphone 1 from desk 1", " look"], [" a pen", " nothing"]]
out = {}
for d in sys.argv[1:]:
    ref = ActionPrior(load_llm(d)).score(prompts, actions)
    tp = load_llm(d, shards=4)
    spec = tp.params["layers"]["self_attn"]["q_proj"]["kernel"].sharding.spec
    shard = tp.params["layers"]["mlp"]["down_proj"]["kernel"].addressable_shards[0].data.shape
    got = ActionPrior(tp).score(prompts, actions)
    bf = ActionPrior(load_llm(d, jnp.bfloat16, shards=4)).score(prompts, actions)
    diff = lambda a, b: max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(a, b))
    out[d] = {"spec": str(spec), "shard": list(shard), "f32": diff(got, ref), "bf16": diff(bf, ref),
              "devices": len(jax.devices())}
print("RESULT" + json.dumps(out))
"""


def _tiny_checkpoint(arch: str, tie: bool, path: Path) -> Path:
    """A random transformers model with 8 heads and 4 KV heads (so 4 devices split them) and our tiny tokenizer."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.test_llama import save_hf_dir, tiny_hf_model

    return save_hf_dir(tiny_hf_model(arch, tie, heads=8, kv_heads=4), path)


def test_sharded_and_bf16_priors_score_like_the_float32_one(tmp_path):
    dirs = [
        str(_tiny_checkpoint("llama", True, tmp_path / "llama")),
        str(_tiny_checkpoint("qwen2", False, tmp_path / "qwen2")),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *dirs], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))[len("RESULT") :])
    for d in dirs:
        r = result[d]
        assert r["devices"] == 4 and r["spec"] == str(spec_for(("layers", "self_attn", "q_proj", "kernel"), 3))
        assert r["shard"] == [2, 96 // 4, 64]  # each device holds a quarter of the MLP's down projection
        assert r["f32"] <= 1e-5, r
        assert r["f32"] < r["bf16"] <= BF16_BOUND, r


def _config(heads: int, kv: int, inter: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=64,
        hidden_size=heads * 8,
        intermediate_size=inter,
        num_layers=1,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=8,
        rope_theta=1e4,
        max_position_embeddings=64,
    )


def test_a_mesh_that_does_not_divide_the_heads_is_one_clear_error():
    with pytest.raises(ShardingError, match=r"--llm-shards 2 does not divide the model's num_heads=9, num_kv_heads=3"):
        check_divisible(_config(9, 3, 1536), 2)  # SmolLM2-135M's layout
    with pytest.raises(ShardingError, match="use one of: 1, 3"):
        check_divisible(_config(9, 3, 1536), 2)
    check_divisible(_config(9, 3, 1536), 3)


def test_too_few_devices_and_unknown_dtypes_are_one_clear_error():
    import jax

    with pytest.raises(ShardingError, match=rf"needs {len(jax.devices()) + 1} devices, jax sees"):
        make_mesh(len(jax.devices()) + 1)
    with pytest.raises(ShardingError, match="unknown --llm-dtype 'float16'"):
        check_dtype("float16")
    assert str(check_dtype("bfloat16")) == "bfloat16"


def test_cli_refuses_a_mesh_that_does_not_divide_smollm2(tmp_path, capsys):
    from prior_rl import cli

    code = cli.main(
        ["train", "--llm-shards", "2", "--env-steps", "8", "--run-dir", str(tmp_path / "r"), "--no-progress"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 2 and "--llm-shards 2 does not divide" in err[-1], err  # backend line + error
