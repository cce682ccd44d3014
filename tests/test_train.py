import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import accjax
from tests import reference
from tests.test_estimators import (
    decaying_lr,
    lrs_of,
    quadratic_problem,
    tanh_mlp_problem,
)


def test_train_matches_plain_sgd_loop():
    problem, _, _ = tanh_mlp_problem()
    run = accjax.train(problem, optax.sgd(decaying_lr), batch_size=5, epochs=3)
    thetas, unravel = reference.trajectory(
        problem.loss,
        problem.params,
        problem.data,
        run.schedule,
        lrs_of(run.num_steps),
        problem.l2,
    )
    got = jax.flatten_util.ravel_pytree(run.params)[0]
    np.testing.assert_allclose(got, thetas[-1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("numpy_data", [False, True])
def test_user_loop_with_make_step_replays_identically(numpy_data):
    problem, _, _ = tanh_mlp_problem()
    if numpy_data:  # jitting a closure over NumPy data indexes them with tracers
        data = jax.tree.map(np.asarray, problem.data)
        problem = accjax.Problem(problem.loss, problem.params, data)
    optimizer = optax.adam(0.05)
    step = jax.jit(accjax.make_step(problem, optimizer))
    state = accjax.TrainState(problem.params, optimizer.init(problem.params))
    rng = np.random.RandomState(0)
    used = []
    for _ in range(7):  # a user's own batching, recorded as it goes
        batch = rng.choice(13, size=4, replace=False)
        state = step(state, batch)
        used.append(batch)
    run = accjax.train(problem, optimizer, schedule=np.stack(used))
    for a, b in zip(
        jax.tree.leaves(run.params), jax.tree.leaves(state.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_float32_by_default():
    problem, _, _ = tanh_mlp_problem(dtype=jnp.float32)
    run = accjax.train(problem, optax.sgd(0.1), batch_size=4, epochs=1)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(run.params))


def test_nonfinite_training_names_the_step():
    problem, _ = quadratic_problem(l2=0.0)
    data = (problem.data[0] * 100.0, problem.data[1])
    problem = accjax.Problem(problem.loss, problem.params, data)
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        accjax.train(problem, optax.sgd(10.0), batch_size=5, epochs=50)


@pytest.mark.parametrize(
    "schedule, match",
    [
        (np.array([[0, 1], [2, 13]]), r"index 13 at step 1, slot 1"),
        (np.array([[0, 1], [-2, 3]]), r"index -2 at step 1"),
        (np.array([0, 1, 2]), "shape \\(num_steps, batch_size\\)"),
        (np.array([[0.0, 1.0]]), "int array"),
        (np.array([[0, 1], [-1, -1]]), "step 1 holds only padding"),
    ],
)
def test_bad_schedule(schedule, match):
    problem, _ = quadratic_problem()
    with pytest.raises(ValueError, match=match):
        accjax.train(problem, optax.sgd(0.1), schedule=schedule)


def test_schedule_or_batch_size_and_epochs():
    problem, _ = quadratic_problem()
    with pytest.raises(ValueError, match="batch_size"):
        accjax.train(problem, optax.sgd(0.1), batch_size=4)
    with pytest.raises(ValueError, match="not both"):
        accjax.train(problem, optax.sgd(0.1), schedule=np.zeros((2, 2), int), epochs=1)


def test_bad_problem():
    problem, _ = quadratic_problem()
    x, y = problem.data
    with pytest.raises(ValueError, match="leading axis"):
        bad = accjax.Problem(problem.loss, problem.params, (x, y[:-1]))
        accjax.train(bad, optax.sgd(0.1), batch_size=2, epochs=1)
    with pytest.raises(ValueError, match="must return a scalar"):
        vector_loss = lambda p, ex: ex[0] * p["w"]
        accjax.train(
            accjax.Problem(vector_loss, problem.params, problem.data),
            optax.sgd(0.1),
            batch_size=2,
            epochs=1,
        )
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        accjax.train(problem, lambda g: g, batch_size=2, epochs=1)


@pytest.mark.parametrize("l2", [-1.0, float("nan"), float("inf"), -1])
def test_bad_l2_is_refused_when_the_problem_is_built(l2):
    problem, _ = quadratic_problem()
    with pytest.raises(ValueError, match=r"`l2` must be a finite float >= 0.*got"):
        accjax.Problem(problem.loss, problem.params, problem.data, l2=l2)


def test_bad_l2_array_or_type_is_refused_before_training():
    problem, _ = quadratic_problem()
    with pytest.raises(TypeError, match="`l2` must be a float >= 0; got '0.1'"):
        accjax.Problem(problem.loss, problem.params, problem.data, l2="0.1")
    for l2, error in [(jnp.array(-0.5), ValueError), (jnp.ones(2), TypeError)]:
        bad = accjax.Problem(problem.loss, problem.params, problem.data, l2=l2)
        with pytest.raises(error, match="`l2` must be"):
            accjax.train(bad, optax.sgd(0.1), batch_size=2, epochs=1)
    # Traced coefficients (vmap over l2) are left alone.
    ok = accjax.Problem(problem.loss, problem.params, problem.data, l2=0.0)
    assert jax.tree.map(lambda a: a, ok).l2 == 0.0


@pytest.fixture(scope="module")
def small_run():
    problem, val = quadratic_problem()
    run = accjax.train(problem, optax.sgd(0.1), batch_size=5, epochs=2)
    return run, accjax.mean_loss(problem.loss, val)


@pytest.mark.parametrize("estimator", ["loo_retrain", "sgd_ie", "acc_sgd_ie"])
@pytest.mark.parametrize(
    "targets, match",
    [
        (np.array([0, 13]), r"holds 13, outside \[0, 13\)"),
        (np.array([-1]), r"holds -1"),
        (np.array([2, 5, 2]), "repeats index 2"),
        (np.array([[0, 1]]), "1-D int array"),
        (np.array([0.5]), "1-D int array"),
        (np.array([], int), "empty"),
    ],
)
def test_bad_targets(small_run, estimator, targets, match):
    run, query = small_run
    with pytest.raises(ValueError, match=match):
        getattr(accjax, estimator)(run, query, targets=targets)


@pytest.mark.parametrize("estimator", ["loo_retrain", "sgd_ie", "acc_sgd_ie"])
def test_bad_query(small_run, estimator):
    run, _ = small_run
    with pytest.raises(ValueError, match="scalar or a vector"):
        getattr(accjax, estimator)(run, lambda p: jnp.outer(p["w"], p["w"]))
    with pytest.raises(TypeError, match="callable"):
        getattr(accjax, estimator)(run, 3.0)


def test_bad_acc_options(small_run):
    run, query = small_run
    with pytest.raises(ValueError, match="chunk_size"):
        accjax.acc_sgd_ie(run, query, chunk_size=0)
    with pytest.raises(ValueError, match="readout"):
        accjax.acc_sgd_ie(run, query, readout="quadratic")
    with pytest.raises(ValueError, match=r"shape \(num_steps,\)"):
        accjax.acc_sgd_ie(run, query, window=np.ones(3, bool))
    with pytest.raises(ValueError, match=r"step indices must lie in \[0, 6\)"):
        accjax.acc_sgd_ie(run, query, window=np.array([0, 6]))
