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
    """One hand-written Adam step on the flat state (theta, m, v), t from 0."""
    theta, m, v = state
    rows = [int(i) for i in batch if i >= 0]

    def objective(flat):
        total = 0.0
        for w, i in zip(weights, rows, strict=True):
            example = jax.tree.map(lambda a, i=i: a[i], problem.data)
            total = total + w * problem.loss(unravel(flat), example)
        return total / len(rows) + 0.5 * problem.l2 * jnp.dot(flat, flat)

    g = jax.grad(objective)(theta)
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g**2
    m_hat, v_hat = m / (1 - B1 ** (t + 1)), v / (1 - B2 ** (t + 1))
    return theta - LR * m_hat / (jnp.sqrt(v_hat) + EPS), m, v


def reference(problem, schedule, query, target, mode):
    """Adam-IE ("sgd_ie"), ACC-Adam-IE ("acc") or exact retraining ("loo")."""
    theta0, unravel = ravel_pytree(problem.params)
    zero = jnp.zeros_like(theta0)
    z, z_cf, d = (theta0, zero, zero), (theta0, zero, zero), (zero, zero, zero)
    for t, batch in enumerate(np.asarray(schedule)):
        rows = [int(i) for i in batch if i >= 0]
        ones = jnp.ones(len(rows))
        w_cf = jnp.array([0.0 if i == target else 1.0 for i in rows])
        step = lambda s, w, b=batch, t=t: adam_step(problem, unravel, b, t, s, w)
        if mode == "loo":
            z_cf = step(z_cf, w_cf)
        elif mode == "acc":
            jac = jax.jacfwd(step)(z, w_cf)  # d new / d state, at w^{-k}
            inject = [a - b for a, b in zip(step(z, w_cf), step(z, ones), strict=True)]
            d = tuple(
                inject[i] + sum(jac[i][j] @ d[j] for j in range(3)) for i in range(3)
            )
        else:
            jac = jax.jacfwd(step)(z, ones)
            dw = jax.jacfwd(step, argnums=1)(z, ones)
            d = tuple(
                sum(jac[i][j] @ d[j] for j in range(3)) + dw[i] @ (w_cf - ones)
                for i in range(3)
            )
        z = step(z, ones)
    if mode == "loo":
        return query(unravel(z_cf[0])) - query(unravel(z[0]))
    return jnp.dot(jax.grad(lambda f: query(unravel(f)))(z[0]), d[0])


@pytest.fixture(scope="module")
def adam_setup():
    problem, val, _ = tanh_mlp_problem(n=9, hidden=3)
    schedule = accjax.make_schedule(9, 4, 2)
    run = accjax.train(problem, optax.adam(LR, B1, B2, EPS), schedule=schedule)
    return problem, run, accjax.mean_loss(problem.loss, val)


@pytest.mark.parametrize(
    "estimator, mode",
    [
        (accjax.sgd_ie, "sgd_ie"),
        (accjax.acc_sgd_ie, "acc"),
        (accjax.loo_retrain, "loo"),
    ],
    ids=["adam-ie", "acc-adam-ie", "loo"],
)
def test_adam_against_hand_written_reference(adam_setup, estimator, mode):
    problem, run, query = adam_setup
    targets = np.array([0, 3, 8])
    got = estimator(run, query, targets=targets)
    for i, k in enumerate(targets):
        want = reference(problem, run.schedule, query, int(k), mode)
        np.testing.assert_allclose(got.values[i], want, rtol=1e-9, atol=1e-13)


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


def test_adam_at_zero_gradient_names_eps_root():
    problem, val = quadratic_problem()
    x, y = problem.data
    x = x.at[:, 0].set(0.0)  # w[0] never gets a gradient: v stays 0 there
    params = {"w": problem.params["w"], "b": problem.params["b"]}
    problem = accjax.Problem(problem.loss, params, (x, y))  # no L2
    query = accjax.mean_loss(problem.loss, val)
    run = accjax.train(problem, optax.adam(0.05), batch_size=5, epochs=2)
    for estimator in (accjax.sgd_ie, accjax.acc_sgd_ie):
        with pytest.raises(FloatingPointError, match="eps_root"):
            estimator(run, query)
    fixed = accjax.train(
        problem, optax.adam(0.05, eps_root=1e-8), batch_size=5, epochs=2
    )
    assert np.all(np.isfinite(accjax.acc_sgd_ie(fixed, query).values))
