"""Losses against hand-computed numbers (method.md §2.3–§2.5, §3.8), each run jitted and not (chex variants);
argument checks; GAE with truncation bit-identical to the numpy loop it replaces."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prior_rl import losses

T, F = True, False


class _Variant:
    """``L.fn(*args, **options)`` runs ``losses.fn`` through the current chex variant (jitted or not): positional
    arguments are traced under jit, keyword options (reductions, flags, α) are bound statically."""

    def __init__(self, variant):
        self._variant = variant

    def __getattr__(self, name):
        fn = getattr(losses, name)
        return lambda *args, **options: self._variant(lambda *a: fn(*a, **options))(*args)


def _gae_reference(rewards, terminated, truncated, values, next_values, last_values, gamma, lam):
    """The numpy GAE of prior_rl/train.py (``_gae``), verbatim: the bit-exact reference."""
    T = rewards.shape[0]
    adv = np.zeros_like(rewards)
    carry = np.zeros(rewards.shape[1], np.float32)
    for t in reversed(range(T)):
        following = last_values if t == T - 1 else values[t + 1]
        boundary = terminated[t] | truncated[t]
        v_next = np.where(truncated[t] & ~terminated[t], next_values[t], np.where(terminated[t], 0.0, following))
        delta = rewards[t] + gamma * v_next - values[t]
        carry = delta + gamma * lam * np.where(boundary, 0.0, carry)
        adv[t] = carry
    return adv, adv + values


def _random_rollout(rng, T, N, p_term=0.15, p_trunc=0.15):
    f = lambda *s: (3 * rng.normal(size=s)).astype(np.float32)
    term = rng.random((T, N)) < p_term
    trunc = rng.random((T, N)) < p_trunc  # may coincide with a termination (then the termination wins)
    return f(T, N), term, trunc, f(T, N), f(T, N), f(N)


def _bits(x):
    return np.asarray(x).view(np.uint32)


class LossesTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_prior_td_target_max_over_valid_candidates(self):
        L = _Variant(self.variant)
        # max over the valid candidates {1, 3} = 3; the padded 100 must be ignored
        y = L.prior_td_target(1.0, 0.99, jnp.array([1.0, 3.0, 100.0]), jnp.array([T, T, F]))
        assert float(y) == pytest.approx(1.0 + 0.99 * 3.0)
        # terminal transition: discount 0 -> reward only
        assert float(L.prior_td_target(0.5, 0.0, jnp.array([7.0, 9.0]), jnp.array([T, T]))) == pytest.approx(0.5)
        # no valid candidate -> no bootstrap
        assert float(L.prior_td_target(0.5, 0.99, jnp.array([7.0, 9.0]), jnp.array([F, F]))) == pytest.approx(0.5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_soft_target_masked_mean_and_duplicates(self):
        L = _Variant(self.variant)
        alpha = 0.5
        q, mask = jnp.array([1.0, 2.0, 50.0]), jnp.array([T, T, F])
        expected = 0.2 + 0.9 * alpha * math.log((math.exp(1.0 / alpha) + math.exp(2.0 / alpha)) / 2)
        assert float(L.soft_prior_td_target(0.2, 0.9, q, mask, alpha)) == pytest.approx(expected, rel=1e-6)
        # a duplicated candidate counts twice: mean over {1, 1, 2}, not over {1, 2}
        dup = L.soft_prior_td_target(0.2, 0.9, jnp.array([1.0, 1.0, 2.0]), jnp.array([T, T, T]), alpha)
        expected_dup = 0.2 + 0.9 * alpha * math.log((2 * math.exp(1.0 / alpha) + math.exp(2.0 / alpha)) / 3)
        assert float(dup) == pytest.approx(expected_dup, rel=1e-6)
        assert float(dup) != pytest.approx(expected, rel=1e-3)
        # small alpha -> the max backup
        small = L.soft_prior_td_target(0.2, 0.9, q, mask, 1e-3)
        assert float(small) == pytest.approx(float(L.prior_td_target(0.2, 0.9, q, mask)), abs=1e-2)

    @chex.variants(with_jit=True, without_jit=True)
    def test_padding_values_do_not_change_any_loss(self):
        L = _Variant(self.variant)
        rng = np.random.default_rng(0)
        q_t = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
        mask = jnp.asarray(rng.random((4, 6)) < 0.6).at[:, 0].set(True)
        q_junk = jnp.where(mask, q_t, 1e3)
        args = (jnp.arange(4.0), jnp.ones(4), jnp.full(4, 0.9))
        for soft in (None, 0.3):
            a = L.td_loss(args[0], args[1], args[2], q_t, mask, soft_alpha=soft)
            b = L.td_loss(args[0], args[1], args[2], q_junk, mask, soft_alpha=soft)
            assert float(a) == pytest.approx(float(b), rel=1e-6)
        assert float(L.cql_loss(q_t, mask, args[0])) == pytest.approx(float(L.cql_loss(q_junk, mask, args[0])))
        logits = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
        prior = jnp.log(jnp.full((4, 6), 1 / 6))
        junk_logits, junk_prior = jnp.where(mask, logits, -7.0), jnp.where(mask, prior, -jnp.inf)
        for fn in (lambda lg, p: L.entropy(lg, mask[0]), lambda lg, p: L.kl_to_prior(lg, p, mask[0])):
            assert float(fn(logits[0], prior[0])) == pytest.approx(float(fn(junk_logits[0], junk_prior[0])), rel=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_td_loss_sum_and_mean_hand_computed(self):
        L = _Variant(self.variant)
        q_a = jnp.array([1.0, 0.0])
        r = jnp.array([0.5, -1.0])
        disc = jnp.array([0.9, 0.0])
        q_t = jnp.array([[2.0, 1.0], [5.0, 6.0]])
        mask = jnp.array([[T, T], [T, T]])
        # y = [0.5 + 0.9*2, -1] = [2.3, -1]; errors [1.3, -1]
        assert float(L.td_loss(q_a, r, disc, q_t, mask)) == pytest.approx(1.3**2 + 1.0, rel=1e-6)
        assert float(L.td_loss(q_a, r, disc, q_t, mask, reduction="mean")) == pytest.approx((1.3**2 + 1) / 2)

    @chex.variants(with_jit=True, without_jit=True)
    def test_reference_broadcast_bug_differs_and_matches_hand_computed_bxb(self):
        L = _Variant(self.variant)
        q_a = np.array([0.3, -0.2, 1.1], np.float32)
        r = np.array([1.0, 0.0, -0.5], np.float32)
        done = np.array([0.0, 1.0, 0.0], np.float32)
        gamma = 0.99
        disc = gamma * (1 - done)
        q_t = np.array([[0.5, 2.0], [1.0, -1.0], [0.2, 0.4]], np.float32)
        mask = np.ones((3, 2), bool)
        v = q_t.max(axis=1)
        # hand: sum_i sum_j (Q_i - r_j - gamma (1 - d_j) V_i)^2
        hand_bug = sum((q_a[i] - r[j] - disc[j] * v[i]) ** 2 for i in range(3) for j in range(3))
        hand_ok = sum((q_a[i] - r[i] - disc[i] * v[i]) ** 2 for i in range(3))
        args = tuple(map(jnp.asarray, (q_a, r, disc, q_t, mask)))
        bug = float(L.td_loss(*args, reference_broadcast_bug=True))
        ok = float(L.td_loss(*args))
        assert bug == pytest.approx(hand_bug, rel=1e-5)
        assert ok == pytest.approx(hand_ok, rel=1e-5)
        assert abs(bug - ok) > 1.0
        assert float(L.td_loss(*args, reference_broadcast_bug=True, reduction="mean")) == pytest.approx(hand_bug / 9)
        # the buggy loss is minimised at Q_i = mean_j r_j + gamma (1 - mean_j d_j) V_i: the batch-mean reward
        q_star = r.mean() + gamma * (1 - done.mean()) * v
        g_bug = jax.grad(lambda q: L.td_loss(q, *args[1:], reference_broadcast_bug=True))(jnp.asarray(q_star))
        g_ok = jax.grad(lambda q: L.td_loss(q, *args[1:]))(jnp.asarray(q_star))
        assert np.abs(np.asarray(g_bug)).max() < 1e-4
        assert np.abs(np.asarray(g_ok)).max() > 0.1

    @chex.variants(with_jit=True, without_jit=True)
    def test_td_target_gets_no_gradient(self):
        L = _Variant(self.variant)
        g = jax.grad(
            lambda q_t: L.td_loss(jnp.array([0.0]), jnp.array([1.0]), jnp.array([0.9]), q_t, jnp.array([[T, T]]))
        )(jnp.array([[1.0, 2.0]]))
        assert np.all(np.asarray(g) == 0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_cql_penalty_is_logsumexp_minus_data_q_with_duplicates(self):
        L = _Variant(self.variant)
        q = jnp.array([1.0, 1.0, 2.0, 9.0])
        mask = jnp.array([T, T, T, F])
        expected = math.log(2 * math.e + math.e**2) - 0.5  # duplicates kept, padding ignored
        assert float(L.cql_penalty(q, mask, 0.5)) == pytest.approx(expected, rel=1e-6)
        dedup = math.log(math.e + math.e**2) - 0.5
        assert float(L.cql_penalty(q, mask, 0.5)) != pytest.approx(dedup, rel=1e-3)
        batch_q = jnp.stack([q, jnp.array([0.0, 0.0, 0.0, 0.0])])
        batch_m = jnp.stack([mask, jnp.array([T, T, F, F])])
        second = math.log(2.0) - (-1.0)
        assert float(L.cql_loss(batch_q, batch_m, jnp.array([0.5, -1.0]))) == pytest.approx(
            5.0 * (expected + second) / 2, rel=1e-6
        )

    @chex.variants(with_jit=True, without_jit=True)
    def test_ppo_clip_loss_hand_values(self):
        L = _Variant(self.variant)
        lr = math.log(1.5)
        assert float(L.ppo_clip_loss(lr, 0.0, 2.0)) == pytest.approx(-2.4)  # min(3, 1.2*2)
        assert float(L.ppo_clip_loss(lr, 0.0, -2.0)) == pytest.approx(3.0)  # -min(-3, -2.4)
        assert float(L.ppo_clip_loss(math.log(0.5), 0.0, -2.0)) == pytest.approx(1.6)  # -min(-1, -1.6)
        assert float(L.ppo_clip_loss(0.0, 0.0, 1.0)) == pytest.approx(-1.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_value_loss_and_clipping(self):
        L = _Variant(self.variant)
        assert float(L.value_loss(2.0, 0.5)) == pytest.approx(2.25)
        # v moved from 0 to 2 with clip 0.5: clipped value 0.5 -> error 0 vs 2.25 unclipped; pessimistic max = 2.25
        assert float(L.value_loss(2.0, 0.5, 0.0, 0.5)) == pytest.approx(2.25)
        # v moved from 0 to -2, target 1: clipped -0.5 -> 2.25; unclipped 9 -> 9
        assert float(L.value_loss(-2.0, 1.0, 0.0, 0.5)) == pytest.approx(9.0)
        assert float(L.value_loss(0.2, 1.0, 0.0, 0.1)) == pytest.approx(0.81)  # clipped 0.1 -> 0.81 > 0.64

    @chex.variants(with_jit=True, without_jit=True)
    def test_entropy_and_kl_over_admissible_set(self):
        L = _Variant(self.variant)
        mask = jnp.array([T, T, T, F, F])
        logits = jnp.array([0.0, 0.0, 0.0, 5.0, -3.0])
        assert float(L.entropy(logits, mask)) == pytest.approx(math.log(3), rel=1e-6)
        prior = jnp.log(jnp.array([0.5, 0.25, 0.25, 1.0, 1.0]))
        expected = sum((1 / 3) * (math.log(1 / 3) - math.log(p)) for p in (0.5, 0.25, 0.25))
        assert float(L.kl_to_prior(logits, prior, mask)) == pytest.approx(expected, rel=1e-5)
        assert float(L.kl_to_prior(prior, prior, mask)) == pytest.approx(0.0, abs=1e-6)
        g = jax.grad(lambda lg: L.kl_to_prior(lg, jnp.where(mask, prior, -jnp.inf), mask) + L.entropy(lg, mask))(logits)
        assert np.all(np.isfinite(np.asarray(g)))

    @chex.variants(with_jit=True, without_jit=True)
    def test_ppo_loss_combines_terms(self):
        L = _Variant(self.variant)
        rng = np.random.default_rng(1)
        logits = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
        mask = jnp.asarray(rng.random((5, 4)) < 0.7).at[:, 0].set(True)
        a = jnp.zeros(5, jnp.int32)
        logp_old, adv = jnp.asarray(rng.normal(size=5) - 1.5), jnp.asarray(rng.normal(size=5))
        v, ret = jnp.asarray(rng.normal(size=5)), jnp.asarray(rng.normal(size=5))
        prior = jnp.log(jax.nn.softmax(jnp.asarray(rng.normal(size=(5, 4))), axis=-1))
        loss, m = L.ppo_loss(logits, mask, a, logp_old, adv, v, ret, prior, vf_coef=0.5, ent_coef=0.01, kl_coef=0.3)
        logp = L.masked_log_softmax(logits, mask)[:, 0]
        pg = np.mean(np.asarray(jax.vmap(losses.ppo_clip_loss)(logp, logp_old, adv)))
        ent = np.mean(np.asarray(jax.vmap(losses.entropy)(logits, mask)))
        kl = np.mean(np.asarray(jax.vmap(losses.kl_to_prior)(logits, prior, mask)))
        vl = np.mean((np.asarray(v) - np.asarray(ret)) ** 2)
        assert float(loss) == pytest.approx(pg + 0.5 * vl - 0.01 * ent + 0.3 * kl, rel=1e-5)
        assert float(m["kl_prior"]) == pytest.approx(kl, rel=1e-5)
        with pytest.raises(ValueError):
            L.ppo_loss(logits, mask, a, logp_old, adv, v, ret, None, kl_coef=0.3)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gae_matches_hand_recursion(self):
        L = _Variant(self.variant)
        r = np.array([1.0, 0.0, 2.0, -1.0], np.float32)
        disc = np.array([0.9, 0.9, 0.0, 0.9], np.float32)  # episode ends after step 2
        values = np.array([0.5, 0.2, -0.1, 0.3, 0.7], np.float32)
        lam = 0.8
        adv = np.zeros(4)
        running = 0.0
        for t in reversed(range(4)):
            delta = r[t] + disc[t] * values[t + 1] - values[t]
            running = delta + disc[t] * lam * running
            adv[t] = running
        got_adv, got_ret = L.generalized_advantage_estimation(
            jnp.asarray(r), jnp.asarray(disc), jnp.asarray(values), lam
        )
        np.testing.assert_allclose(np.asarray(got_adv), adv, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(got_ret), adv + values[:-1], rtol=1e-5)
        norm = L.normalize_advantages(got_adv)
        assert float(jnp.mean(norm)) == pytest.approx(0.0, abs=1e-6) and float(jnp.std(norm)) == pytest.approx(1, 1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_masked_q_learning_indexes_taken_action(self):
        L = _Variant(self.variant)
        err = L.masked_q_learning(
            jnp.array([0.1, 0.7, -0.3]), jnp.array(1), 1.0, 0.5, jnp.array([2.0, 4.0]), jnp.array([T, F])
        )
        assert float(err) == pytest.approx(1.0 + 0.5 * 2.0 - 0.7)

    # -- GAE with truncation ----------------------------------------------------------------------------------------
    @chex.variants(with_jit=True, without_jit=True)
    def test_gae_with_truncation_bit_identical_to_numpy(self):
        rng = np.random.default_rng(0)
        for T_, N in ((1, 1), (1, 4), (2, 3), (7, 1), (16, 8), (64, 5)):
            for gamma, lam in ((0.99, 0.95), (0.9, 0.8), (0.997, 1.0), (0.5, 0.0)):
                args = _random_rollout(rng, T_, N)
                want_adv, want_ret = _gae_reference(*args, gamma, lam)
                gae = self.variant(lambda *a: losses.gae_with_truncation(*a, gamma, lam))
                adv, ret = gae(*args)
                assert adv.dtype == ret.dtype == jnp.float32
                np.testing.assert_array_equal(_bits(adv), _bits(want_adv), err_msg=f"T={T_} N={N} {gamma} {lam}")
                np.testing.assert_array_equal(_bits(ret), _bits(want_ret), err_msg=f"T={T_} N={N} {gamma} {lam}")

    @chex.variants(with_jit=True, without_jit=True)
    def test_gae_with_truncation_inside_larger_programs(self):
        # fused into a bigger jitted computation (and vmapped over rollouts) it must still round like numpy
        rng = np.random.default_rng(1)
        rollouts = [_random_rollout(rng, 12, 4, 0.2, 0.2) for _ in range(3)]
        stacked = [np.stack(x) for x in zip(*rollouts)]

        def program(*a):
            adv, ret = jax.vmap(lambda *b: losses.gae_with_truncation(*b, 0.99, 0.95))(*a)
            return adv, ret, losses.normalize_advantages(adv)

        adv, ret, _ = self.variant(program)(*stacked)
        for i, args in enumerate(rollouts):
            want_adv, want_ret = _gae_reference(*args, 0.99, 0.95)
            np.testing.assert_array_equal(_bits(adv[i]), _bits(want_adv))
            np.testing.assert_array_equal(_bits(ret[i]), _bits(want_ret))

    @chex.variants(with_jit=True, without_jit=True)
    def test_gae_with_truncation_semantics(self):
        L = _Variant(self.variant)
        gamma, lam = 0.9, 0.5
        r = np.array([[1.0], [2.0], [3.0]], np.float32)
        v = np.array([[0.5], [0.25], [-1.0]], np.float32)
        nv = np.array([[0.0], [4.0], [0.0]], np.float32)
        last = np.array([2.0], np.float32)
        no = np.zeros((3, 1), bool)
        # truncated at t = 1: bootstrap from V(final obs) = 4, and A[1] does not see A[2] (a new episode)
        trunc = no.copy()
        trunc[1] = True
        adv, ret = L.gae_with_truncation(r, no, trunc, v, nv, last, gamma, lam)
        a2 = 3.0 + gamma * 2.0 - (-1.0)
        a1 = 2.0 + gamma * 4.0 - 0.25
        a0 = 1.0 + gamma * 0.25 - 0.5 + gamma * lam * a1
        np.testing.assert_allclose(np.asarray(adv)[:, 0], [a0, a1, a2], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(ret), np.asarray(adv) + v, rtol=1e-6)
        # terminated and truncated at once: the termination wins (no bootstrap)
        term = trunc.copy()
        adv_t, _ = L.gae_with_truncation(r, term, trunc, v, nv, last, gamma, lam)
        assert float(adv_t[1, 0]) == pytest.approx(2.0 - 0.25)
        # no boundary in a single env: the plain GAE over values + [V(s_T)]
        adv_n, _ = L.gae_with_truncation(r, no, no, v, nv, last, gamma, lam)
        plain, _ = L.generalized_advantage_estimation(
            r[:, 0], np.full(3, gamma, np.float32), np.append(v[:, 0], last), lam
        )
        np.testing.assert_allclose(np.asarray(adv_n)[:, 0], np.asarray(plain), rtol=1e-6, atol=1e-6)

    # -- argument checks --------------------------------------------------------------------------------------------
    @chex.variants(with_jit=True, without_jit=True)
    def test_wrong_shapes_raise_readable_assertions(self):
        L = _Variant(self.variant)
        B, k = 3, 4
        q_a, r, disc = jnp.zeros(B), jnp.zeros(B), jnp.ones(B)
        q_t, m = jnp.zeros((B, k)), jnp.ones((B, k), bool)
        with pytest.raises(
            AssertionError,
            match=r"td_loss: r_t has shape \(4,\), expected \[B\] with B = 3 from "
            r"q_tm1_a",
        ):
            L.td_loss(q_a, jnp.zeros(4), disc, q_t, m)
        with pytest.raises(AssertionError, match=r"td_loss: q_t should be \[B, k\], got shape \(3,\)"):
            L.td_loss(q_a, r, disc, jnp.zeros(B), m)
        with pytest.raises(
            AssertionError,
            match=r"td_loss: mask_t has shape \(3, 5\), expected \[B, k\] with "
            r"B = 3 from q_tm1_a, k = 4 from q_t",
        ):
            L.td_loss(q_a, r, disc, q_t, jnp.ones((B, 5), bool))
        with pytest.raises(AssertionError, match=r"td_loss: q_tm1_a should have a floating-point dtype, got int32"):
            L.td_loss(jnp.zeros(B, jnp.int32), r, disc, q_t, m)
        with pytest.raises(AssertionError, match=r"cql_loss: q_tm1_a has shape \(2,\)"):
            L.cql_loss(q_t, m, jnp.zeros(2))
        with pytest.raises(AssertionError, match=r"prior_td_target: r_t should be \[\], got shape \(3,\)"):
            L.prior_td_target(r, 0.9, q_t[0], m[0])
        with pytest.raises(AssertionError, match=r"masked_q_learning: a_tm1 should have an integer dtype"):
            L.masked_q_learning(q_t[0], 1.0, 0.0, 0.9, q_t[0], m[0])
        with pytest.raises(AssertionError, match=r"ppo_loss: a_t has shape \(2,\)"):
            L.ppo_loss(q_t, m, jnp.zeros(2, jnp.int32), r, r, r, r)
        with pytest.raises(AssertionError, match=r"ppo_loss: prior_logp has shape \(3, 2\)"):
            L.ppo_loss(q_t, m, jnp.zeros(B, jnp.int32), r, r, r, r, jnp.zeros((B, 2)), kl_coef=0.1)
        with pytest.raises(AssertionError, match=r"kl_to_prior: prior_logp has shape \(5,\)"):
            L.kl_to_prior(q_t[0], jnp.zeros(5), m[0])
        with pytest.raises(AssertionError, match=r"generalized_advantage_estimation: values should be \[T \+ 1\]"):
            L.generalized_advantage_estimation(r, disc, jnp.zeros(B), 0.9)
        rollout = _random_rollout(np.random.default_rng(0), 5, 2)
        with pytest.raises(
            AssertionError,
            match=r"gae_with_truncation: last_values has shape \(3,\), expected \[N\] "
            r"with N = 2 from rewards",
        ):
            L.gae_with_truncation(*rollout[:5], np.zeros(3, np.float32), 0.99, 0.95)
        with pytest.raises(AssertionError, match=r"gae_with_truncation: terminated should have a bool dtype"):
            L.gae_with_truncation(rollout[0], rollout[1].astype(np.float32), *rollout[2:], 0.99, 0.95)
        # every message carries chex's prefix and the failing check
        with pytest.raises(AssertionError, match=r"\[Chex\] Assertion assert_rank failed"):
            L.entropy(q_t, m[0])
