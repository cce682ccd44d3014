"""Estimators against exact retraining, closed forms and plain reference loops."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import accjax
from tests import reference


def quadratic_problem(n=13, d=3, l2=0.05, dtype=jnp.float64, seed=0):
    rng = np.random.RandomState(seed)
    x = jnp.asarray(rng.randn(n, d), dtype)
    y = jnp.asarray(rng.randn(n), dtype)

    def loss(p, ex):
        xi, yi = ex
        return 0.5 * (xi @ p["w"] + p["b"] - yi) ** 2

    params = {"w": jnp.asarray(rng.randn(d), dtype), "b": jnp.zeros((), dtype)}
    xv = jnp.asarray(rng.randn(5, d), dtype)
    yv = jnp.asarray(rng.randn(5), dtype)
    return accjax.Problem(loss, params, (x, y), l2=l2), (xv, yv)


def tanh_mlp_problem(n=13, d=3, hidden=4, l2=0.01, dtype=jnp.float64, seed=0):
    rng = np.random.RandomState(seed)
    x = jnp.asarray(rng.randn(n, d), dtype)
    y = jnp.asarray(rng.randint(0, 2, n), dtype)
    params = {
        "w1": jnp.asarray(rng.randn(d, hidden) * 0.7, dtype),
        "b1": jnp.asarray(rng.randn(hidden) * 0.1, dtype),
        "w2": jnp.asarray(rng.randn(hidden) * 0.7, dtype),
        "b2": jnp.zeros((), dtype),
    }

    def apply(p, xi):
        return jnp.tanh(xi @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    loss = accjax.models.binary_loss(apply)
    xv = jnp.asarray(rng.randn(6, d), dtype)
    yv = jnp.asarray(rng.randint(0, 2, 6), dtype)
    return accjax.Problem(loss, params, (x, y), l2=l2), (xv, yv), apply


def decaying_lr(t):
    return 0.5 / jnp.sqrt(t + 1.0)


def lrs_of(num_steps):
    return [float(decaying_lr(t)) for t in range(num_steps)]


# --- closed form: quadratic loss, linear optimizer, ACC is exact ------------------


@pytest.mark.parametrize(
    "optimizer",
    [
        optax.sgd(optax.exponential_decay(0.2, 4, 0.8)),
        optax.sgd(0.1, momentum=0.9),
        optax.sgd(0.1, momentum=0.8, nesterov=True),
    ],
    ids=["sgd-decay", "heavy-ball", "nesterov"],
)
def test_acc_is_exact_for_quadratic_loss(optimizer):
    problem, _ = quadratic_problem()
    run = accjax.train(problem, optimizer, batch_size=5, epochs=5)
    assert (np.asarray(run.schedule) == -1).any()  # ragged batches
    query = accjax.mean_loss(problem.loss, quadratic_problem()[1])
    exact = accjax.loo_retrain(run, query)
    acc = accjax.acc_sgd_ie(run, query)
    for a, b in zip(
        jax.tree.leaves(exact.param_shift),
        jax.tree.leaves(acc.param_shift),
        strict=False,
    ):
        scale = np.max(np.abs(a))
        assert scale > 1e-4
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * scale)


def test_sgd_ie_is_not_exact_for_quadratic_loss():
    problem, val = quadratic_problem()
    run = accjax.train(problem, optax.sgd(0.2), batch_size=5, epochs=5)

    def query(p):  # linear in params: the linear read-out is exact too
        return val[0] @ p["w"] + p["b"]

    exact = accjax.loo_retrain(run, query)
    acc = accjax.acc_sgd_ie(run, query)
    sgd = accjax.sgd_ie(run, query)
    scale = np.max(np.abs(exact.values))
    np.testing.assert_allclose(acc.values, exact.values, rtol=0, atol=1e-12 * scale)
    assert np.max(np.abs(sgd.values - exact.values)) > 1e-3 * scale


# --- reference loops on a non-linear model ------------------------------------------


@pytest.fixture(scope="module")
def mlp_setup():
    problem, val, apply = tanh_mlp_problem()
    optimizer = optax.sgd(decaying_lr)
    run = accjax.train(problem, optimizer, batch_size=5, epochs=3)
    query = accjax.mean_loss(problem.loss, val)
    return problem, run, query, lrs_of(run.num_steps)


def assert_matches_reference(got, reference_fn, *args, **kwargs):
    """Values and flat param shifts of `got` equal `reference_fn(..., k)` per target."""
    flat_shift = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(
        got.param_shift
    )
    for i, k in enumerate(np.asarray(got.targets)):
        value, shift = reference_fn(*args, int(k), **kwargs)
        np.testing.assert_allclose(got.values[i], value, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(flat_shift[i], shift, rtol=1e-9, atol=1e-13)


def test_loo_matches_reference_loop(mlp_setup):
    problem, run, query, lrs = mlp_setup
    got = accjax.loo_retrain(run, query, targets=np.array([0, 4, 12]))
    assert_matches_reference(
        got, reference.loo, problem.loss, problem.params, problem.data,
        run.schedule, lrs, problem.l2, query,
    )  # fmt: skip


def test_sgd_ie_matches_hara_adjoint_recursion(mlp_setup):
    problem, run, query, lrs = mlp_setup
    got = accjax.sgd_ie(run, query)
    want = reference.hara_sgd_ie(
        problem.loss, problem.params, problem.data, run.schedule, lrs, problem.l2, query
    )
    np.testing.assert_allclose(got.values, want, rtol=1e-9, atol=1e-13)
    assert got.param_shift is None


@pytest.mark.parametrize("window", [None, "first-half"])
def test_acc_matches_reference_loop(mlp_setup, window):
    problem, run, query, lrs = mlp_setup
    mask = None
    if window == "first-half":
        mask = np.arange(run.num_steps) < run.num_steps // 2
    got = accjax.acc_sgd_ie(run, query, targets=np.array([1, 7, 12]), window=mask)
    assert_matches_reference(
        got, reference.acc_forward, problem.loss, problem.params, problem.data,
        run.schedule, lrs, problem.l2, query, window=mask,
    )  # fmt: skip


def test_per_epoch_breakdown_matches_reference_loops(mlp_setup):
    problem, run, query, lrs = mlp_setup
    epochs = accjax.epochs_of(run.schedule)
    np.testing.assert_array_equal(epochs, np.repeat(np.arange(3), 3))
    args = (problem.loss, problem.params, problem.data, run.schedule, lrs)
    sgd = accjax.sgd_ie(run, query, per_epoch=True)
    want = reference.hara_sgd_ie(*args, problem.l2, query, epochs=epochs)
    np.testing.assert_allclose(sgd.per_epoch, want, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(sgd.values, want.sum(1), rtol=1e-9, atol=1e-13)
    targets = np.array([1, 7, 12])
    acc = accjax.acc_sgd_ie(run, query, targets=targets, per_epoch=True, chunk_size=2)
    assert acc.per_epoch.shape == (3, 3)
    for e in range(3):
        for i, k in enumerate(targets):
            value, _ = reference.acc_forward(
                *args, problem.l2, query, int(k), sources=epochs == e
            )
            np.testing.assert_allclose(acc.per_epoch[i, e], value, rtol=1e-9)
    whole = accjax.acc_sgd_ie(run, query, targets=targets)
    np.testing.assert_allclose(acc.values, whole.values, rtol=1e-12)
    for a, b in zip(
        jax.tree.leaves(acc.param_shift),
        jax.tree.leaves(whole.param_shift),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15)
    # Your own grouping of the steps: the first step against the rest.
    mine = (np.arange(run.num_steps) > 0).astype(np.int32)
    two = accjax.sgd_ie(run, query, per_epoch=mine, targets=targets)
    assert two.per_epoch.shape == (3, 2)
    np.testing.assert_allclose(two.per_epoch.sum(1), sgd.values[targets], rtol=1e-12)
    first = reference.hara_sgd_ie(*args, problem.l2, query, epochs=mine)
    np.testing.assert_allclose(two.per_epoch, first[targets], rtol=1e-9, atol=1e-13)
    # Under jit the epochs must be given: they are read off a concrete schedule.
    jitted = jax.jit(
        lambda r: accjax.acc_sgd_ie(r, query, targets=targets, per_epoch=epochs)
    )(run)
    np.testing.assert_allclose(jitted.per_epoch, acc.per_epoch, rtol=1e-12)
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda r: accjax.sgd_ie(r, query, per_epoch=True))(run)
    with pytest.raises(ValueError, match="`per_epoch`"):
        accjax.sgd_ie(run, query, per_epoch=np.arange(3))
    with pytest.raises(ValueError, match="readout='linear'"):
        accjax.acc_sgd_ie(run, query, per_epoch=True, readout="nonlinear")


def test_epochs_of_other_schedules():
    schedule = np.array([[0, 1], [2, -1], [1, 2], [0, -1], [0, 1]])
    np.testing.assert_array_equal(accjax.epochs_of(schedule), [0, 0, 1, 1, 2])


def test_acc_on_a_parameter_subset_matches_reference_loop(mlp_setup):
    problem, run, query, lrs = mlp_setup
    last = lambda path, leaf: path[0].key in ("w2", "b2")
    mask = {"w1": False, "b1": False, "w2": True, "b2": True}
    flat_mask = jax.flatten_util.ravel_pytree(
        jax.tree.map(
            lambda x, m: jnp.full(x.shape, float(m), x.dtype), problem.params, mask
        )
    )[0]
    window = np.arange(run.num_steps) >= 2
    targets = np.array([1, 7, 12])
    got = accjax.acc_sgd_ie(
        run, query, targets=targets, params_subset=last, window=window, chunk_size=2
    )
    assert_matches_reference(
        got, reference.acc_forward, problem.loss, problem.params, problem.data,
        run.schedule, lrs, problem.l2, query, window=window, subset=flat_mask,
    )  # fmt: skip
    assert not np.any(got.param_shift["w1"]) and np.any(got.param_shift["w2"])
    by_mask = accjax.acc_sgd_ie(
        run, query, targets=targets, params_subset=mask, window=window
    )
    np.testing.assert_allclose(by_mask.values, got.values, rtol=1e-12, atol=1e-16)
    everything = accjax.acc_sgd_ie(run, query, params_subset=lambda p, x: True)
    np.testing.assert_array_equal(
        everything.values, accjax.acc_sgd_ie(run, query).values
    )
    with pytest.raises(ValueError, match="selects none"):
        accjax.acc_sgd_ie(run, query, params_subset=lambda p, x: False)
    with pytest.raises(ValueError, match="pytree of Python bools"):
        accjax.acc_sgd_ie(run, query, params_subset={"w1": True})


def test_acc_parameter_subset_with_momentum_and_nonlinear_readout():
    problem, val, _ = tanh_mlp_problem()
    run = accjax.train(problem, optax.sgd(0.1, momentum=0.9), batch_size=5, epochs=2)
    query = accjax.mean_loss(problem.loss, val)
    full = accjax.acc_sgd_ie(run, query, readout="nonlinear")
    same = accjax.acc_sgd_ie(
        run, query, readout="nonlinear", params_subset=lambda p, x: True
    )
    np.testing.assert_array_equal(same.values, full.values)
    last = accjax.acc_sgd_ie(
        run, query, readout="nonlinear", params_subset=lambda p, x: p[0].key == "w2"
    )
    exact = accjax.loo_retrain(run, query)
    assert np.all(np.isfinite(last.values))
    # a cruder estimate than the full perturbation, still correlated with the truth
    assert accjax.metrics.rmse(exact, last) > accjax.metrics.rmse(exact, full)
    assert accjax.metrics.pearson(exact, last) > 0.5


def test_acc_differs_from_sgd_ie_on_nonlinear_model(mlp_setup):
    _, run, query, _ = mlp_setup
    acc = accjax.acc_sgd_ie(run, query)
    sgd = accjax.sgd_ie(run, query)
    assert np.max(np.abs(acc.values - sgd.values)) > 1e-6 * np.max(np.abs(sgd.values))


# --- invariances ---------------------------------------------------------------


def test_chunk_size_does_not_change_results(mlp_setup):
    _, run, query, _ = mlp_setup
    targets = np.array([3, 0, 11, 5, 8])
    for estimator in (accjax.acc_sgd_ie, accjax.loo_retrain):
        full = estimator(run, query, targets=targets)
        for size in (1, 2, 3):
            part = estimator(run, query, targets=targets, chunk_size=size)
            np.testing.assert_array_equal(part.targets, targets)
            np.testing.assert_allclose(part.values, full.values, rtol=1e-12, atol=1e-15)


def test_chunks_skip_the_steps_before_their_targets_appear(mlp_setup):
    from accjax._src.estimators import acc

    problem, _, query, _ = mlp_setup
    # Example 12 appears only in the last step, 3 only in the first two.
    schedule = np.array(
        [[0, 1, 2, 3], [3, 4, 5, 6], [7, 8, 9, 10], [11, 0, 1, 2], [12, 4, 5, -1]]
    )
    run = accjax.train(problem, optax.sgd(decaying_lr), schedule=schedule)
    targets = np.array([12, 3, 9, 11])
    chunks, _, starts, _ = acc._plan(jnp.asarray(targets), schedule, 13, 2, None)
    np.testing.assert_array_equal(chunks, [[3, 9], [11, 12]])  # by first step
    np.testing.assert_array_equal(starts, [0, 3])
    got = accjax.acc_sgd_ie(run, query, targets=targets, chunk_size=2)
    np.testing.assert_array_equal(got.targets, targets)
    assert_matches_reference(
        got, reference.acc_forward, problem.loss, problem.params, problem.data,
        schedule, lrs_of(5), problem.l2, query,
    )  # fmt: skip


def test_window_all_steps_is_full_acc_and_empty_is_sgd_ie(mlp_setup):
    _, run, query, _ = mlp_setup
    full = accjax.acc_sgd_ie(run, query)
    everywhere = accjax.acc_sgd_ie(run, query, window=slice(None))
    nowhere = accjax.acc_sgd_ie(run, query, window=np.zeros(run.num_steps, bool))
    sgd = accjax.sgd_ie(run, query)
    np.testing.assert_allclose(everywhere.values, full.values, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(nowhere.values, sgd.values, rtol=1e-9, atol=1e-14)


def test_estimators_under_jit(mlp_setup):
    _, run, query, _ = mlp_setup
    targets = jnp.array([2, 9])
    for estimator in (accjax.acc_sgd_ie, accjax.loo_retrain, accjax.sgd_ie):
        plain = estimator(run, query, targets=targets)
        jitted = jax.jit(lambda r, e=estimator: e(r, query, targets=targets))(run)
        np.testing.assert_allclose(jitted.values, plain.values, rtol=1e-12)


def test_no_retrace_on_second_call(mlp_setup):
    _, run, query, _ = mlp_setup
    from accjax._src.estimators import acc, loo, sgd_ie

    for estimator, impl in (
        (accjax.acc_sgd_ie, acc.acc_chunks),
        (accjax.loo_retrain, loo._loo_chunks),
        (accjax.sgd_ie, sgd_ie._sgd_ie_all),
    ):
        estimator(run, query, targets=np.array([1, 2]))
        before = impl._cache_size()
        estimator(run, query, targets=np.array([4, 6]))
        assert impl._cache_size() == before
        # A new validation set of the same shape: same compiled code.
        other = accjax.mean_loss(
            run.problem.loss, (run.problem.data[0][:6] + 1.0, run.problem.data[1][:6])
        )
        estimator(run, other, targets=np.array([4, 6]))
        assert impl._cache_size() == before


def test_vector_query(mlp_setup):
    problem, run, query, _ = mlp_setup
    xv = problem.data[0][:4]

    def logits(p):
        return jax.vmap(lambda x: jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"])(
            xv
        )

    targets = np.array([0, 5])
    for estimator in (accjax.acc_sgd_ie, accjax.loo_retrain, accjax.sgd_ie):
        vec = estimator(run, logits, targets=targets)
        assert vec.values.shape == (2, 4)
        first = estimator(run, lambda p: logits(p)[1], targets=targets)
        np.testing.assert_allclose(
            vec.values[:, 1], first.values, rtol=1e-10, atol=1e-15
        )


def test_nonlinear_readout(mlp_setup):
    _, run, query, _ = mlp_setup
    acc = accjax.acc_sgd_ie(run, query, readout="nonlinear")
    shifted = jax.vmap(lambda s: query(jax.tree.map(jnp.add, run.params, s)))(
        acc.param_shift
    )
    np.testing.assert_allclose(acc.values, shifted - query(run.params), rtol=1e-10)


@pytest.mark.parametrize("estimator", ["loo_retrain", "sgd_ie", "acc_sgd_ie"])
def test_float32_in_float32_out(estimator):
    problem, val, _ = tanh_mlp_problem(dtype=jnp.float32)
    run = accjax.train(problem, optax.sgd(0.3), batch_size=5, epochs=2)
    query = accjax.mean_loss(problem.loss, val)
    got = getattr(accjax, estimator)(run, query)
    assert got.values.dtype == jnp.float32
    problem64, val64, _ = tanh_mlp_problem()
    run64 = accjax.train(problem64, optax.sgd(0.3), batch_size=5, epochs=2)
    want = getattr(accjax, estimator)(run64, accjax.mean_loss(problem64.loss, val64))
    np.testing.assert_allclose(got.values, want.values, rtol=2e-3, atol=2e-5)


@pytest.fixture(scope="module")
def long_logreg():
    # Convex (L2-regularised logistic regression), 40 epochs of batches of 3:
    # SGD-IE's dropped first-order term compounds with every occurrence of k.
    rng = np.random.RandomState(0)
    x = rng.randn(110, 5)
    y = (x @ rng.randn(5) + rng.randn(110) > 0).astype(np.float64)
    params, apply = accjax.models.logistic_regression(
        jax.random.PRNGKey(0), 5, dtype=jnp.float64
    )
    loss = accjax.models.binary_loss(apply)
    problem = accjax.Problem(loss, params, (x[:60], y[:60]), l2=0.01)
    run = accjax.train(problem, optax.sgd(0.1), batch_size=3, epochs=40)
    return run, apply, loss, (x[60:], y[60:])


@pytest.mark.slow
def test_acc_beats_sgd_ie_on_long_training(long_logreg):
    run, apply, _, (xv, _) = long_logreg

    def query(p):  # linear in the logits: the read-out adds no error of its own
        return jnp.mean(jax.vmap(apply, in_axes=(None, 0))(p, xv))

    exact = accjax.loo_retrain(run, query)
    acc = accjax.acc_sgd_ie(run, query)
    sgd = accjax.sgd_ie(run, query)
    rmse_acc = accjax.metrics.rmse(exact, acc)
    rmse_sgd = accjax.metrics.rmse(exact, sgd)
    assert rmse_acc < 0.75 * rmse_sgd, (rmse_acc, rmse_sgd)
    assert accjax.metrics.kendall(exact, acc) > accjax.metrics.kendall(exact, sgd)


@pytest.mark.slow
def test_nonlinear_readout_beats_sgd_ie_on_validation_loss(long_logreg):
    run, _, loss, val = long_logreg
    query = accjax.mean_loss(loss, val)
    exact = accjax.loo_retrain(run, query)
    acc = accjax.acc_sgd_ie(run, query, readout="nonlinear")
    sgd = accjax.sgd_ie(run, query)
    rmse_acc = accjax.metrics.rmse(exact, acc)
    rmse_sgd = accjax.metrics.rmse(exact, sgd)
    assert rmse_acc < 0.75 * rmse_sgd, (rmse_acc, rmse_sgd)


def test_tracin_matches_written_out_sum(mlp_setup):
    problem, run, query, lrs = mlp_setup
    thetas, unravel = reference.trajectory(
        problem.loss, problem.params, problem.data, run.schedule, lrs, problem.l2
    )
    want = np.zeros(problem.num_examples)
    want_self = np.zeros(problem.num_examples)
    for t, batch in enumerate(np.asarray(run.schedule)):
        u = jax.grad(lambda f: query(unravel(f)))(thetas[t])
        size = int((batch >= 0).sum())
        for k in batch[batch >= 0]:
            g = reference._example_grad(
                problem.loss, thetas[t], unravel, problem.data, k
            )
            want[k] += lrs[t] / size * float(jnp.dot(u, g))
            want_self[k] += lrs[t] / size * float(jnp.dot(g, g))
    got = accjax.tracin(run, query, learning_rate=decaying_lr)
    np.testing.assert_allclose(got.values, want, rtol=1e-9, atol=1e-14)
    self_inf = accjax.tracin(run, "self", learning_rate=decaying_lr, targets=[4, 0])
    np.testing.assert_allclose(self_inf.values, want_self[[4, 0]], rtol=1e-9)
    vec = accjax.tracin(
        run, lambda p: jnp.stack([query(p), 2 * query(p)]), learning_rate=decaying_lr
    )
    np.testing.assert_allclose(vec.values[:, 1], 2 * want, rtol=1e-9, atol=1e-14)
    # the rates come from the run's optimizer; a stated rate is checked
    unstated = accjax.tracin(run, query)
    np.testing.assert_allclose(unstated.values, want, rtol=1e-9, atol=1e-14)
    with pytest.raises(ValueError, match="models plain SGD"):
        accjax.tracin(run, query, learning_rate=0.1)


@pytest.mark.parametrize("checkpoints", ["epochs", np.array([1, 5, 9])])
def test_tracin_checkpoints_match_written_out_sum(mlp_setup, checkpoints):
    problem, run, query, lrs = mlp_setup
    thetas, unravel = reference.trajectory(
        problem.loss, problem.params, problem.data, run.schedule, lrs, problem.l2
    )
    steps = [3, 6, 9] if isinstance(checkpoints, str) else list(checkpoints)
    mean_size = problem.num_examples * 3 / run.num_steps
    want = np.zeros(problem.num_examples)
    want_self = np.zeros(problem.num_examples)
    for c in steps:
        u = jax.grad(lambda f: query(unravel(f)))(thetas[c])
        for k in range(problem.num_examples):
            g = reference._example_grad(
                problem.loss, thetas[c], unravel, problem.data, k
            )
            want[k] += lrs[c - 1] / mean_size * float(jnp.dot(u, g))
            want_self[k] += lrs[c - 1] / mean_size * float(jnp.dot(g, g))
    got = accjax.tracin(run, query, learning_rate=decaying_lr, checkpoints=checkpoints)
    np.testing.assert_allclose(got.values, want, rtol=1e-9, atol=1e-14)
    self_inf = accjax.tracin(
        run, "self", learning_rate=decaying_lr, checkpoints=checkpoints
    )
    np.testing.assert_allclose(self_inf.values, want_self, rtol=1e-9)
    np.testing.assert_allclose(
        accjax.tracin(run, query, checkpoints=checkpoints).values, want, rtol=1e-9
    )
    with pytest.raises(ValueError, match="`checkpoints`"):
        accjax.tracin(run, query, checkpoints=np.array([0]))


@pytest.mark.parametrize("projection_dim", [None, 6])
def test_dvemb_and_acc_dvemb_match_written_out_loops(mlp_setup, projection_dim):
    problem, run, query, lrs = mlp_setup
    targets = np.array([1, 7, 12])
    epochs = accjax.epochs_of(run.schedule)
    options = dict(learning_rate=decaying_lr, targets=targets, per_epoch=True)
    options.update(projection_dim=projection_dim, seed=3)
    got = {
        False: accjax.dvemb(run, query, **options),
        True: accjax.acc_dvemb(run, query, chunk_size=2, **options),
    }
    projection = None
    if projection_dim is not None:  # the documented draw
        num_params = jax.flatten_util.ravel_pytree(problem.params)[0].shape[0]
        projection = jax.random.normal(
            jax.random.PRNGKey(3), (projection_dim, num_params), jnp.float64
        ) / np.sqrt(projection_dim)
    args = (problem.loss, problem.params, problem.data, run.schedule, lrs)
    for acc, inf in got.items():
        for i, k in enumerate(targets):
            value, d = reference.dvemb_forward(
                *args, problem.l2, query, int(k), acc, projection
            )
            np.testing.assert_allclose(inf.values[i], value, rtol=1e-9)
            for e in range(3):
                part, _ = reference.dvemb_forward(
                    *args, problem.l2, query, int(k), acc, projection, epochs == e
                )
                np.testing.assert_allclose(inf.per_epoch[i, e], part, rtol=1e-9)
            if projection_dim is None:
                flat = jax.flatten_util.ravel_pytree(
                    jax.tree.map(lambda a, i=i: a[i], inf.param_shift)
                )[0]
                np.testing.assert_allclose(flat, d, rtol=1e-9, atol=1e-15)
            else:
                assert inf.param_shift is None
    # ACC-DVEmb differs from DVEmb only through k's own curvature.
    assert not np.allclose(got[True].values, got[False].values, rtol=1e-3)


def test_dvemb_checks_its_inputs(mlp_setup):
    problem, run, query, _ = mlp_setup
    with pytest.raises(ValueError, match="plain SGD"):
        accjax.dvemb(run, query, learning_rate=0.1)  # not the run's rate
    momentum = accjax.train(
        problem, optax.sgd(0.1, momentum=0.9), batch_size=5, epochs=1
    )
    with pytest.raises(ValueError, match="at step 1"):
        accjax.acc_dvemb(momentum, query, learning_rate=0.1)
    with pytest.raises(ValueError, match="`projection_dim`"):
        accjax.dvemb(run, query, learning_rate=decaying_lr, projection_dim=0)
    with pytest.raises(TypeError, match="`learning_rate`"):
        accjax.dvemb(run, query, learning_rate="0.1")
    vec = accjax.dvemb(
        run, lambda p: jnp.stack([query(p), 2 * query(p)]), learning_rate=decaying_lr
    )
    one = accjax.dvemb(run, query, learning_rate=decaying_lr)
    np.testing.assert_allclose(vec.values[:, 1], 2 * one.values, rtol=1e-12)


def test_influence_function_against_written_out_ridge():
    problem, val = quadratic_problem(n=20, d=3, l2=0.1)
    run = accjax.train(problem, optax.sgd(0.1), batch_size=5, epochs=30)
    x, y = (np.asarray(a) for a in problem.data)
    xb = np.hstack([x, np.ones((20, 1))])  # params (w, b) as one vector
    theta = np.append(np.asarray(run.params["w"]), float(run.params["b"]))
    hessian = xb.T @ xb / 20 + 0.1 * np.eye(4)
    grads = xb * (xb @ theta - y)[:, None]  # per-example loss gradients
    xv = np.hstack([np.asarray(val[0]), np.ones((5, 1))])

    def query(p):  # mean validation prediction: gradient mean(xv)
        return jnp.mean(val[0] @ p["w"] + p["b"])

    want = grads @ np.linalg.solve(hessian, xv.mean(0)) / 20
    for method in ("explicit", "cg"):
        got = accjax.influence_function(run, query, method=method)
        np.testing.assert_allclose(got.values, want, rtol=1e-8, atol=1e-12)
    lissa = accjax.influence_function(run, query, method="lissa", maxiter=2000)
    np.testing.assert_allclose(lissa.values, want, rtol=1e-6, atol=1e-10)
    damped = accjax.influence_function(run, query, damping=0.5)
    want_damped = grads @ np.linalg.solve(hessian + 0.5 * np.eye(4), xv.mean(0)) / 20
    np.testing.assert_allclose(damped.values, want_damped, rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="method"):
        accjax.influence_function(run, query, method="arnoldi")


def test_last_layer_mask_and_named_estimator(mlp_setup):
    from accjax._src.estimators.named import estimate, last_layer

    cnn, _ = accjax.models.cnn(jax.random.PRNGKey(0))
    assert last_layer(cnn) == {
        "conv": [{"b": False, "w": False}] * 2,
        "out": {"b": True, "w": True},
    }
    mlp, _ = accjax.models.mlp(jax.random.PRNGKey(0), 3)
    assert [layer["w"] for layer in last_layer(mlp)] == [False, False, True]
    logreg, _ = accjax.models.logistic_regression(jax.random.PRNGKey(0), 3)
    assert last_layer(logreg) == {"b": True, "w": True}
    _, run, query, _ = mlp_setup  # a flat dict of arrays: one "layer", all of it
    got = estimate("acc_last_layer", run, query)
    np.testing.assert_array_equal(got.values, accjax.acc_sgd_ie(run, query).values)
    problem, val, apply = tanh_mlp_problem()
    params, apply = accjax.models.mlp(jax.random.PRNGKey(0), 3, (4,), dtype=jnp.float64)
    problem = accjax.Problem(accjax.models.binary_loss(apply), params, problem.data)
    run = accjax.train(problem, optax.sgd(0.1), batch_size=5, epochs=2)
    query = accjax.mean_loss(problem.loss, val)
    got = estimate("acc_last_layer", run, query)
    want = accjax.acc_sgd_ie(run, query, params_subset=lambda p, x: p[0].idx == 1)
    np.testing.assert_array_equal(got.values, want.values)


def test_chunk_size_for_budget_fits_the_measured_footprint():
    from accjax._src.estimators import common

    linear = lambda c: 1000 + 100 * c
    assert common.chunk_size_for_budget(linear, 1000 + 100 * 37, 500) == 37
    assert common.chunk_size_for_budget(linear, 10**9, 500) == 500
    curved = lambda c: 1000 + 100 * c + 5 * c * c  # the fit underestimates
    size = common.chunk_size_for_budget(curved, 20_000, 500)
    assert curved(size) <= 20_000 and size >= 20
    with pytest.raises(ValueError, match="below the footprint"):
        common.chunk_size_for_budget(linear, 1050, 500)


def test_memory_budget_gives_the_same_results(mlp_setup):
    _, run, query, _ = mlp_setup
    for estimator in (accjax.acc_sgd_ie, accjax.loo_retrain):
        full = estimator(run, query)
        budgeted = estimator(run, query, memory_budget=2_000_000)
        np.testing.assert_allclose(budgeted.values, full.values, rtol=1e-12, atol=1e-15)
        with pytest.raises(ValueError, match="below the footprint"):
            estimator(run, query, memory_budget=1000)
        with pytest.raises(ValueError, match="memory_budget"):
            estimator(run, query, memory_budget=10**9, chunk_size=2)


@pytest.mark.parametrize(
    "storage", ["states", 1, 4, 5, ("nested", 2), ("nested", 3), ("nested", 4)]
)
def test_sgd_ie_storage_choices_give_the_same_values(mlp_setup, storage):
    """9 steps: 4 and 5 leave a tail segment; 2 nested levels are blocks of 3,
    3 levels 5 + 4 steps with their own blocks, 4 levels have tails at each."""
    from accjax._src.estimators import sgd_ie

    _, run, query, _ = mlp_setup
    want = accjax.sgd_ie(run, query, storage="all").values
    if isinstance(storage, tuple):  # what "nested" picks for a budget, directly
        got = sgd_ie._sgd_ie_all(
            run.problem, run.optimizer, run.schedule, query=query,
            with_progress=False, storage=storage,
        )[0]  # fmt: skip
    else:
        got = accjax.sgd_ie(run, query, storage=storage, progress=lambda d, t: 0)
        got = got.values
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-16)


def test_sgd_ie_memory_budget_chooses_the_storage(mlp_setup):
    """ "auto" takes "all" when it fits, then "states", then the fewest nested
    levels; the values do not change, and the estimate of "all" and "states"
    is at least XLA's own plan for them."""
    from accjax._src.estimators import sgd_ie

    _, run, query, _ = mlp_setup
    T = run.num_steps
    state, residuals = sgd_ie.step_bytes(run.problem, run.optimizer, run.schedule)
    assert state >= sum(a.nbytes for a in jax.tree.leaves(run.problem.params))
    assert residuals > state
    choose = lambda storage, budget: sgd_ie.choose_storage(
        storage, T, state, residuals, budget
    )
    assert choose("auto", T * residuals) == "all"
    assert choose("auto", T * residuals - 1) == "states"
    assert choose("auto", T * state + residuals - 1) == ("nested", 2)
    assert choose("nested", 10**12) == ("nested", 2)
    assert sgd_ie.nested_states(T, 2) == 3 + 3  # blocks of 3: 3 kept + 3 inside
    with pytest.raises(ValueError, match="below what the reverse pass keeps"):
        choose("auto", residuals)
    want = accjax.sgd_ie(run, query, storage="all").values
    for budget in (T * residuals, T * state + residuals, 7 * state + residuals):
        got = accjax.sgd_ie(run, query, memory_budget=budget).values
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-16)
    with pytest.raises(ValueError, match="memory_budget"):
        accjax.sgd_ie(run, query, storage="all", memory_budget=10**9)
    with pytest.raises(ValueError, match="memory_budget"):
        accjax.sgd_ie(run, query, memory_budget=0)
    args = (run.problem, run.optimizer, run.schedule)
    for storage in ("all", "states"):
        compiled = sgd_ie._sgd_ie_all.lower(
            *args, query=query, with_progress=False, storage=storage
        ).compile()
        plan = compiled.memory_analysis().temp_size_in_bytes
        assert sgd_ie.reverse_storage_bytes(storage, T, state, residuals) >= 0.5 * plan


def test_sgd_ie_step_bytes_are_cached_on_shapes_not_values(mlp_setup):
    """The estimate is traced once per (shapes, static fields, optimizer): a
    problem with other values reuses it, one with more examples per batch does
    not, and every answer equals the uncached one."""
    from accjax._src.estimators import sgd_ie

    problem, run, _, _ = mlp_setup
    uncached = lambda r: sgd_ie._step_bytes.__wrapped__(
        *sgd_ie._step_bytes_key(r.problem, r.optimizer, r.schedule)
    )
    sizes = sgd_ie.step_bytes(run.problem, run.optimizer, run.schedule)
    assert sizes == uncached(run)
    hits = sgd_ie._step_bytes.cache_info().hits
    shifted = dataclasses.replace(
        problem, params=jax.tree.map(lambda p: p + 1.0, problem.params)
    )
    other = accjax.train(shifted, run.optimizer, batch_size=5, epochs=3)
    assert sgd_ie.step_bytes(other.problem, other.optimizer, other.schedule) == sizes
    assert sgd_ie._step_bytes.cache_info().hits == hits + 1
    wider = accjax.train(problem, run.optimizer, batch_size=10, epochs=3)
    got = sgd_ie.step_bytes(wider.problem, wider.optimizer, wider.schedule)
    assert got == uncached(wider) and got[1] > sizes[1]
    assert sgd_ie._step_bytes.cache_info().hits == hits + 1


def test_sgd_ie_storage_is_checked_and_saves_memory(mlp_setup):
    from accjax._src.estimators import common
    from accjax._src.estimators.sgd_ie import _sgd_ie_all

    _, run, query, _ = mlp_setup
    with pytest.raises(ValueError, match="`storage`"):
        accjax.sgd_ie(run, query, storage=0)
    with pytest.raises(ValueError, match="`storage`"):
        accjax.sgd_ie(run, query, storage="some")
    with pytest.raises(ValueError, match="`storage`"):
        accjax.sgd_ie(run, query, storage=True)
    temp = {}
    for storage in ("all", "states"):
        compiled = _sgd_ie_all.lower(
            run.problem, run.optimizer, run.schedule,
            query=jax.tree_util.Partial(query.func, *query.args),
            with_progress=False, storage=storage,
        ).compile()  # fmt: skip
        temp[storage] = common.footprint(compiled)
    assert temp["states"] <= temp["all"]


def test_mean_loss_in_chunks_equals_the_plain_mean():
    """A set larger than `batch_size` (with a remainder) gives the plain mean's
    value, gradient and Hessian-vector product."""
    problem, _, _ = tanh_mlp_problem()
    val = problem.data
    params = jax.tree.map(lambda a: a + 0.3, problem.params)
    plain = lambda p: jnp.mean(jax.vmap(problem.loss, in_axes=(None, 0))(p, val))
    chunked = accjax.mean_loss(problem.loss, val, batch_size=5)
    assert problem.num_examples % 5 != 0
    np.testing.assert_allclose(chunked(params), plain(params), rtol=1e-13)
    for got, want in zip(
        jax.tree.leaves(jax.grad(chunked)(params)),
        jax.tree.leaves(jax.grad(plain)(params)),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    hvp = lambda f: jax.jvp(jax.grad(f), (params,), (params,))[1]
    for got, want in zip(
        jax.tree.leaves(hvp(chunked)), jax.tree.leaves(hvp(plain)), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="batch_size"):
        accjax.mean_loss(problem.loss, val, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        accjax.mean_loss(problem.loss, val, batch_size=2.5)


@pytest.mark.parametrize("contraction", ["adjoint", "none"])
def test_acc_sgd_ie_fast_matches_its_formula_written_out(contraction):
    """3 epochs of a tanh MLP, decaying lr, L2: the carried-vector reverse sweep
    against the pairs-of-occurrences formula with dense Hessians."""
    problem, val, _ = tanh_mlp_problem()
    run = accjax.train(problem, optax.sgd(decaying_lr), batch_size=4, epochs=3, seed=1)
    query = accjax.mean_loss(problem.loss, val)
    lrs = [float(decaying_lr(t)) for t in range(run.num_steps)]
    want = reference.acc_fast(
        problem.loss, problem.params, problem.data, run.schedule, lrs,
        problem.l2, query, contraction,
    )  # fmt: skip
    got = accjax.acc_sgd_ie_fast(
        run, query, learning_rate=decaying_lr, contraction=contraction
    )
    np.testing.assert_allclose(got.values, want, rtol=1e-9, atol=1e-14)
    acc = accjax.acc_sgd_ie(run, query).values
    assert np.max(np.abs(got.values - acc)) > 1e-8  # an approximation here


def test_acc_sgd_ie_fast_limits():
    """One epoch: SGD-IE (and ACC) exactly. Isotropic curvature (every loss
    (c/2)|theta - x_i|^2) and two occurrences per example: ACC exactly, since the
    steps between them scale every vector by the adjoint's contraction."""
    problem, val, _ = tanh_mlp_problem()
    query = accjax.mean_loss(problem.loss, val)
    run = accjax.train(problem, optax.sgd(0.3), batch_size=4, epochs=1, seed=0)
    fast = accjax.acc_sgd_ie_fast(run, query, learning_rate=0.3).values
    np.testing.assert_allclose(fast, accjax.sgd_ie(run, query).values, rtol=1e-10)
    np.testing.assert_allclose(fast, accjax.acc_sgd_ie(run, query).values, rtol=1e-10)

    rng = np.random.RandomState(3)
    x = jnp.asarray(rng.randn(11, 3))
    loss = lambda p, xi: 0.7 * jnp.sum((p["w"] - xi) ** 2)
    iso = accjax.Problem(loss, {"w": jnp.asarray(rng.randn(3))}, x, l2=0.05)
    target = jnp.asarray([0.3, -0.2, 0.5])
    query = lambda p: jnp.sum((p["w"] - target) ** 2) + jnp.sum(p["w"] ** 3)
    run = accjax.train(iso, optax.sgd(0.2), batch_size=3, epochs=2, seed=0)
    fast = accjax.acc_sgd_ie_fast(run, query, learning_rate=0.2).values
    acc = accjax.acc_sgd_ie(run, query).values
    np.testing.assert_allclose(fast, acc, rtol=1e-10, atol=1e-14)
    assert np.max(np.abs(acc - accjax.sgd_ie(run, query).values)) > 1e-4
    run3 = accjax.train(iso, optax.sgd(0.2), batch_size=3, epochs=3, seed=0)
    gap = accjax.acc_sgd_ie_fast(run3, query, learning_rate=0.2).values
    assert np.max(np.abs(gap - accjax.acc_sgd_ie(run3, query).values)) > 1e-10


def test_acc_sgd_ie_fast_warns_where_the_optimizer_carries_gradients():
    """Momentum and Adam carry each gradient into later steps, which the fast ACC
    leaves out: a warning; plain SGD with a schedule (an int count only): none."""
    problem, val, _ = tanh_mlp_problem()
    query = accjax.mean_loss(problem.loss, val)
    for optimizer in (optax.sgd(0.1, momentum=0.9), optax.adamw(1e-3)):
        run = accjax.train(problem, optimizer, batch_size=4, epochs=2, seed=0)
        with pytest.warns(UserWarning, match="carries gradients in its state"):
            accjax.acc_sgd_ie_fast(run, query)
    schedule = optax.sgd(optax.linear_schedule(0.3, 0.1, 10))
    run = accjax.train(problem, schedule, batch_size=4, epochs=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accjax.acc_sgd_ie_fast(run, query)


def test_acc_sgd_ie_fast_checks_its_inputs():
    problem, val, _ = tanh_mlp_problem()
    query = accjax.mean_loss(problem.loss, val)
    run = accjax.train(problem, optax.sgd(0.3), batch_size=4, epochs=2, seed=0)
    with pytest.raises(ValueError, match="plain SGD"):
        accjax.acc_sgd_ie_fast(run, query, learning_rate=0.1)
    adam = accjax.train(problem, optax.adam(0.01), batch_size=4, epochs=2, seed=0)
    with pytest.raises(ValueError, match="plain SGD"):
        accjax.acc_sgd_ie_fast(adam, query, learning_rate=0.01)
    with pytest.raises(ValueError, match="contraction"):
        accjax.acc_sgd_ie_fast(run, query, learning_rate=0.3, contraction="diag")
    vector = lambda p: jnp.stack([query(p), query(p) ** 2])
    with pytest.raises(ValueError, match="scalar query"):
        accjax.acc_sgd_ie_fast(run, vector, learning_rate=0.3)
    with pytest.raises(TypeError, match="learning_rate"):
        accjax.acc_sgd_ie_fast(run, query, learning_rate="0.3")
    twice = np.asarray(run.schedule).copy()
    twice[1, 1] = twice[1, 0]
    doubled = accjax.train(problem, optax.sgd(0.3), schedule=twice)
    with pytest.raises(ValueError, match="step 1 holds example"):
        accjax.acc_sgd_ie_fast(doubled, query, learning_rate=0.3)
