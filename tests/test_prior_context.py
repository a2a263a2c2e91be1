"""Segmented prompts and their KV caches: the preamble cache and the per-episode cache give the same scores as the
full prompt scored from scratch (same token ids), across env copies, resets, replays, truncation and eviction;
the fit rule and its errors; the generation cache of candidates(mode="generate")."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from envs.base import TextObservation
from prior_rl.llm.llama import LlamaConfig, forward_logits
from prior_rl.llm.padding import pad_sequences
from prior_rl.llm.weights import LLM
from prior_rl.prior import ActionPrior
from prior_rl.prior.segments import SegmentedPrompt, SegmentTokenizer, fit, segment_ids, token_ids

CFG = LlamaConfig(
    vocab_size=320,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    rope_theta=1000.0,
    max_position_embeddings=512,
)
WORDS = [
    "pick up the tomato",
    "take the bowl",
    "go to desk 1",
    "open drawer 2",
    "You arrive at desk 1. On the desk 1, you see a cellphone 1.",
    "Your task is to put some cellphone on armchair.",
    "Nothing happens.",
    "> ",
    "Action:",
]
PREAMBLE = (
    "Interact with a household to solve a task. Here are two examples.\n"
    "Your task is to: put a pen on desk.\n> go to desk 1\nYou arrive at desk 1.\n> put pen 1 on desk 1\nDone.\n"
    "Your task is to: open drawer 2.\n> go to drawer 2\nYou arrive at drawer 2.\n> open drawer 2\nDone.\n"
    "Here is your task.\n"
)
CUE = "\n> "
ACTIONS = ("go to desk 1", "take cellphone 1 from desk 1", "open drawer 2", "look", "inventory")
TOL = 1e-4


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> LLM:
    """The random 2-layer model of tests/test_prior.py (longer context) with a small byte-level BPE tokenizer."""
    from tests.test_prior import make_tiny_llm

    return make_tiny_llm(tmp_path_factory.mktemp("tok"), CFG, WORDS)


def turn(copy: int, t: int) -> str:
    """Turn t of env copy `copy` (copies differ from turn 0 on)."""
    if t == 0:
        return f"Your task is to: put some cellphone on armchair {copy}.\nYou are in room {copy}.\n"
    return f"> go to desk {t}\nYou arrive at desk {t}. On the desk {t}, you see a pen {copy + t}.\n"


def seg_obs(turns, actions=ACTIONS, cue=CUE) -> TextObservation:
    """A TextObservation whose history carries the turns (the prompt_fn below reads it)."""
    return TextObservation(prompt="", actions=tuple(actions), task=cue, state="", history=tuple(turns))


def prompt_fn(obs: TextObservation) -> SegmentedPrompt:
    return SegmentedPrompt(PREAMBLE, tuple(obs.history), obs.task)


FAST = dict(length_multiple=64, past_multiple=256)  # coarse shape buckets: fewer compilations in tests


def priors(llm, modes=("episode", "preamble", "off"), **kw):
    return {mode: ActionPrior(llm, prompt_fn, normalize=False, context_cache=mode, **FAST, **kw) for mode in modes}


def assert_same(results, tol=TOL):
    ref = results["off"]
    for mode, got in results.items():
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, atol=tol, rtol=0, err_msg=mode)


# ---------------------------------------------------------------------------------------------------------------
class WordTok:
    """One token per whitespace-separated word; a BOS on prompts."""

    def encode(self, text, add_special_tokens=True):
        return ([1] if add_special_tokens else []) + [7] * len(text.split())


def test_segment_ids_and_text(tiny_llm):
    p = SegmentedPrompt("pre amble ", ("one two ", "three "), "cue")
    assert p.text == "pre amble one two three cue"
    pre, turns, cue = segment_ids(p, WordTok())
    assert pre == [1, 7, 7] and turns == [[7, 7], [7]] and cue == [7]
    assert token_ids(p, WordTok()) == [1, 7, 7, 7, 7, 7, 7]
    st = SegmentTokenizer(tiny_llm.tokenizer)
    p2 = SegmentedPrompt(PREAMBLE, (turn(0, 0), turn(0, 1)), CUE)
    ids = token_ids(p2, st)
    tok = tiny_llm.tokenizer
    want = tok.encode(PREAMBLE) + tok.encode(turn(0, 0), False) + tok.encode(turn(0, 1), False) + tok.encode(CUE, False)
    assert ids == want


def test_fit_drops_oldest_turns_after_turn_0_with_hysteresis():
    tok = WordTok()
    pre, cue = "a b c", "q"  # 4 + 1 tokens
    turns = tuple(f"t{i} x x " for i in range(12))  # 3 tokens each
    p = SegmentedPrompt(pre, turns[:3], cue)
    assert fit(p, tok, 100) is p  # fits: unchanged object
    # budget 20, reserve 2: history budget 20 - 4 - 1 - 2 = 13 tokens = 4 turns; low-water 13 - 3 = 10 (3 turns)
    kept = []
    for t in range(1, 13):
        f = fit(SegmentedPrompt(pre, turns[:t], cue), tok, 20, reserve=2, slack=0.25)
        assert f.turns[0] == turns[0] and f.turns[-1] == turns[t - 1]  # turn 0 and the newest always kept
        assert len(token_ids(f, tok)) + 2 <= 20
        kept.append(f.turns)
    # Between drops each step only appends a turn (an incremental cache extends), and drops are rare.
    drops = 0
    for prev, cur in zip(kept, kept[1:]):
        if cur[:-1] != prev:
            drops += 1
    assert 0 < drops <= 4
    # slack 0 keeps as many turns as fit: a sliding window
    f = fit(SegmentedPrompt(pre, turns, cue), tok, 20, reserve=2, slack=0.0)
    assert f.turns == (turns[0],) + turns[-3:]


def test_fit_errors_name_the_lengths():
    tok = WordTok()
    p = SegmentedPrompt("a " * 30, ("x y z ",), "q")
    with pytest.raises(ValueError, match=r"preamble \(31 tokens\) \+ cue \(1\) \+ longest continuation \(4\) = 36"):
        fit(p, tok, 32, reserve=4)
    p = SegmentedPrompt("a b", ("x " * 10, "y " * 3, "z " * 6), "q")
    with pytest.raises(ValueError, match=r"history budget of 11 tokens.*turn 0 \(10 tokens\) \+ the newest turn \(6\)"):
        fit(p, tok, 16, reserve=1)
    with pytest.raises(ValueError, match=r"history budget of 4 tokens.*turn 0 \(10 tokens\) = 10"):
        fit(SegmentedPrompt("a b", ("x " * 10,), "q"), tok, 9, reserve=1)


# ---------------------------------------------------------------------------------------------------------------
def test_cached_scores_equal_full_prompt_scores(tiny_llm):
    """Two env copies with different histories batched together, step by step: episode-cached, preamble-cached
    and uncached scores agree; the uncached score agrees with a brute-force full forward over the same ids."""
    ps = priors(tiny_llm)
    for t in range(1, 5):
        batch = [seg_obs([turn(0, j) for j in range(t)]), seg_obs([turn(1, j) for j in range(t)], ACTIONS[:3])]
        assert_same({m: p.logprobs(batch) for m, p in ps.items()})
    c = ps["episode"].counters
    assert c["preamble_prefills"] == 1 and c["preamble_hits"] == 2 * 4 - 1
    assert c["episode_extensions"] == 8 and c["episode_reprefills"] == 0 and c["episode_hits"] == 0
    assert c["turn_tokens_reused"] > 0
    assert ps["preamble"].counters["preamble_prefills"] == 1 and ps["preamble"].counters["episode_extensions"] == 0

    # Raw scores against a full forward pass over the concatenated per-segment ids.
    o = seg_obs([turn(0, j) for j in range(3)])
    seg = prompt_fn(o)
    seg = SegmentedPrompt(seg.preamble, seg.turns, seg.cue.rstrip(" "))
    conts = [" " + " " + a for a in o.actions]  # the cue's trailing space moves into the continuation
    tok = tiny_llm.tokenizer
    p_ids = token_ids(seg, tok)
    want = []
    for c_text in conts:
        c_ids = tok.encode(c_text, add_special_tokens=False)
        st, sm = pad_sequences([p_ids + c_ids], 512, 0)
        logits = np.asarray(forward_logits(CFG, tiny_llm.params, jnp.asarray(st), jnp.asarray(sm)))[0]
        lsm = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        want.append(sum(lsm[len(p_ids) + j - 1, c_ids[j]] for j in range(len(c_ids))))
    for mode, prior in ps.items():
        raw = prior.score([seg], [conts])[0]
        np.testing.assert_allclose(raw, want, atol=TOL, rtol=0, err_msg=mode)
        lp = prior.logprobs([o])[0]
        np.testing.assert_allclose(lp, raw - np.logaddexp.reduce(raw), atol=TOL)


def test_no_history_leak_across_resets_and_copies(tiny_llm):
    ps = priors(tiny_llm, ("episode", "off"))
    ep = ps["episode"]
    # Episode A on copy 0, 4 steps.
    for t in range(1, 5):
        assert_same({m: p.logprobs([seg_obs([turn(0, j) for j in range(t)])]) for m, p in ps.items()})
    # Reset: a new turn 0 (copy 7's), then replay; batched with a copy whose history diverges from A at turn 2.
    diverged = [turn(0, 0), turn(0, 1), "> look\nYou see nothing new.\n", turn(0, 3)]
    for t in range(1, 5):
        batch = [seg_obs([turn(7, j) for j in range(t)]), seg_obs(diverged[:t])]
        assert_same({m: p.logprobs(batch) for m, p in ps.items()})
    # Replaying episode A exactly: the whole history comes from the cache (only the cue is encoded).
    before = dict(ep.counters)
    for t in range(1, 5):
        assert_same({m: p.logprobs([seg_obs([turn(0, j) for j in range(t)])]) for m, p in ps.items()})
    assert ep.counters["episode_hits"] - before["episode_hits"] == 4
    assert ep.counters["turn_tokens_encoded"] == before["turn_tokens_encoded"]
    # Same turns, different preamble: nothing reused across preambles.
    header = lambda o: SegmentedPrompt("Another header.\n", tuple(o.history), o.task)  # noqa: E731
    other = ActionPrior(tiny_llm, header, normalize=False, **FAST)
    ref = ActionPrior(tiny_llm, header, normalize=False, context_cache="off", **FAST)
    other.context = ep.context  # share the trie on purpose: preamble roots keep them apart
    o = seg_obs([turn(0, j) for j in range(3)])
    np.testing.assert_allclose(other.logprobs([o])[0], ref.logprobs([o])[0], atol=TOL)


def test_empty_cue_and_revisit_with_new_actions(tiny_llm):
    """Nothing new to encode (same turns, empty cue, another action set): the last history token is re-encoded."""
    ps = priors(tiny_llm, ("episode", "off"))
    turns = [turn(2, j) for j in range(3)]
    for actions in (ACTIONS, ACTIONS[1:4], ("look",)):
        assert_same({m: p.logprobs([seg_obs(turns, actions, cue="")]) for m, p in ps.items()})
    assert ps["episode"].counters["episode_hits"] == 2
    # A bare preamble with no turns and no cue falls back to the uncached path.
    assert_same({m: p.logprobs([seg_obs([], cue="")]) for m, p in ps.items()})
    assert ps["episode"].counters["context_fallbacks"] == 1


def test_overflow_drops_oldest_turns_and_matches_reference(tiny_llm):
    n_pre = len(tiny_llm.tokenizer.encode(PREAMBLE))
    budget = n_pre + 300  # about 7 turns of history; the low-water mark keeps about 5
    ps = priors(tiny_llm, ("episode", "off"), context_budget=budget)
    for t in range(1, 14):
        batch = [seg_obs([turn(0, j) for j in range(t)]), seg_obs([turn(1, j) for j in range(t)])]
        assert_same({m: p.logprobs(batch) for m, p in ps.items()})
    c = ps["episode"].counters
    assert c["truncations"] > 0 and c["episode_reprefills"] > 0
    assert c["episode_extensions"] > c["episode_reprefills"]  # the low-water mark spaces re-prefills out
    # The fitted prompt keeps turn 0 and fits the budget with the reserve.
    seg = ps["off"]._fit(prompt_fn(seg_obs([turn(0, j) for j in range(13)])), 8)
    assert seg.turns[0] == turn(0, 0) and len(seg.turns) < 13
    assert len(token_ids(seg, tiny_llm.tokenizer)) + 16 <= budget


def test_eviction_keeps_scores_exact(tiny_llm):
    ps = priors(tiny_llm, ("episode", "off"), episode_cache_bytes=30_000)  # a few turns' worth of KV
    for t in range(1, 5):
        batch = [seg_obs([turn(c, j) for j in range(t)]) for c in range(2)]
        assert_same({m: p.logprobs(batch) for m, p in ps.items()})
    st = ps["episode"].stats()
    assert st["episode_cache_evictions"] > 0 and st["episode_cache_bytes"] <= 30_000


def test_errors(tiny_llm):
    long_pre = "Your task is to put some cellphone on armchair. " * 60
    prior = ActionPrior(tiny_llm, lambda o: SegmentedPrompt(long_pre, tuple(o.history), o.task))
    with pytest.raises(ValueError, match=r"the preamble \(\d+ tokens\) \+ cue \(\d+\) \+ longest continuation"):
        prior.logprobs([seg_obs([turn(0, 0)])])
    n_pre = len(tiny_llm.tokenizer.encode(PREAMBLE))
    small = ActionPrior(tiny_llm, prompt_fn, context_budget=n_pre + 30)
    with pytest.raises(ValueError, match=r"history budget of \d+ tokens .* is smaller than turn 0"):
        small.logprobs([seg_obs([turn(0, 0), turn(0, 1), turn(0, 2)])])
    with pytest.raises(ValueError, match="context_budget must be in"):
        ActionPrior(tiny_llm, prompt_fn, context_budget=10_000)
    with pytest.raises(ValueError, match="context_cache must be one of"):
        ActionPrior(tiny_llm, prompt_fn, context_cache="on")


def test_prompt_cache_key_covers_the_transcript(tiny_llm):
    cache: dict = {}
    prior = ActionPrior(tiny_llm, prompt_fn, cache=cache, **FAST)
    a = seg_obs([turn(0, 0), turn(0, 1)])
    b = seg_obs([turn(0, 0), turn(1, 1)])  # same length, different history
    la, lb = prior.logprobs([a, b])
    assert len(cache) == 2 and not np.allclose(la, lb)
    key = next(iter(cache))
    assert key[1] == ("segments", PREAMBLE, (turn(0, 0), turn(0, 1)), CUE.rstrip(" "))
    prior.logprobs([a])
    assert prior.counters["prompt_cache_hits"] == 1


def test_generate_mode_reuses_generations_per_prompt(tiny_llm):
    plain = lambda o: "You arrive at desk 1. Action:" if o.history == () else "Nothing happens. Action:"  # noqa: E731
    prior = ActionPrior(tiny_llm, plain, max_new_tokens=4, **FAST)
    letters = ("e", "o", "t", "a", "s")  # random texts contain these in varying counts
    o1, o2 = seg_obs([], letters), seg_obs(["x"], letters[:3])
    first = prior.candidates(0, [o1, o2], 6, mode="generate")
    again = prior.candidates(123, [o2, o1, o1], 6, mode="generate")  # another rng: the same k texts per prompt
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[1], first[0])
    np.testing.assert_array_equal(again[2], first[0])
    assert prior.counters["generation_misses"] == 2 and prior.counters["generation_hits"] == 3
    fresh = ActionPrior(tiny_llm, plain, max_new_tokens=4, generation_cache=False, **FAST)
    draws = [fresh.candidates(s, [o1], 6, mode="generate")[0].tolist() for s in range(4)]
    assert len({tuple(d) for d in draws}) > 1  # without the cache each call draws again
    assert fresh.counters["generation_hits"] == 0


def test_generation_on_segmented_prompts_uses_the_caches(tiny_llm):
    """Greedy generations from the context caches equal those from the full prompt, and extend the trie."""
    kw = dict(max_new_tokens=5, temperature=0.0, stop_at_newline=False, generation_cache=False, **FAST)
    ep = ActionPrior(tiny_llm, prompt_fn, context_cache="episode", **kw)
    off = ActionPrior(tiny_llm, prompt_fn, context_cache="off", **kw)
    for t in range(1, 4):
        batch = [seg_obs([turn(0, j) for j in range(t)]), seg_obs([turn(3, j) for j in range(t)])]
        assert ep.generate(0, batch, 2) == off.generate(0, batch, 2)
    assert ep.counters["episode_extensions"] == 6 and ep.counters["preamble_prefills"] == 1
    # Scoring after generating reuses the history generation cached.
    before = ep.counters["turn_tokens_encoded"]
    ep.logprobs([seg_obs([turn(0, j) for j in range(3)])])
    assert ep.counters["turn_tokens_encoded"] == before and ep.counters["episode_hits"] == 1


def test_plain_prompts_unchanged_alongside_segmented(tiny_llm):
    """A batch mixing string and segmented prompts: the string ones score exactly as before."""
    mixed = lambda o: prompt_fn(o) if o.history else "You arrive at desk 1. Action:"  # noqa: E731
    prior = ActionPrior(tiny_llm, mixed, normalize=False, **FAST)
    plain_only = ActionPrior(tiny_llm, lambda o: "You arrive at desk 1. Action:", normalize=False, **FAST)
    got = prior.logprobs([seg_obs([]), seg_obs([turn(0, 0)])])
    np.testing.assert_array_equal(got[0], plain_only.logprobs([seg_obs([])])[0])
    ref = ActionPrior(tiny_llm, prompt_fn, normalize=False, context_cache="off", **FAST).logprobs(
        [seg_obs([turn(0, 0)])]
    )[0]
    np.testing.assert_allclose(got[1], ref, atol=TOL)


def test_grouped_attention_equals_default(tiny_llm):
    """LlamaLM(attention="grouped") (the context functions' core) equals the default core with a prefix, a per-row
    past, padding and packed segments; the parameters are the same."""
    import jax

    from prior_rl.llm.llama import LlamaLM, Past, Prefix

    rng = np.random.default_rng(3)
    L, KV, Dh = CFG.num_layers, CFG.num_kv_heads, CFG.head_dim
    B, N, T, S, P = 2, 3, 7, 5, 4
    f = lambda *s: jnp.asarray(rng.standard_normal(s, np.float32))  # noqa: E731
    prefix = Prefix(f(L, B, S, KV, Dh), f(L, B, S, KV, Dh), jnp.asarray(rng.random((B, S)) < 0.8).at[:, 0].set(True))
    past = Past(f(L, B, N, P, KV, Dh), f(L, B, N, P, KV, Dh), jnp.asarray(rng.random((B, N, P)) < 0.7))
    tokens = jnp.asarray(rng.integers(3, CFG.vocab_size, (B, N, T)), jnp.int32)
    positions = jnp.asarray(S + P + np.arange(T), jnp.int32) + jnp.zeros((B, N, T), jnp.int32)
    mask = jnp.asarray(rng.random((B, N, T)) < 0.9)
    segments = jnp.asarray(np.sort(rng.integers(0, 3, (B, N, T)), axis=-1), jnp.int32)
    outs = []
    for attention in ("einsum", "grouped"):
        model = LlamaLM(CFG, attention=attention)
        outs.append(
            jax.jit(lambda p: model.apply({"params": p}, tokens, positions, mask, prefix, past, segments))(
                tiny_llm.params
            )
        )
    (h0, (k0, v0)), (h1, (k1, v1)) = outs
    np.testing.assert_allclose(np.asarray(h1), np.asarray(h0), atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(k1[0]), np.asarray(k0[0]))  # layer 0's keys: same projection
    np.testing.assert_allclose(np.asarray(v1), np.asarray(v0), atol=1e-5, rtol=1e-5)


def test_context_cache_trie_and_eviction():
    """The trie on its own: exact-string chains per preamble root, LRU eviction by bytes removes subtrees, and a
    turn added under an evicted parent is not stored."""
    from prior_rl.prior.kv_cache import ContextCache

    kv = lambda n: np.zeros((1, n, 1, 2), np.float32)  # noqa: E731  (n tokens: 8n bytes per array)
    cache = ContextCache(max_bytes=16 * 10)  # room for 10 tokens of k + v
    r1 = cache.put_preamble("p1", None, [1]).root
    r2 = cache.put_preamble("p2", None, [1]).root
    a = cache.add(r1, "a", [5, 6], kv(2), kv(2))
    b = cache.add(a.id, "b", [7], kv(1), kv(1))
    assert b.length == 3 and [n.turn for n in cache.match(r1, ("a", "b", "c"))] == ["a", "b"]
    assert cache.match(r2, ("a", "b")) == [] and cache.match(r1, ("b",)) == []  # other root / not a prefix
    x = cache.add(r2, "x", [1] * 6, kv(6), kv(6))  # 9 tokens in all: fits
    assert cache.add(r2, "x", [1] * 6, kv(6), kv(6)) is x  # already cached
    cache.add(x.id, "y", [1] * 2, kv(2), kv(2))  # 11 tokens: the least recently used node (a) goes, with b
    assert cache.match(r1, ("a", "b")) == [] and cache.nbytes == 16 * 8 and cache.evictions == 1
    assert [n.turn for n in cache.match(r2, ("x", "y"))] == ["x", "y"]
    ghost = cache.add(a.id, "c", [1], kv(1), kv(1))  # parent a was evicted
    assert ghost.k is None and cache.match(r1, ("a", "c")) == [] and cache.nbytes == 16 * 8
    for key in ("p3", "p4", "p5"):  # max_preambles = 4: p1 (least recent) goes with its subtree
        cache.put_preamble(key, None, [1])
    assert cache.preamble("p1") is None and cache.preamble("p2") is not None
