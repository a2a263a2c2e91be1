"""Agents: action selection, target updates, compiled multi-update steps, and small learning sanity checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prior_rl import agents, losses
from prior_rl.replay import IndexedTransition, Transition, materialize

T, F = True, False


def random_batches(rng, U, B, k, D):
    r = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
    mask = lambda: jnp.asarray(rng.random((U, B, k)) < 0.8).at[..., 0].set(True)
    return Transition(
        r(U, B, D),
        r(U, B, k, D),
        mask(),
        r(U, B),
        jnp.asarray(rng.random((U, B)) < 0.8, jnp.float32),
        r(U, B, k, D),
        mask(),
    )


# -- action selection -------------------------------------------------------------------------------------------
def test_boltzmann_frequencies_with_duplicates_follow_prior_times_exp_q():
    # slots: a, a, b, c, padding -> p_hat = (1/2, 1/4, 1/4); action prob ∝ p_hat(a) exp(beta Q(a))
    q = jnp.array([0.1, 0.1, 0.3, -0.2, 5.0])
    mask = jnp.array([T, T, T, T, F])
    beta, n = 10.0, 40000
    idx = agents.select_action(
        jax.random.key(0), jnp.broadcast_to(q, (n, 5)), jnp.broadcast_to(mask, (n, 5)), 0.0, beta
    )
    action = np.array([0, 0, 1, 2, -1])[np.asarray(idx)]
    assert not np.any(action == -1)
    p_hat = np.array([0.5, 0.25, 0.25])
    qa = np.array([0.1, 0.3, -0.2])
    expected = p_hat * np.exp(beta * qa)
    expected /= expected.sum()
    freq = np.bincount(action, minlength=3) / n
    np.testing.assert_allclose(freq, expected, atol=0.01)


def test_epsilon_greedy_and_greedy_selection():
    q = jnp.array([0.5, 0.9, 0.9, 0.1, 9.0])
    mask = jnp.array([T, T, T, T, F])
    # greedy: first of the tied maxima, padding never chosen
    assert int(agents.select_action(jax.random.key(1), q, mask)) == 1
    n = 20000
    idx = np.asarray(
        agents.select_action(jax.random.key(2), jnp.broadcast_to(q, (n, 5)), jnp.broadcast_to(mask, (n, 5)), 1.0)
    )
    np.testing.assert_allclose(np.bincount(idx, minlength=5) / n, [0.25, 0.25, 0.25, 0.25, 0.0], atol=0.015)
    idx = np.asarray(
        agents.select_action(jax.random.key(3), jnp.broadcast_to(q, (n, 5)), jnp.broadcast_to(mask, (n, 5)), 0.2)
    )
    np.testing.assert_allclose(np.bincount(idx, minlength=5) / n, [0.05, 0.85, 0.05, 0.05, 0.0], atol=0.015)


def test_q_agent_act_scores_candidate_features():
    agent = agents.make_dqn_prior()
    state = agent.init(jax.random.key(0), 6)
    feats = jax.random.normal(jax.random.key(1), (3, 4, 6))
    mask = jnp.array([[T, T, T, T], [T, F, F, F], [F, T, T, F]])
    q = agent.network.apply(state.params, feats)
    assert q.shape == (3, 4)
    got = np.asarray(agent.act(state, jax.random.key(2), feats, mask))
    want = np.asarray(jnp.argmax(jnp.where(mask, q, -1e9), axis=-1))
    np.testing.assert_array_equal(got, want)


# -- target networks --------------------------------------------------------------------------------------------
def test_polyak_target_update():
    agent = agents.make_dqn_prior(tau=0.1)
    s0 = agent.init(jax.random.key(0), 8)
    for a, b in zip(jax.tree.leaves(s0.params), jax.tree.leaves(s0.target_params)):
        np.testing.assert_array_equal(a, b)  # target starts as a copy
    s1, _ = agent.update(s0, random_batches(np.random.default_rng(0), 1, 16, 3, 8))
    for t0, t1, p1 in zip(
        jax.tree.leaves(s0.target_params), jax.tree.leaves(s1.target_params), jax.tree.leaves(s1.params)
    ):
        np.testing.assert_allclose(t1, 0.9 * t0 + 0.1 * p1, rtol=1e-6, atol=1e-7)
    assert int(s1.step) == 1
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s1.target_params)))


def test_hard_target_update_every_period():
    agent = agents.make_dqn(target_update="hard", target_period=3)
    state = agent.init(jax.random.key(0), 8)
    init_target = jax.tree.leaves(state.target_params)
    batches = random_batches(np.random.default_rng(1), 5, 16, 3, 8)
    history = []
    for i in range(5):
        state, _ = agent.update(state, jax.tree.map(lambda x: x[i : i + 1], batches))
        history.append((jax.tree.leaves(state.params), jax.tree.leaves(state.target_params)))
    for step in (1, 2):  # before the first copy: the initial target
        for a, b in zip(history[step - 1][1], init_target):
            np.testing.assert_array_equal(a, b)
    for step in (3, 4, 5):  # copied at step 3, frozen after
        for a, b in zip(history[step - 1][1], history[2][0]):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(history[4][0][0], history[4][1][0])


def _random_tree(rng, scale=1.0):
    f = lambda *s: jnp.asarray(scale * rng.normal(size=s), jnp.float32)
    return {"dense_0": {"kernel": f(7, 5), "bias": f(5)}, "dense_1": {"kernel": f(5, 3), "bias": f(3)}, "w": f(11)}


@pytest.mark.parametrize("jit", [False, True])
def test_target_updates_and_apply_updates_are_bit_identical_to_the_hand_written_forms(jit):
    """The pinned-metrics test compares whole runs bit for bit, so the optax-based helpers must round exactly like
    the expressions they replaced (under jit too, where XLA fuses the arithmetic)."""
    import optax

    from prior_rl.agents import common

    wrap = jax.jit if jit else (lambda f, **kw: f)
    rng = np.random.default_rng(0)
    for trial in range(5):
        target, online, updates = _random_tree(rng), _random_tree(rng), _random_tree(rng, 1e-3)
        for tau in (0.005, 0.1, 0.37, 1.0):
            got = wrap(lambda t, o: agents.polyak_update(t, o, tau))(target, online)
            want = wrap(lambda t, o: jax.tree.map(lambda a, b: (1.0 - tau) * a + tau * b, t, o))(target, online)
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                np.testing.assert_array_equal(np.asarray(g).view(np.uint32), np.asarray(w).view(np.uint32))
        for step in range(7):
            got = wrap(lambda t, o, s: agents.periodic_hard_update(t, o, s, 3))(target, online, jnp.int32(step))
            src = online if step % 3 == 0 else target  # copies when the step count (this one included) hits 3·j
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(src)):
                np.testing.assert_array_equal(np.asarray(g).view(np.uint32), np.asarray(w).view(np.uint32))
        got = wrap(optax.apply_updates)(online, updates)
        want = wrap(lambda p, u: jax.tree.map(lambda a, b: a + b, p, u))(online, updates)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert g.dtype == w.dtype == jnp.float32
            np.testing.assert_array_equal(np.asarray(g).view(np.uint32), np.asarray(w).view(np.uint32))
    assert common.polyak_update is agents.polyak_update


# -- argument checks --------------------------------------------------------------------------------------------
def test_q_agent_rejects_malformed_inputs_with_readable_messages():
    agent = agents.make_dqn_prior()
    state = agent.init(jax.random.key(0), 8)
    feats, mask = jnp.zeros((3, 4, 8)), jnp.ones((3, 4), bool)
    with pytest.raises(AssertionError, match=r"act: cand_mask should be \[\.\.\., k\] = \(3, 4\)"):
        agent.act(state, jax.random.key(1), feats, jnp.ones((3, 5), bool))
    with pytest.raises(AssertionError, match=r"act: cand_feat should have a floating-point dtype"):
        agent.act(state, jax.random.key(1), jnp.zeros((3, 4, 8), jnp.int32), mask)
    with pytest.raises(
        AssertionError,
        match=r"act: cand_feat has feature size D = 6 but the network was "
        r"initialised with D = 8",
    ):
        agent.act(state, jax.random.key(1), jnp.zeros((3, 4, 6)), mask)
    good = random_batches(np.random.default_rng(0), 2, 16, 3, 8)
    with pytest.raises(
        AssertionError,
        match=r"update: reward has shape \(2, 15\), expected \[U, B\] with U = 2 "
        r"from obs_feat, B = 16 from obs_feat",
    ):
        agent.update(state, good._replace(reward=good.reward[:, :15]))
    with pytest.raises(AssertionError, match=r"update: next_mask has shape \(2, 16, 2\)"):
        agent.update(state, good._replace(next_mask=good.next_mask[..., :2]))
    with pytest.raises(AssertionError, match=r"update: obs_feat should have a floating-point dtype"):
        agent.update(state, good._replace(obs_feat=good.obs_feat.astype(jnp.int32)))
    one = jax.tree.map(lambda x: x[0], good)
    with pytest.raises(AssertionError, match=r"loss: cand_feat has shape \(15, 3, 8\)"):
        agent.update_step(state, one._replace(cand_feat=one.cand_feat[:15]))
    with pytest.raises(AssertionError, match=r"update: table should have a floating-point dtype"):
        rows = jnp.zeros((2, 16), jnp.int32)
        agent.update(
            state,
            IndexedTransition(
                rows,
                jnp.zeros((2, 16, 3), jnp.int32),
                good.cand_mask,
                good.reward,
                good.discount,
                jnp.zeros((2, 16, 3), jnp.int32),
                good.next_mask,
            ),
            jnp.zeros((5, 8), jnp.int32),
        )
    agent.update(state, good)  # the well-formed batch passes


def test_ppo_agent_rejects_malformed_inputs_with_readable_messages():
    agent = agents.make_ppo_prior()
    state = agent.init(jax.random.key(0), 5, 3)
    feats, mask, prior = jnp.zeros((4, 3, 5)), jnp.ones((4, 3), bool), jnp.full((4, 3), -1.1)
    with pytest.raises(AssertionError, match=r"act: prior_logp should have act_mask's shape"):
        agent.act(state, jax.random.key(1), feats, mask, prior[:, :2])
    with pytest.raises(AssertionError, match=r"act: act_mask should be"):
        agent.act(state, jax.random.key(1), feats, mask[:3], prior)
    f = lambda *s: jnp.zeros(s, jnp.float32)
    batch = agents.PPOBatch(
        f(2, 8, 3, 5),
        jnp.ones((2, 8, 3), bool),
        jnp.zeros((2, 8), jnp.int32),
        f(2, 8),
        f(2, 8),
        f(2, 8),
        f(2, 8),
        f(2, 8, 3),
    )
    with pytest.raises(AssertionError, match=r"update: action should have an integer dtype"):
        agent.update(state, batch._replace(action=batch.action.astype(jnp.float32)))
    with pytest.raises(AssertionError, match=r"update: advantage has shape \(2, 7\)"):
        agent.update(state, batch._replace(advantage=batch.advantage[:, :7]))
    with pytest.raises(AssertionError, match=r"update: act_feat should be \[U, B, n\]"):  # rows with a table
        agent.update(state, batch, jnp.zeros((10, 5)))
    agent.update(state, batch)


# -- the compiled multi-update step -----------------------------------------------------------------------------
def test_scan_update_equals_sequential_steps_and_compiles_once():
    agent = agents.make_cql_prior()
    state = agent.init(jax.random.key(0), 8)
    batches = random_batches(np.random.default_rng(2), 4, 16, 5, 8)
    scanned, metrics = agent.update(state, batches)
    assert metrics["loss"].shape == (4,) and metrics["cql"].shape == (4,)
    seq = state
    step = jax.jit(agent.update_step)
    for i in range(4):
        seq, _ = step(seq, jax.tree.map(lambda x: x[i], batches))
    for a, b in zip(jax.tree.leaves(scanned), jax.tree.leaves(seq)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    agent.update(scanned, batches)
    assert agent.update._cache_size() == 1


def test_update_with_feature_table_equals_materialized_batches():
    rng = np.random.default_rng(4)
    table = jnp.asarray(rng.normal(size=(30, 8)), jnp.float32)
    U, B, k = 3, 16, 4
    rows = lambda *s: jnp.asarray(rng.integers(0, 30, s), jnp.int32)
    indexed = IndexedTransition(
        rows(U, B),
        rows(U, B, k),
        jnp.asarray(rng.random((U, B, k)) < 0.8).at[..., 0].set(T),
        jnp.asarray(rng.normal(size=(U, B)), jnp.float32),
        jnp.ones((U, B)),
        rows(U, B, k),
        jnp.ones((U, B, k), bool),
    )
    agent = agents.make_cql_prior()
    state = agent.init(jax.random.key(0), 8)
    a, ma = agent.update(state, indexed, table)
    b, mb = agent.update(state, materialize(indexed, table))
    for x, y in zip(jax.tree.leaves((a, ma)), jax.tree.leaves((b, mb))):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    # PPO: act_feat as rows into the table
    ppo = agents.make_ppo_prior()
    ps = ppo.init(jax.random.key(0), 8, k)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
    pb = agents.PPOBatch(
        rows(U, B, k),
        jnp.ones((U, B, k), bool),
        jnp.zeros((U, B), jnp.int32),
        f(U, B) - 1,
        f(U, B),
        f(U, B),
        f(U, B),
        jax.nn.log_softmax(f(U, B, k)),
    )
    a, _ = ppo.update(ps, pb, table)
    b, _ = ppo.update(ps, pb._replace(act_feat=table[pb.act_feat]))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_one_hot_rows_network_equals_dense_on_the_one_hot_table():
    """QConfig(num_rows=N) with [N, 1] row-id features is the dense agent on eye(N): same init, Q and updates."""
    rng = np.random.default_rng(5)
    N, U, B, k = 12, 3, 8, 4
    rows = lambda *s: jnp.asarray(rng.integers(0, N, s), jnp.int32)
    indexed = IndexedTransition(
        rows(U, B),
        rows(U, B, k),
        jnp.ones((U, B, k), bool),
        jnp.asarray(rng.normal(size=(U, B)), jnp.float32),
        jnp.ones((U, B)),
        rows(U, B, k),
        jnp.asarray(rng.random((U, B, k)) < 0.7).at[..., 0].set(T),
    )
    dense = agents.make_dqn_prior()
    one_hot = agents.make_dqn_prior(num_rows=N)
    ids = jnp.arange(N, dtype=jnp.float32)[:, None]
    s_dense = dense.init(jax.random.key(0), N)
    s_hot = one_hot.init(jax.random.key(0), 1)
    # the same draws: the one-hot kernel is the dense kernel (fan_in N), row by row
    p_dense, p_hot = s_dense.params["params"], s_hot.params["params"]
    np.testing.assert_array_equal(p_hot["one_hot_kernel"].shape, p_dense["mlp"]["dense_0"]["kernel"].shape)
    copy = {"one_hot_kernel": p_dense["mlp"]["dense_0"]["kernel"], "one_hot_bias": p_dense["mlp"]["dense_0"]["bias"]}
    copy["mlp"] = {f"dense_{i}": p_dense["mlp"][f"dense_{i + 1}"] for i in range(2)}
    s_hot = s_hot._replace(
        params={"params": copy},
        target_params={"params": copy},
        opt_state=one_hot.init(jax.random.key(0), 1).opt_state,
    )
    s_hot = s_hot._replace(opt_state=jax.tree.map(jnp.zeros_like, s_hot.opt_state))
    s_dense = s_dense._replace(opt_state=jax.tree.map(jnp.zeros_like, s_dense.opt_state))
    eye = jnp.eye(N, dtype=jnp.float32)
    np.testing.assert_allclose(
        one_hot.network.apply(s_hot.params, ids), dense.network.apply(s_dense.params, eye), rtol=1e-6, atol=1e-7
    )
    a, ma = one_hot.update(s_hot, indexed, ids)
    b, mb = dense.update(s_dense, indexed, eye)
    np.testing.assert_allclose(ma["td_loss"], mb["td_loss"], rtol=1e-5)
    np.testing.assert_allclose(
        one_hot.network.apply(a.params, ids), dense.network.apply(b.params, eye), rtol=1e-5, atol=1e-6
    )
    cand = rows(5, k)
    slot = one_hot.act(a, jax.random.key(1), ids[cand], jnp.ones((5, k), bool))
    np.testing.assert_array_equal(slot, dense.act(b, jax.random.key(1), eye[cand], jnp.ones((5, k), bool)))


def test_cql_loss_composition_matches_losses_module():
    agent = agents.make_cql_prior()
    state = agent.init(jax.random.key(0), 8)
    batch = jax.tree.map(lambda x: x[0], random_batches(np.random.default_rng(3), 1, 16, 5, 8))
    total, m = agent.loss(state.params, state, batch)
    apply = agent.network.apply
    q_a = apply(state.params, batch.obs_feat)
    td = losses.td_loss(
        q_a, batch.reward, 0.99 * batch.discount, apply(state.target_params, batch.next_cand_feat), batch.next_mask
    )
    cql = losses.cql_loss(apply(state.params, batch.cand_feat), batch.cand_mask, q_a, 5.0)
    assert float(total) == pytest.approx(float(0.5 * td + cql), rel=1e-5)
    bug_agent = agents.make_cql_prior(reference_broadcast_bug=True)
    assert float(bug_agent.loss(state.params, state, batch)[0]) != pytest.approx(float(total), rel=1e-3)


# -- learning sanity --------------------------------------------------------------------------------------------
def test_dqn_learns_two_state_mdp_that_needs_bootstrapping():
    """s0: a0 -> r 0, go to s1; a1 -> r 0.5, end.   s1: a0 -> r 1, end; a1 -> r 0, go to s0.   γ = 0.9.
    Q*(s0) = (0.9, 0.5), Q*(s1) = (1.0, 0.81): the right choice in s0 needs the bootstrap through s1."""
    D = 16
    feat = np.random.default_rng(0).normal(size=(2, 2, D)).astype(np.float32)  # φ(s, a): random features
    table = [(0, 0, 0.0, 1.0, 1), (0, 1, 0.5, 0.0, 0), (1, 0, 1.0, 0.0, 0), (1, 1, 0.0, 1.0, 0)]  # s,a,r,disc,s'
    trans = Transition(
        jnp.asarray(np.stack([feat[s, a] for s, a, *_ in table])),
        jnp.asarray(np.stack([feat[s] for s, *_ in table])),
        jnp.ones((4, 2), bool),
        jnp.asarray([t[2] for t in table], jnp.float32),
        jnp.asarray([t[3] for t in table], jnp.float32),
        jnp.asarray(np.stack([feat[t[4]] for t in table])),
        jnp.ones((4, 2), bool),
    )
    agent = agents.make_dqn_prior(gamma=0.9, learning_rate=3e-3, tau=0.05, td_reduction="mean")
    state = agent.init(jax.random.key(0), D)
    idx = jax.random.randint(jax.random.key(1), (600, 32), 0, 4)
    state, metrics = agent.update(state, jax.tree.map(lambda x: x[idx], trans))
    q = np.asarray(agent.network.apply(state.params, jnp.asarray(feat)))
    np.testing.assert_allclose(q, [[0.9, 0.5], [1.0, 0.81]], atol=0.05)
    greedy = np.asarray(agent.act(state, jax.random.key(2), jnp.asarray(feat), jnp.ones((2, 2), bool)))
    np.testing.assert_array_equal(greedy, [0, 0])
    assert float(metrics["td_loss"][-1]) < 1e-3 < float(metrics["td_loss"][0])


def test_ppo_prior_starts_at_prior_and_learns_bandit():
    D, n, B = 8, 4, 64
    feats = jnp.asarray(np.random.default_rng(0).normal(size=(n, D)), jnp.float32)
    prior = jnp.log(jnp.array([0.4, 0.3, 0.2, 0.1]))
    mask = jnp.ones(n, bool)
    agent = agents.make_ppo_prior(kl_coef=0.01, learning_rate=3e-3)
    state = agent.init(jax.random.key(0), D, n)
    logits, _ = agent.network.apply(state.params, feats, mask, prior)
    np.testing.assert_allclose(jax.nn.log_softmax(logits), prior, atol=1e-6)  # prior-initialised
    key = jax.random.key(1)
    reward = jnp.array([0.0, 0.0, 0.0, 1.0])  # the prior's least likely action is the best one
    for it in range(15):
        key, k_act, k_mb = jax.random.split(key, 3)
        bf, bm, bp = (jnp.broadcast_to(x, (B,) + x.shape) for x in (feats, mask, prior))
        a, logp, v = agent.act(state, k_act, bf, bm, bp)
        adv = reward[a] - v
        rollout = agents.PPOBatch(bf, bm, a, logp, v, losses.normalize_advantages(adv), reward[a], bp)
        state, m = agent.update(state, agents.make_minibatches(k_mb, rollout, 4, 4))
    logits, _ = agent.network.apply(state.params, feats, mask, prior)
    assert float(jax.nn.softmax(logits)[3]) > 0.8
    # a strong KL keeps the policy near the prior under the same rewards
    strong = agents.make_ppo_prior(kl_coef=5.0, learning_rate=3e-3)
    s2 = strong.init(jax.random.key(0), D, n)
    for it in range(15):
        key, k_act, k_mb = jax.random.split(key, 3)
        a, logp, v = strong.act(s2, k_act, bf, bm, bp)
        rollout = agents.PPOBatch(bf, bm, a, logp, v, losses.normalize_advantages(reward[a] - v), reward[a], bp)
        s2, m2 = strong.update(s2, agents.make_minibatches(k_mb, rollout, 4, 4))
    logits2, _ = strong.network.apply(s2.params, feats, mask, prior)
    assert float(jax.nn.softmax(logits2)[3]) < 0.5
    assert float(m2["kl_prior"][-1]) < float(m["kl_prior"][-1])


def test_plain_ppo_masks_padding_and_reports_metrics():
    agent = agents.make_ppo()
    state = agent.init(jax.random.key(0), 5, 3)
    feats = jax.random.normal(jax.random.key(1), (200, 3, 5))
    mask = jnp.array([T, T, F])
    a, logp, v = agent.act(state, jax.random.key(2), feats, jnp.broadcast_to(mask, (200, 3)))
    assert set(np.asarray(a).tolist()) <= {0, 1} and a.shape == logp.shape == v.shape == (200,)
    g, _, _ = agent.act(state, jax.random.key(2), feats, jnp.broadcast_to(mask, (200, 3)), greedy=True)
    logits, _ = agent.network.apply(state.params, feats, jnp.broadcast_to(mask, (200, 3)))
    np.testing.assert_array_equal(np.asarray(g), np.asarray(jnp.argmax(logits, -1)))


def test_make_minibatches_are_epoch_permutations():
    rollout = agents.PPOBatch(*(jnp.arange(12.0) for _ in range(7)))
    mb = agents.make_minibatches(jax.random.key(0), rollout, num_epochs=2, num_minibatches=3)
    assert mb.action.shape == (6, 4)
    for e in range(2):
        np.testing.assert_array_equal(np.sort(np.asarray(mb.action[3 * e : 3 * e + 3]).ravel()), np.arange(12.0))
    with pytest.raises(ValueError):
        agents.make_minibatches(jax.random.key(0), rollout, 1, 5)


# -- pure-LLM baseline ------------------------------------------------------------------------------------------
def test_empirical_prior_and_llm_policy():
    cand = jnp.array([2, 0, 2, 2, 1])  # k = 5 samples over 4 admissible actions (+1 padding slot)
    cmask = jnp.array([T, T, T, T, F])
    amask = jnp.array([T, T, T, T, F])
    logp = agents.empirical_log_prior(cand, cmask, amask, smoothing=0.5)
    w = np.array([1.5, 0.5, 3.5, 0.5])
    np.testing.assert_allclose(np.exp(np.asarray(logp[:4])), w / w.sum(), rtol=1e-6)
    assert float(logp[4]) <= -1e8
    policy = agents.make_llm_policy()
    state = policy.init()
    assert int(policy.act(state, jax.random.key(0), logp, amask)) == 2  # majority vote
    n = 20000
    idx = np.asarray(
        policy.act(
            state, jax.random.key(1), jnp.broadcast_to(logp, (n, 5)), jnp.broadcast_to(amask, (n, 5)), greedy=False
        )
    )
    np.testing.assert_allclose(np.bincount(idx, minlength=5) / n, np.append(w / w.sum(), 0.0), atol=0.015)
    state, metrics = policy.update(state, jnp.zeros((3, 2)))
    assert int(state.step) == 3 and metrics == {}
