"""The Flax Llama/Qwen2 decoder and the offline loaders, against transformers + torch on tiny random models.

Tiny models are created with transformers (PyTorch), saved to a temporary directory (safetensors + a small
byte-level BPE tokenizer.json) or written as a GGUF file with llama.cpp's Q/K permutation, then loaded with
``prior_rl.weights.load_llm``. The helpers here are reused by tests/test_prior.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prior_rl.llm.llama import LlamaConfig, LlamaLM, Past, Prefix, forward_logits, init_params
from prior_rl.llm.tokenizer import TokenizerError
from prior_rl.llm.weights import WeightsError, load_llm, permute_rotary, registered_models, unpermute_rotary

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CORPUS = [
    "pick up the tomato",
    "take the bowl",
    "walk to the cutting board",
    "serve nothing",
    "chop nothing",
    "put the tomato on the cutting board",
    "put the tomato in the bowl",
    "serve the dish",
    "chop the tomato",
    "Your task is to serve the dish of a bowl only containing chopped tomato.",
    "Current Observation: ",
    "History:\n",
    "Action:",
    "open fridge",
    "go to countertop 1",
    "You are in the middle of a room.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<s>", "</s>"]


def tiny_tokenizer(path: Path, vocab_size: int = 300) -> Path:
    """Train a small byte-level BPE tokenizer (GPT-2 style) and save tokenizer.json + tokenizer_config.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHAT_TEMPLATE})
    )
    return path


def tiny_hf_model(
    arch: str, tie: bool, seed: int = 0, max_pos: int = 256, vocab: int = 320, heads: int = 4, kv_heads: int = 2
):
    """A small random transformers model with large enough weights that logits vary by several units."""
    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_pos,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie,
        initializer_range=0.15,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if arch == "llama":
        cfg = transformers.LlamaConfig(rope_theta=50000.0, **common)
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(rope_theta=1e6, **common)
        model = transformers.Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # non-trivial norms and biases, so a mix-up between them would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn_like(p))
    return model.eval()


def save_hf_dir(model, path: Path) -> Path:
    model.save_pretrained(str(path))
    tiny_tokenizer(path)
    return path


def write_gguf(model, path: Path, tok_dir: Path) -> Path:
    """Write ``model`` as an F32 GGUF the way llama.cpp's converter does (Q/K rows permuted for llama)."""
    import gguf
    from tokenizers import Tokenizer

    cfg = model.config
    arch = cfg.model_type
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    tok = json.loads((tok_dir / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    backend = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    w.add_bos_token_id(backend.token_to_id("<s>"))
    w.add_eos_token_id(backend.token_to_id("</s>"))
    w.add_chat_template(CHAT_TEMPLATE)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_proj.bias": "attn_q.bias",
        "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.bias": "attn_v.bias",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(cfg.num_hidden_layers):
        names.update({f"model.layers.{i}.{k}": f"blk.{i}.{v}" for k, v in per_layer.items()})
    for hf, arr in sd.items():
        if hf == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if arch == "llama" and hf.endswith("q_proj.weight"):
            arr = permute_rotary(arr, cfg.num_attention_heads)
        elif arch == "llama" and hf.endswith("k_proj.weight"):
            arr = permute_rotary(arr, cfg.num_key_value_heads)
        w.add_tensor(names[hf], np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def torch_logits(model, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long)
        )
    return out.logits.numpy()


def ragged_batch(vocab: int, lengths=(11, 7, 3), seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = max(lengths)
    tokens = np.zeros((len(lengths), T), np.int32)
    mask = np.zeros((len(lengths), T), bool)
    for i, n in enumerate(lengths):
        tokens[i, :n] = rng.integers(3, vocab, n)
        mask[i, :n] = True
    return tokens, mask


def max_logit_gap(llm, model, tokens, mask) -> tuple[float, float]:
    ours = np.asarray(forward_logits(llm.config, llm.params, jnp.asarray(tokens), jnp.asarray(mask)))
    ref = torch_logits(model, tokens, mask)
    return float(np.abs(ours - ref)[mask].max()), float(np.abs(ref)[mask].max())


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,tie", [("llama", False), ("llama", True), ("qwen2", True), ("qwen2", False)])
def test_hf_dir_parity(tmp_path, arch, tie):
    model = tiny_hf_model(arch, tie)
    llm = load_llm(str(save_hf_dir(model, tmp_path / "m")))
    assert llm.config.architecture == arch and llm.config.tie_word_embeddings == tie
    assert llm.config.qkv_bias == (arch == "qwen2")
    assert ("lm_head" in llm.params) == (not tie)
    tokens, mask = ragged_batch(llm.config.vocab_size)
    gap, scale = max_logit_gap(llm, model, tokens, mask)
    assert scale > 1.0, "test model too flat to be a meaningful parity check"
    assert gap <= 1e-4, f"max |Δlogit| {gap:.2e} (logit scale {scale:.1f})"


@pytest.mark.parametrize("arch,tie", [("llama", False), ("qwen2", True)])
def test_gguf_parity_and_rotary_unpermute(tmp_path, arch, tie):
    model = tiny_hf_model(arch, tie, seed=3)
    tok_dir = tiny_tokenizer(tmp_path / "tok")
    path = write_gguf(model, tmp_path / "tiny.gguf", tok_dir)
    llm = load_llm(str(path))
    assert llm.config.tie_word_embeddings == tie and llm.config.rope_theta == model.config.rope_parameters["rope_theta"]
    tokens, mask = ragged_batch(llm.config.vocab_size, seed=4)
    gap, _ = max_logit_gap(llm, model, tokens, mask)
    assert gap <= 1e-4, f"max |Δlogit| {gap:.2e}"
    # The tokenizer rebuilt from GGUF metadata equals the tokenizer.json it came from.
    ref = load_llm(str(save_hf_dir(model, tmp_path / "hf"))).tokenizer
    for text in CORPUS + ["<s>user\nhello</s>", "  two  spaces\n\nnewlines", "ünïcode ✓ 123"]:
        assert llm.tokenizer.encode(text) == ref.encode(text), text
    assert llm.chat_template == CHAT_TEMPLATE and llm.tokenizer.eos_ids == ref.eos_ids


def test_unpermute_inverts_llama_cpp_permutation():
    w = np.arange(4 * 8 * 3, dtype=np.float32).reshape(32, 3)
    p = permute_rotary(w, 4)
    assert not np.array_equal(p, w)
    np.testing.assert_array_equal(unpermute_rotary(p, 4), w)
    # llama.cpp interleaves the two rotary halves: head 0's rows become 0, 4, 1, 5, 2, 6, 3, 7.
    np.testing.assert_array_equal(p[:8, 0] // 3, [0, 4, 1, 5, 2, 6, 3, 7])


# ---------------------------------------------------------------------------------------------------------------
TINY = LlamaConfig(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    rope_theta=1000.0,
    max_position_embeddings=64,
)


def test_cached_paths_equal_full_forward():
    """Prefix + past + current attention gives the same hidden states as one causal pass over the whole text."""
    params = init_params(TINY, 0)
    apply = jax.jit(LlamaLM(TINY).apply)
    rng = np.random.default_rng(0)
    seq = jnp.asarray(rng.integers(0, 97, (2, 12)), jnp.int32)
    pos = jnp.broadcast_to(jnp.arange(12), (2, 12))
    full, (k_all, v_all) = apply({"params": params}, seq[:, None], pos[:, None], jnp.ones((2, 1, 12), bool))
    # prefix = first 6 tokens; past = tokens 6..8 (in a 5-slot cache, 2 slots empty); current = tokens 9..11.
    prefix = Prefix(k_all[:, :, 0, :6], v_all[:, :, 0, :6], jnp.ones((2, 6), bool))
    pk = jnp.zeros((2, 2, 1, 5, 2, 8)).at[:, :, :, :3].set(k_all[:, :, :, 6:9])
    pv = jnp.zeros((2, 2, 1, 5, 2, 8)).at[:, :, :, :3].set(v_all[:, :, :, 6:9])
    past = Past(pk, pv, jnp.zeros((2, 1, 5), bool).at[:, :, :3].set(True))
    cur, _ = apply(
        {"params": params}, seq[:, None, 9:], pos[:, None, 9:], jnp.ones((2, 1, 3), bool), prefix=prefix, past=past
    )
    np.testing.assert_allclose(np.asarray(cur), np.asarray(full[:, :, 9:]), atol=1e-5)


def test_padding_does_not_leak():
    """A right-padded row gives the same logits on its real tokens as the same row unpadded."""
    params = init_params(TINY, 1)
    seq = jnp.asarray(np.random.default_rng(1).integers(0, 97, (1, 5)), jnp.int32)
    alone = forward_logits(TINY, params, seq, jnp.ones((1, 5), bool))
    padded = forward_logits(
        TINY,
        params,
        jnp.pad(seq, ((0, 0), (0, 7)), constant_values=13),
        jnp.pad(jnp.ones((1, 5), bool), ((0, 0), (0, 7))),
    )
    np.testing.assert_allclose(np.asarray(padded[:, :5]), np.asarray(alone), atol=1e-5)


def test_bfloat16_params_run(tmp_path):
    model = tiny_hf_model("llama", False)
    llm = load_llm(str(save_hf_dir(model, tmp_path / "m")), dtype=jnp.bfloat16)
    assert llm.params["embed_tokens"]["embedding"].dtype == jnp.bfloat16
    tokens, mask = ragged_batch(llm.config.vocab_size)
    gap, scale = max_logit_gap(llm, model, tokens, mask)
    assert gap < 0.05 * scale  # bf16 rounding only


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one clear error naming the file or the problem
def test_unknown_name_lists_registered_models():
    with pytest.raises(WeightsError, match="smollm2") as e:
        load_llm("gpt-9000")
    assert "unknown model 'gpt-9000'" in str(e.value)
    assert "smollm2" in registered_models()


def test_missing_gguf_file(tmp_path):
    with pytest.raises(WeightsError, match="GGUF file not found"):
        load_llm(str(tmp_path / "nope.gguf"))


def test_corrupt_gguf_names_file(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file at all" * 10)
    with pytest.raises(WeightsError, match=str(bad)):
        load_llm(str(bad))


def test_corrupt_safetensors_names_file(tmp_path):
    d = save_hf_dir(tiny_hf_model("llama", True), tmp_path / "m")
    f = next(d.glob("*.safetensors"))
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(WeightsError, match=f.name):
        load_llm(str(d))


def test_missing_weights_and_config(tmp_path):
    d = save_hf_dir(tiny_hf_model("llama", True), tmp_path / "m")
    for f in d.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(WeightsError, match="no \\*.safetensors"):
        load_llm(str(d))
    (d / "config.json").unlink()
    with pytest.raises(WeightsError, match="no config.json"):
        load_llm(str(d))


def test_unknown_architecture(tmp_path):
    d = save_hf_dir(tiny_hf_model("llama", True), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="unsupported architecture model_type='gpt2'"):
        load_llm(str(d))


def test_unknown_gguf_architecture(tmp_path):
    import gguf

    path = tmp_path / "other.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(WeightsError, match="unsupported architecture general.architecture='gpt2'"):
        load_llm(str(path))


def test_shape_mismatch_names_tensor(tmp_path):
    d = save_hf_dir(tiny_hf_model("llama", True), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 100
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="mlp.gate_proj.weight' has shape"):
        load_llm(str(d))


def test_tokenizer_vocab_mismatch(tmp_path):
    d = save_hf_dir(tiny_hf_model("llama", True, vocab=200), tmp_path / "m")  # tokenizer has 300 ids
    with pytest.raises(TokenizerError, match="tokenizer/vocabulary mismatch.*only 200 embeddings"):
        load_llm(str(d))


def test_missing_tokenizer(tmp_path):
    d = save_hf_dir(tiny_hf_model("llama", True), tmp_path / "m")
    (d / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        load_llm(str(d))
