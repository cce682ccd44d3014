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
    return theta - LR * m_hat / (jnp.sqrt(v_hat) + EPS), m, v


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
