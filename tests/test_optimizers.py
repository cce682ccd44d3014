"""Estimators through optimizers with state: Adam against a hand-written reference.

The reference writes Adam out by hand on the flat state (theta, m, v), takes dense
Jacobians of that step with `jax.jacfwd`, and propagates one target at a time in
a Python loop: independent of optax and of accjax's vmapped recursion.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import accjax
from tests.test_estimators import quadratic_problem, tanh_mlp_problem

LR, B1, B2, EPS = 0.05, 0.9, 0.99, 1e-3


def adam_step(problem, unravel, batch, t, state, weights):
    """One hand-written Adam step on the flat state (theta, m, v), t from 0.

    `weights` has one entry per batch slot; padding slots (-1) add nothing.
    """
    theta, m, v = state

    def objective(flat):
        total = 0.0
        for slot in range(batch.shape[0]):
            i = batch[slot]
            example = jax.tree.map(lambda a, i=i: a[jnp.maximum(i, 0)], problem.data)
            term = weights[slot] * problem.loss(unravel(flat), example)
            total = total + jnp.where(i >= 0, term, 0.0)
        return total / jnp.sum(batch >= 0) + 0.5 * problem.l2 * jnp.dot(flat, flat)

    g = jax.grad(objective)(theta)
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g**2
    m_hat, v_hat = m / (1 - B1 ** (t + 1)), v / (1 - B2 ** (t + 1))
    return theta - LR * m_hat / (sqrt_flat_at_zero(v_hat) + EPS), m, v


def sqrt_flat_at_zero(v):
    """sqrt(v) with derivative 0 where v = 0 (written with two `where`s, not
    accjax's rule): the derivative where v's gradient has always been 0."""
    positive = v > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, v, 1.0)), 0.0)


# Compiled once (batch, step and weights traced): the loop below stays a plain
# per-target, per-step Python loop.
_step = jax.jit(adam_step, static_argnums=1)
_jac_state = jax.jit(jax.jacfwd(adam_step, argnums=4), static_argnums=1)
_jac_weights = jax.jit(jax.jacfwd(adam_step, argnums=5), static_argnums=1)


def reference(problem, schedule, query, target, mode):
    """Adam-IE ("sgd_ie"), ACC-Adam-IE ("acc") or exact retraining ("loo")."""
    theta0, unravel = ravel_pytree(problem.params)
    zero = jnp.zeros_like(theta0)
    z, z_cf, d = (theta0, zero, zero), (theta0, zero, zero), (zero, zero, zero)
    for t, batch in enumerate(np.asarray(schedule)):
        ones = jnp.ones(batch.shape[0])
        w_cf = jnp.where(jnp.asarray(batch) == target, 0.0, 1.0)
        args = (problem, unravel, batch, t)
        if mode == "loo":
            z_cf = _step(*args, z_cf, w_cf)
        elif mode == "acc":
            jac = _jac_state(*args, z, w_cf)  # d new / d state, at w^{-k}
            inject = [
                a - b
                for a, b in zip(
                    _step(*args, z, w_cf), _step(*args, z, ones), strict=True
                )
            ]
            d = tuple(
                inject[i] + sum(jac[i][j] @ d[j] for j in range(3)) for i in range(3)
            )
        else:
            jac = _jac_state(*args, z, ones)
            dw = _jac_weights(*args, z, ones)
            d = tuple(
                sum(jac[i][j] @ d[j] for j in range(3)) + dw[i] @ (w_cf - ones)
                for i in range(3)
            )
        z = _step(*args, z, ones)
    if mode == "loo":
        return query(unravel(z_cf[0])) - query(unravel(z[0]))
    return jnp.dot(jax.grad(lambda f: query(unravel(f)))(z[0]), d[0])


@pytest.fixture(scope="module")
def adam_setup():
    problem, val, _ = tanh_mlp_problem(n=9, hidden=3)
    schedule = accjax.make_schedule(9, 4, 2)
    run = accjax.train(problem, optax.adam(LR, B1, B2, EPS), schedule=schedule)
    return problem, run, accjax.mean_loss(problem.loss, val)


ESTIMATORS = pytest.mark.parametrize(
    "estimator, mode",
    [
        (accjax.sgd_ie, "sgd_ie"),
        (accjax.acc_sgd_ie, "acc"),
        (accjax.loo_retrain, "loo"),
    ],
    ids=["adam-ie", "acc-adam-ie", "loo"],
)


def check_against_reference(setup, estimator, mode, targets):
    """Each target's value equals the hand-written reference's to 1e-9."""
    problem, run, query = setup
    got = estimator(run, query, targets=np.asarray(targets))
    assert np.all(np.isfinite(got.values))
    for i, k in enumerate(targets):
        want = reference(problem, run.schedule, query, int(k), mode)
        np.testing.assert_allclose(got.values[i], want, rtol=1e-9, atol=1e-13)


@ESTIMATORS
def test_adam_against_hand_written_reference(adam_setup, estimator, mode):
    check_against_reference(adam_setup, estimator, mode, [0, 3, 8])


def test_adam_estimates_differ_from_each_other(adam_setup):
    _, run, query = adam_setup
    acc = accjax.acc_sgd_ie(run, query)
    sgd = accjax.sgd_ie(run, query)
    assert np.max(np.abs(acc.values - sgd.values)) > 1e-4 * np.max(np.abs(sgd.values))


def test_clipped_and_weight_decayed_chains_run_and_empty_window_is_sgd_ie():
    problem, val = quadratic_problem()
    optimizer = optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(0.05))
    run = accjax.train(problem, optimizer, batch_size=5, epochs=3)
    query = accjax.mean_loss(problem.loss, val)
    exact = accjax.loo_retrain(run, query)
    acc = accjax.acc_sgd_ie(run, query)
    nowhere = accjax.acc_sgd_ie(run, query, window=slice(0, 0))
    sgd = accjax.sgd_ie(run, query)
    np.testing.assert_allclose(nowhere.values, sgd.values, rtol=1e-9, atol=1e-14)
    assert accjax.metrics.kendall(exact, acc) > 0.5


def embedding_problem(n=10, vocab=12, length=3, dim=2, seed=0):
    """Bag-of-tokens logistic regression through an embedding table, no L2:
    token ids 8-11 occur only in examples 6-9, and id 11 in none, so Adam's
    second moment is exactly 0 on those rows until (or after) they are used."""
    rng = np.random.RandomState(seed)
    tokens = rng.randint(0, 8, (n, length))
    tokens[6:, 0] = [8, 9, 10, 8]
    y = rng.randint(0, 2, n).astype(np.float64)
    params = {
        "emb": jnp.asarray(rng.randn(vocab, dim) * 0.5),
        "w": jnp.asarray(rng.randn(dim)),
    }

    def apply(p, t):
        return jnp.mean(p["emb"][t], axis=0) @ p["w"]

    loss = accjax.models.binary_loss(apply)
    val = (jnp.asarray(rng.randint(0, 11, (4, length))), jnp.asarray([0.0, 1, 1, 0]))
    problem = accjax.Problem(loss, params, (jnp.asarray(tokens), jnp.asarray(y)))
    return problem, val


@pytest.fixture(scope="module")
def embedding_setup():
    problem, val = embedding_problem()
    # examples 6-9 first appear in the second epoch's batches
    schedule = np.array([[0, 1, 2, 3], [4, 5, 0, 1], [6, 7, 2, 3], [8, 9, 4, 5]])
    run = accjax.train(problem, optax.adam(LR, B1, B2, EPS), schedule=schedule)
    return problem, run, accjax.mean_loss(problem.loss, val)


@ESTIMATORS
def test_adam_defaults_with_untouched_embedding_rows(embedding_setup, estimator, mode):
    """optax's eps_root = 0 with rows whose gradient is exactly 0: finite, and
    equal to the hand-written reference whose sqrt is flat at 0."""
    check_against_reference(embedding_setup, estimator, mode, [0, 4, 6, 9])


def test_adam_ie_with_untouched_rows_is_the_weight_derivative(embedding_setup):
    """Adam-IE is -d f / d w_k: central finite differences of f(train(w)) in
    target k's weight, the runs written out with optax's own update (no
    derivative of sqrt anywhere)."""
    problem, run, query = embedding_setup
    optimizer = run.optimizer

    def final_query(k, weight):
        params, state = problem.params, optimizer.init(problem.params)
        for batch in np.asarray(run.schedule):
            w = jnp.where(jnp.asarray(batch) == k, weight, 1.0)
            rows = [jax.tree.map(lambda a, i=i: a[i], problem.data) for i in batch]
            objective = lambda p, w=w, rows=rows: (
                sum(w[s] * problem.loss(p, row) for s, row in enumerate(rows))
                / len(rows)
            )
            updates, state = optimizer.update(jax.grad(objective)(params), state)
            params = optax.apply_updates(params, updates)
        return query(params)

    got = accjax.sgd_ie(run, query, targets=np.array([6, 9]))
    h = 1e-5
    for i, k in enumerate([6, 9]):
        fd = -(final_query(k, 1 + h) - final_query(k, 1 - h)) / (2 * h)
        np.testing.assert_allclose(got.values[i], fd, rtol=1e-5, atol=1e-10)


def test_sqrt_derivative_is_zero_at_zero_only():
    from accjax._src.zero_sqrt import sqrt_zero_derivative

    x = jnp.array([0.0, 4.0, -1.0])
    y, dy = jax.jvp(sqrt_zero_derivative, (x,), (jnp.ones(3),))
    np.testing.assert_array_equal(y[:2], [0.0, 2.0])
    np.testing.assert_array_equal(dy[:2], [0.0, 0.25])
    assert np.isnan(y[2]) and np.isnan(dy[2])  # a negative argument stays nan
    (ct,) = jax.vjp(sqrt_zero_derivative, x)[1](jnp.ones(3))
    np.testing.assert_array_equal(ct[:2], [0.0, 0.25])


def test_divergence_through_adam_is_still_reported():
    """The rule touches sqrt's derivative at 0 only: an infinite curvature (the
    loss |r|^1.5 at r = 0, met by example 0 at step 0) still fails with its
    step, under optax's default Adam."""
    x = jnp.asarray(np.random.RandomState(0).randn(8, 2))
    y = jnp.asarray([0.0, 1, -1, 2, 1, -1, 0.5, 1])
    loss = lambda p, ex: jnp.abs(ex[0] @ p["w"] - ex[1]) ** 1.5
    problem = accjax.Problem(loss, {"w": jnp.zeros(2)}, (x, y))
    schedule = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [1, 0, 3, 2]])
    run = accjax.train(problem, optax.adam(LR), schedule=schedule)
    query = accjax.mean_loss(loss, (x[:3], y[:3] + 1))
    with pytest.raises(FloatingPointError, match="step 0"):
        accjax.acc_sgd_ie(run, query, targets=np.array([0]))


def test_tracin_through_adam_is_the_update_without_k(embedding_setup):
    """Adam-aware TracIn: -sum_t <grad f(theta_t), M_t(g_k)>, M_t(g) = U(G) -
    U(G - g / |S_t|) with U the hand-written Adam step at the batch gradient G;
    a stated learning rate is refused."""
    problem, run, query = embedding_setup
    theta, unravel = ravel_pytree(problem.params)
    m = v = jnp.zeros_like(theta)

    def move(g, m, v, t):
        m, v = B1 * m + (1 - B1) * g, B2 * v + (1 - B2) * g**2
        m_hat, v_hat = m / (1 - B1 ** (t + 1)), v / (1 - B2 ** (t + 1))
        return -LR * m_hat / (sqrt_flat_at_zero(v_hat) + EPS), m, v

    def grad_k(theta, i):
        row = jax.tree.map(lambda a: a[i], problem.data)
        return jax.grad(lambda f: problem.loss(unravel(f), row))(theta)

    want = np.zeros(problem.num_examples)
    for t, batch in enumerate(np.asarray(run.schedule)):
        grads = [grad_k(theta, i) for i in batch]
        g = sum(grads) / len(batch)
        u = jax.grad(lambda f: query(unravel(f)))(theta)
        for i, g_i in zip(batch, grads, strict=True):
            change = move(g, m, v, t)[0] - move(g - g_i / len(batch), m, v, t)[0]
            want[i] -= float(u @ change)
        step, m, v = move(g, m, v, t)
        theta = theta + step
    got = accjax.tracin(run, query)
    np.testing.assert_allclose(got.values, want, rtol=1e-9, atol=1e-13)
    with pytest.raises(ValueError, match="models plain SGD"):
        accjax.tracin(run, query, learning_rate=LR)


def test_every_option_runs_on_adam_defaults_with_untouched_rows(embedding_setup):
    """The options of sgd_ie and acc_sgd_ie on optax's default Adam (eps_root =
    0, rows with v = 0): each agrees with the default call, as it must."""
    problem, run, query = embedding_setup
    base = accjax.sgd_ie(run, query)
    for storage in ("states", 2, "nested"):
        got = accjax.sgd_ie(run, query, storage=storage, memory_budget=None)
        np.testing.assert_allclose(got.values, base.values, rtol=1e-10, atol=1e-14)
    split = accjax.sgd_ie(run, query, per_epoch=True)
    np.testing.assert_allclose(split.per_epoch.sum(1), base.values, rtol=1e-10)
    acc = accjax.acc_sgd_ie(run, query)
    for options in (
        dict(chunk_size=3),
        dict(per_epoch=True),
        dict(params_subset=lambda path, leaf: True),
    ):
        got = accjax.acc_sgd_ie(run, query, **options)
        np.testing.assert_allclose(got.values, acc.values, rtol=1e-10, atol=1e-14)
    nowhere = accjax.acc_sgd_ie(run, query, window=slice(0, 0))
    np.testing.assert_allclose(nowhere.values, base.values, rtol=1e-9, atol=1e-14)
    for options in (
        dict(readout="nonlinear"),
        dict(params_subset=lambda path, leaf: "w" in jax.tree_util.keystr(path)),
    ):
        assert np.all(np.isfinite(accjax.acc_sgd_ie(run, query, **options).values))
    subsets = accjax.subset_retrain(run, query, num_subsets=3)
    assert np.all(np.isfinite(subsets.values))
    test = {"loss": query}
    cleansed = accjax.cleanse(run, query, test=test, estimator="acc_sgd_ie", remove=[2])
    assert np.isfinite(cleansed.results["acc_sgd_ie"]["loss"]).all()
    assert cleansed.replay_error < 1e-12


@pytest.mark.parametrize(
    "optimizer, linear",
    [
        (optax.adam(LR, B1, B2, EPS), False),
        (optax.adamw(LR), False),
        (optax.sgd(0.1, momentum=0.9), True),
    ],
    ids=["adam", "adamw", "momentum"],
)
def test_acc_fast_is_acc_when_every_example_occurs_once(optimizer, linear):
    """One occurrence per example: ACC's perturbation is zero until k's step,
    and the fast ACC's exact injection read by the adjoint is ACC itself. For
    a step linear in the weights (momentum) that is also SGD-IE; for Adam it
    is not."""
    problem, val = embedding_problem()
    schedule = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, -1, -1]])
    run = accjax.train(problem, optimizer, schedule=schedule)
    query = accjax.mean_loss(problem.loss, val)
    fast = accjax.acc_sgd_ie_fast(run, query)
    acc = accjax.acc_sgd_ie(run, query)
    np.testing.assert_allclose(fast.values, acc.values, rtol=1e-9, atol=1e-14)
    gap = np.max(np.abs(accjax.sgd_ie(run, query).values - acc.values))
    assert gap < 1e-12 if linear else gap > 1e-3 * np.max(np.abs(acc.values))


def test_acc_fast_storage_and_sketch(embedding_setup):
    """Checkpointed states give the same values; a count sketch of d buckets
    estimates the correction with an error that shrinks as d grows."""
    problem, run, query = embedding_setup
    full = accjax.acc_sgd_ie_fast(run, query).values
    for storage in (1, 3):
        got = accjax.acc_sgd_ie_fast(run, query, storage=storage).values
        np.testing.assert_allclose(got, full, rtol=1e-10, atol=1e-15)
    num_params = 12 * 2 + 2

    def error(d):  # mean over sketches
        return np.mean(
            [
                np.linalg.norm(
                    accjax.acc_sgd_ie_fast(run, query, projection_dim=d, seed=s).values
                    - full
                )
                for s in range(4)
            ]
        )

    errors = [error(d) for d in (2, 16, 10 * num_params)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.2 * errors[0]
    budget = accjax.acc_sgd_ie_fast(run, query, memory_budget=10**6).values
    np.testing.assert_allclose(budget, full, rtol=1e-10, atol=1e-15)
    with pytest.raises(ValueError, match="`memory_budget`"):
        accjax.acc_sgd_ie_fast(run, query, memory_budget=100)
    with pytest.raises(ValueError, match="`projection_dim`"):
        accjax.acc_sgd_ie_fast(run, query, projection_dim=0)
    with pytest.raises(ValueError, match="`storage`"):
        accjax.acc_sgd_ie_fast(run, query, storage="nested")


def test_acc_warns_where_the_perturbation_outgrows_the_parameters():
    """Two copies of one post (a token no other post has) with opposite labels
    in the same batches, Adam at lr 5: the linearised run of a copy's removal
    leaves its regime (|D_k| = 46 |params_T - params_0|, ACC -365 where exact
    retraining gives +144); the warning names exactly the targets with |D_k| >
    10 |params_T - params_0|."""
    problem, val = embedding_problem(n=10)
    tokens, y = problem.data
    tokens = tokens.at[8].set(jnp.array([11, 2, 3])).at[9].set(jnp.array([11, 2, 3]))
    y = y.at[8].set(0.0).at[9].set(1.0)
    problem = accjax.Problem(problem.loss, problem.params, (tokens, y))
    batches = [[0, 1, 8, 9], [2, 3, 4, 5], [6, 7, 0, 1], [8, 9, 2, 3], [4, 5, 6, 7]]
    run = accjax.train(problem, optax.adam(5.0), schedule=np.array(batches * 3))
    query = accjax.mean_loss(problem.loss, val)
    with pytest.warns(RuntimeWarning, match="ten times as far") as caught:
        acc = accjax.acc_sgd_ie(run, query)
    shift = np.sqrt(
        sum(
            np.sum(np.square(a).reshape(10, -1), 1)
            for a in jax.tree.leaves(acc.param_shift)
        )
    )
    pairs = zip(
        jax.tree.leaves(run.params), jax.tree.leaves(problem.params), strict=True
    )
    moved = np.sqrt(sum(np.sum(np.square(a - b)) for a, b in pairs))
    flagged = np.flatnonzero(shift > 10 * moved)
    assert 8 in flagged and str(flagged[:5].tolist()) in str(caught[0].message)
