"""Losses against hand-computed numbers (method.md §2.3–§2.5, §3.8)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prior_rl import losses

T, F = True, False


def test_prior_td_target_max_over_valid_candidates():
    # max over the valid candidates {1, 3} = 3; the padded 100 must be ignored
    y = losses.prior_td_target(1.0, 0.99, jnp.array([1.0, 3.0, 100.0]), jnp.array([T, T, F]))
    assert float(y) == pytest.approx(1.0 + 0.99 * 3.0)
    # terminal transition: discount 0 -> reward only
    assert float(losses.prior_td_target(0.5, 0.0, jnp.array([7.0, 9.0]), jnp.array([T, T]))) == pytest.approx(0.5)
    # no valid candidate -> no bootstrap
    assert float(losses.prior_td_target(0.5, 0.99, jnp.array([7.0, 9.0]), jnp.array([F, F]))) == pytest.approx(0.5)


def test_soft_target_masked_mean_and_duplicates():
    alpha = 0.5
    q, mask = jnp.array([1.0, 2.0, 50.0]), jnp.array([T, T, F])
    expected = 0.2 + 0.9 * alpha * math.log((math.exp(1.0 / alpha) + math.exp(2.0 / alpha)) / 2)
    assert float(losses.soft_prior_td_target(0.2, 0.9, q, mask, alpha)) == pytest.approx(expected, rel=1e-6)
    # a duplicated candidate counts twice: mean over {1, 1, 2}, not over {1, 2}
    dup = losses.soft_prior_td_target(0.2, 0.9, jnp.array([1.0, 1.0, 2.0]), jnp.array([T, T, T]), alpha)
    expected_dup = 0.2 + 0.9 * alpha * math.log((2 * math.exp(1.0 / alpha) + math.exp(2.0 / alpha)) / 3)
    assert float(dup) == pytest.approx(expected_dup, rel=1e-6)
    assert float(dup) != pytest.approx(expected, rel=1e-3)
    # small alpha -> the max backup
    small = losses.soft_prior_td_target(0.2, 0.9, q, mask, 1e-3)
    assert float(small) == pytest.approx(float(losses.prior_td_target(0.2, 0.9, q, mask)), abs=1e-2)


def test_padding_values_do_not_change_any_loss():
    rng = np.random.default_rng(0)
    q_t = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    mask = jnp.asarray(rng.random((4, 6)) < 0.6).at[:, 0].set(True)
    q_junk = jnp.where(mask, q_t, 1e3)
    args = (jnp.arange(4.0), jnp.ones(4), jnp.full(4, 0.9))
    for soft in (None, 0.3):
        a = losses.td_loss(args[0], args[1], args[2], q_t, mask, soft_alpha=soft)
        b = losses.td_loss(args[0], args[1], args[2], q_junk, mask, soft_alpha=soft)
        assert float(a) == pytest.approx(float(b), rel=1e-6)
    assert float(losses.cql_loss(q_t, mask, args[0])) == pytest.approx(float(losses.cql_loss(q_junk, mask, args[0])))
    logits = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    prior = jnp.log(jnp.full((4, 6), 1 / 6))
    junk_logits, junk_prior = jnp.where(mask, logits, -7.0), jnp.where(mask, prior, -jnp.inf)
    for fn in (lambda l, p: losses.entropy(l, mask[0]), lambda l, p: losses.kl_to_prior(l, p, mask[0])):
        assert float(fn(logits[0], prior[0])) == pytest.approx(float(fn(junk_logits[0], junk_prior[0])), rel=1e-6)


def test_td_loss_sum_and_mean_hand_computed():
    q_a = jnp.array([1.0, 0.0])
    r = jnp.array([0.5, -1.0])
    disc = jnp.array([0.9, 0.0])
    q_t = jnp.array([[2.0, 1.0], [5.0, 6.0]])
    mask = jnp.array([[T, T], [T, T]])
    # y = [0.5 + 0.9*2, -1] = [2.3, -1]; errors [1.3, -1]
    assert float(losses.td_loss(q_a, r, disc, q_t, mask)) == pytest.approx(1.3**2 + 1.0, rel=1e-6)
    assert float(losses.td_loss(q_a, r, disc, q_t, mask, reduction="mean")) == pytest.approx((1.3**2 + 1) / 2)


def test_reference_broadcast_bug_differs_and_matches_hand_computed_bxb():
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
    bug = float(losses.td_loss(*args, reference_broadcast_bug=True))
    ok = float(losses.td_loss(*args))
    assert bug == pytest.approx(hand_bug, rel=1e-5)
    assert ok == pytest.approx(hand_ok, rel=1e-5)
    assert abs(bug - ok) > 1.0
    assert float(losses.td_loss(*args, reference_broadcast_bug=True, reduction="mean")) == pytest.approx(hand_bug / 9)
    # the buggy loss is minimised at Q_i = mean_j r_j + gamma (1 - mean_j d_j) V_i: the batch-mean reward
    q_star = r.mean() + gamma * (1 - done.mean()) * v
    g_bug = jax.grad(lambda q: losses.td_loss(q, *args[1:], reference_broadcast_bug=True))(jnp.asarray(q_star))
    g_ok = jax.grad(lambda q: losses.td_loss(q, *args[1:]))(jnp.asarray(q_star))
    assert np.abs(np.asarray(g_bug)).max() < 1e-4
    assert np.abs(np.asarray(g_ok)).max() > 0.1


def test_td_target_gets_no_gradient():
    g = jax.grad(lambda q_t: losses.td_loss(jnp.array([0.0]), jnp.array([1.0]), jnp.array([0.9]), q_t,
                                            jnp.array([[T, T]])))(jnp.array([[1.0, 2.0]]))
    assert np.all(np.asarray(g) == 0)


def test_cql_penalty_is_logsumexp_minus_data_q_with_duplicates():
    q = jnp.array([1.0, 1.0, 2.0, 9.0])
    mask = jnp.array([T, T, T, F])
    expected = math.log(2 * math.e + math.e**2) - 0.5  # duplicates kept, padding ignored
    assert float(losses.cql_penalty(q, mask, 0.5)) == pytest.approx(expected, rel=1e-6)
    dedup = math.log(math.e + math.e**2) - 0.5
    assert float(losses.cql_penalty(q, mask, 0.5)) != pytest.approx(dedup, rel=1e-3)
    batch_q = jnp.stack([q, jnp.array([0.0, 0.0, 0.0, 0.0])])
    batch_m = jnp.stack([mask, jnp.array([T, T, F, F])])
    second = math.log(2.0) - (-1.0)
    assert float(losses.cql_loss(batch_q, batch_m, jnp.array([0.5, -1.0]))) == pytest.approx(
        5.0 * (expected + second) / 2, rel=1e-6)


def test_ppo_clip_loss_hand_values():
    lr = math.log(1.5)
    assert float(losses.ppo_clip_loss(lr, 0.0, 2.0)) == pytest.approx(-2.4)  # min(3, 1.2*2)
    assert float(losses.ppo_clip_loss(lr, 0.0, -2.0)) == pytest.approx(3.0)  # -min(-3, -2.4)
    assert float(losses.ppo_clip_loss(math.log(0.5), 0.0, -2.0)) == pytest.approx(1.6)  # -min(-1, -1.6)
    assert float(losses.ppo_clip_loss(0.0, 0.0, 1.0)) == pytest.approx(-1.0)


def test_value_loss_and_clipping():
    assert float(losses.value_loss(2.0, 0.5)) == pytest.approx(2.25)
    # v moved from 0 to 2 with clip 0.5: clipped value 0.5 -> error 0 vs 2.25 unclipped; pessimistic max = 2.25
    assert float(losses.value_loss(2.0, 0.5, 0.0, 0.5)) == pytest.approx(2.25)
    # v moved from 0 to -2, target 1: clipped -0.5 -> 2.25; unclipped 9 -> 9
    assert float(losses.value_loss(-2.0, 1.0, 0.0, 0.5)) == pytest.approx(9.0)
    assert float(losses.value_loss(0.2, 1.0, 0.0, 0.1)) == pytest.approx(0.81)  # clipped 0.1 -> 0.81 > 0.64


def test_entropy_and_kl_over_admissible_set():
    mask = jnp.array([T, T, T, F, F])
    logits = jnp.array([0.0, 0.0, 0.0, 5.0, -3.0])
    assert float(losses.entropy(logits, mask)) == pytest.approx(math.log(3), rel=1e-6)
    prior = jnp.log(jnp.array([0.5, 0.25, 0.25, 1.0, 1.0]))
    expected = sum((1 / 3) * (math.log(1 / 3) - math.log(p)) for p in (0.5, 0.25, 0.25))
    assert float(losses.kl_to_prior(logits, prior, mask)) == pytest.approx(expected, rel=1e-5)
    assert float(losses.kl_to_prior(prior, prior, mask)) == pytest.approx(0.0, abs=1e-6)
    g = jax.grad(lambda l: losses.kl_to_prior(l, jnp.where(mask, prior, -jnp.inf), mask)
                 + losses.entropy(l, mask))(logits)
    assert np.all(np.isfinite(np.asarray(g)))


def test_ppo_loss_combines_terms():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    mask = jnp.asarray(rng.random((5, 4)) < 0.7).at[:, 0].set(True)
    a = jnp.zeros(5, jnp.int32)
    logp_old, adv = jnp.asarray(rng.normal(size=5) - 1.5), jnp.asarray(rng.normal(size=5))
    v, ret = jnp.asarray(rng.normal(size=5)), jnp.asarray(rng.normal(size=5))
    prior = jnp.log(jax.nn.softmax(jnp.asarray(rng.normal(size=(5, 4))), axis=-1))
    loss, m = losses.ppo_loss(logits, mask, a, logp_old, adv, v, ret, prior, vf_coef=0.5, ent_coef=0.01, kl_coef=0.3)
    logp = losses.masked_log_softmax(logits, mask)[:, 0]
    pg = np.mean(np.asarray(jax.vmap(losses.ppo_clip_loss)(logp, logp_old, adv)))
    ent = np.mean(np.asarray(jax.vmap(losses.entropy)(logits, mask)))
    kl = np.mean(np.asarray(jax.vmap(losses.kl_to_prior)(logits, prior, mask)))
    vl = np.mean((np.asarray(v) - np.asarray(ret)) ** 2)
    assert float(loss) == pytest.approx(pg + 0.5 * vl - 0.01 * ent + 0.3 * kl, rel=1e-5)
    assert float(m["kl_prior"]) == pytest.approx(kl, rel=1e-5)
    with pytest.raises(ValueError):
        losses.ppo_loss(logits, mask, a, logp_old, adv, v, ret, None, kl_coef=0.3)


def test_gae_matches_hand_recursion():
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
    got_adv, got_ret = losses.generalized_advantage_estimation(jnp.asarray(r), jnp.asarray(disc),
                                                               jnp.asarray(values), lam)
    np.testing.assert_allclose(np.asarray(got_adv), adv, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got_ret), adv + values[:-1], rtol=1e-5)
    norm = losses.normalize_advantages(got_adv)
    assert float(jnp.mean(norm)) == pytest.approx(0.0, abs=1e-6) and float(jnp.std(norm)) == pytest.approx(1, 1e-4)


def test_masked_q_learning_indexes_taken_action():
    err = losses.masked_q_learning(jnp.array([0.1, 0.7, -0.3]), jnp.array(1), 1.0, 0.5,
                                   jnp.array([2.0, 4.0]), jnp.array([T, F]))
    assert float(err) == pytest.approx(1.0 + 0.5 * 2.0 - 0.7)
