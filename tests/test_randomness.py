"""Problems with a key (dropout, augmentation): every estimator against plain
loops that derive each example's key themselves, fold_in(fold_in(key, t), i)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import accjax

jax.config.update("jax_enable_x64", True)

N, D, H = 24, 3, 5
LR, L2 = 0.1, 1e-3
KEY = jax.random.key(7)


def _data(seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(N, D)
    y = (x @ rng.randn(D) + 0.3 * rng.randn(N) > 0).astype(np.float64)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def mlp_loss(params, example, key):
    """A tanh MLP with dropout on the hidden units and a random input scaling
    (an "augmentation"): logistic loss."""
    x = example["x"] * (1 + 0.2 * jax.random.normal(jax.random.fold_in(key, 1), ()))
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    keep = jax.random.bernoulli(key, 0.6, h.shape)
    h = jnp.where(keep, h / 0.6, 0.0)
    z = h @ params["w2"] + params["b2"]
    return jnp.logaddexp(0.0, z) - example["y"] * z


def quad_loss(params, example, key):
    """Quadratic in the parameters for every fixed mask: ACC is exact."""
    keep = jax.random.bernoulli(key, 0.5, (D,))
    return 0.5 * (example["x"] @ jnp.where(keep, params["w"], 0.0) - example["y"]) ** 2


def _mlp_params():
    rng = np.random.RandomState(1)
    return {
        "w1": jnp.asarray(0.5 * rng.randn(D, H)),
        "b1": jnp.zeros(H),
        "w2": jnp.asarray(0.5 * rng.randn(H)),
        "b2": jnp.zeros(()),
    }


def _problem(loss=mlp_loss, params=None, key=KEY):
    params = _mlp_params() if params is None else params
    return accjax.Problem(loss, params, _data(), l2=L2, key=key)


SCHEDULE = accjax.make_schedule(N, 5, 3, seed=3)  # ragged: 5 steps per epoch


def _query(params):
    val = _data(seed=5)
    # a deterministic read-out (no dropout): the key of a fixed step, any value
    fixed = jax.random.key(99)
    losses = jax.vmap(lambda ex: mlp_loss(params, ex, fixed))(val)
    return jnp.mean(losses)


def _quad_query(params):
    return jnp.sum(params["w"] ** 2) + params["w"][0]


# --- the independent loops -------------------------------------------------


def _row(data, i):
    return jax.tree.map(lambda a: a[i], data)


def plain_objective(loss, p, batch, t, w, key=KEY):
    """Step t's objective, each example's key derived here without accjax."""
    data, total = _data(), 0.0
    for i in batch:
        k = jax.random.fold_in(jax.random.fold_in(key, t), int(i))
        total = total + w[i] * loss(p, _row(data, i), k)
    squares = sum(jnp.vdot(a, a) for a in jax.tree.leaves(p))
    return total / len(batch) + 0.5 * L2 * squares


def plain_train(loss, params, weights, optimizer=None, key=KEY):
    """A Python loop: at step t, example i's loss gets its own key;
    `weights` (n,) multiplies each example's loss (|S| counts the batch's real
    slots whatever their weight)."""
    optimizer = optax.sgd(LR) if optimizer is None else optimizer
    state = optimizer.init(params)
    for t, row in enumerate(np.asarray(SCHEDULE)):
        batch = [int(i) for i in row if i >= 0]
        g = jax.grad(plain_objective, argnums=1)(loss, params, batch, t, weights, key)
        updates, state = optimizer.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_train_replays_the_keys_of_a_plain_loop():
    problem = _problem()
    run = accjax.train(problem, optax.sgd(LR), schedule=SCHEDULE)
    want = plain_train(mlp_loss, _mlp_params(), jnp.ones(N))
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(
        jax.random.key_data(accjax.step_key(KEY, 3, 5)),
        jax.random.key_data(jax.random.fold_in(jax.random.fold_in(KEY, 3), 5)),
    )
    # and the randomness matters: another key gives another model
    other = accjax.train(
        _problem(key=jax.random.key(8)), optax.sgd(LR), schedule=SCHEDULE
    )
    assert float(jnp.max(jnp.abs(other.params["w2"] - run.params["w2"]))) > 1e-3


def test_make_step_with_t_equals_train_and_refuses_a_missing_t():
    problem = _problem()
    optimizer = optax.adam(0.05)
    train_step = jax.jit(accjax.make_step(problem, optimizer))
    state = accjax.TrainState(problem.params, optimizer.init(problem.params))
    for t, row in enumerate(SCHEDULE):
        state = train_step(state, row, t)
    run = accjax.train(problem, optimizer, schedule=SCHEDULE)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(run.state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="pass the step index"):
        accjax.make_step(problem, optimizer)(state, SCHEDULE[0])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_loo_retrain_equals_plain_loops_without_k(optimizer):
    opt = optax.sgd(LR) if optimizer == "sgd" else optax.adam(0.05, eps_root=1e-12)
    problem = _problem()
    run = accjax.train(problem, opt, schedule=SCHEDULE)
    targets = jnp.array([0, 7, 19])
    got = accjax.loo_retrain(run, _query, targets=targets)
    base = _query(plain_train(mlp_loss, _mlp_params(), jnp.ones(N), opt))
    for j, k in enumerate(np.asarray(targets)):
        w = jnp.ones(N).at[k].set(0.0)
        want = _query(plain_train(mlp_loss, _mlp_params(), w, opt)) - base
        np.testing.assert_allclose(got.values[j], want, rtol=1e-9, atol=1e-13)


def test_sgd_ie_is_minus_the_weight_derivative_of_the_plain_loop():
    problem = _problem()
    run = accjax.train(problem, optax.sgd(LR), schedule=SCHEDULE)
    got = accjax.sgd_ie(run, _query)
    want = -jax.grad(lambda w: _query(plain_train(mlp_loss, _mlp_params(), w)))(
        jnp.ones(N)
    )
    np.testing.assert_allclose(got.values, want, rtol=1e-9, atol=1e-13)


def test_acc_is_exact_on_a_loss_quadratic_for_every_mask():
    params = {"w": jnp.asarray(np.random.RandomState(2).randn(D))}
    problem = _problem(quad_loss, params)
    run = accjax.train(problem, optax.sgd(LR), schedule=SCHEDULE)
    got = accjax.acc_sgd_ie(run, _quad_query, readout="nonlinear")
    base = _quad_query(plain_train(quad_loss, params, jnp.ones(N)))
    want = [
        _quad_query(plain_train(quad_loss, params, jnp.ones(N).at[k].set(0.0))) - base
        for k in range(N)
    ]
    np.testing.assert_allclose(got.values, want, rtol=1e-9, atol=1e-13)
    # with the masks drawn per (step, example), SGD-IE is not exact here
    sgd = accjax.sgd_ie(run, _quad_query)
    assert float(jnp.max(jnp.abs(sgd.values - jnp.asarray(want)))) > 1e-6


def test_acc_on_the_dropout_mlp_is_close_to_plain_retraining():
    problem = _problem()
    run = accjax.train(problem, optax.sgd(LR), schedule=SCHEDULE)
    got = accjax.acc_sgd_ie(run, _query, targets=jnp.array([3, 11]))
    exact = accjax.loo_retrain(run, _query, targets=jnp.array([3, 11]))
    np.testing.assert_allclose(got.values, exact.values, rtol=0.05)


def test_tracin_uses_each_steps_keys():
    problem = _problem()
    run = accjax.train(problem, optax.sgd(LR), schedule=SCHEDULE)
    got = accjax.tracin(run, _query, learning_rate=LR)
    got_self = accjax.tracin(run, "self", learning_rate=LR)
    # plain: sum over the steps holding k of lr/|S| <grad f, grad loss_k> at theta_t
    # (self-influence: of lr/|S| |grad loss_k|^2)
    data, params, want = _data(), _mlp_params(), np.zeros(N)
    want_self = np.zeros(N)
    for t, row in enumerate(np.asarray(SCHEDULE)):
        batch = [int(i) for i in row if i >= 0]
        q = jax.tree.leaves(jax.grad(_query)(params))
        for i in batch:
            k = jax.random.fold_in(jax.random.fold_in(KEY, t), i)
            g = jax.tree.leaves(jax.grad(mlp_loss)(params, _row(data, i), k))
            dot = sum(jnp.vdot(a, b) for a, b in zip(q, g, strict=True))
            want[i] += LR / len(batch) * float(dot)
            want_self[i] += LR / len(batch) * float(sum(jnp.vdot(a, a) for a in g))
        g = jax.grad(plain_objective, argnums=1)(
            mlp_loss, params, batch, t, jnp.ones(N)
        )
        params = jax.tree.map(lambda p, g: p - LR * g, params, g)
    np.testing.assert_allclose(got.values, want, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(got_self.values, want_self, rtol=1e-9)


def test_estimators_ignore_a_key_the_loss_does_not_use():
    """With a loss that ignores its key, the keyed problem gives the unkeyed
    results: the key reaches the loss and nothing else."""
    det = lambda p, ex: quad_loss(p, ex, jax.random.key(0))
    params = {"w": jnp.asarray(np.random.RandomState(2).randn(D))}
    keyed = accjax.Problem(lambda p, ex, key: det(p, ex), params, _data(), L2, key=KEY)
    plain = accjax.Problem(det, params, _data(), L2)
    runs = [accjax.train(p, optax.sgd(LR), schedule=SCHEDULE) for p in (keyed, plain)]
    for name, fn in [
        ("dvemb", lambda r: accjax.dvemb(r, _quad_query, learning_rate=LR)),
        ("influence_function", lambda r: accjax.influence_function(r, _quad_query)),
        (
            "tracin_cp",
            lambda r: accjax.tracin(
                r, _quad_query, learning_rate=LR, checkpoints="epochs"
            ),
        ),
    ]:
        a, b = (fn(r).values for r in runs)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=name)


def test_subset_retrain_and_cleanse_replay_the_keys():
    problem = _problem()
    run = accjax.train(problem, optax.sgd(LR), schedule=SCHEDULE)
    subsets = accjax.subset_retrain(run, _query, num_subsets=2, fraction=0.75)
    base = _query(plain_train(mlp_loss, _mlp_params(), jnp.ones(N)))
    for j in range(2):
        w = jnp.asarray(~subsets.removed[j], jnp.float64)
        want = _query(plain_train(mlp_loss, _mlp_params(), w)) - base
        np.testing.assert_allclose(subsets.values[j], want, rtol=1e-9, atol=1e-13)
    result = accjax.cleanse(
        run, _query, test=_query, estimator="sgd_ie", remove=(2,), random_draws=0
    )
    order = np.argsort(np.asarray(accjax.sgd_ie(run, _query).values), kind="stable")
    w = jnp.ones(N).at[order[:2]].set(0.0)
    want = float(_query(plain_train(mlp_loss, _mlp_params(), w)))
    (values,) = result.results["sgd_ie"].values()
    np.testing.assert_allclose(values[0, 0], want, rtol=1e-9)


def test_a_bad_key_or_a_missing_key_is_named():
    with pytest.raises(TypeError, match="`key` must be None or one PRNG key"):
        accjax.train(_problem(key=3), optax.sgd(LR), schedule=SCHEDULE)
    with pytest.raises(TypeError, match="`key` must be None or one PRNG key"):
        accjax.train(
            _problem(key=jax.random.split(KEY, 2)), optax.sgd(LR), schedule=SCHEDULE
        )
    with pytest.raises(TypeError, match=r"needs accjax.Problem\(\.\.\., key="):
        accjax.train(
            accjax.Problem(mlp_loss, _mlp_params(), _data()),
            optax.sgd(LR),
            schedule=SCHEDULE,
        )
    # a raw uint32 PRNGKey works the same as a typed key
    raw = accjax.train(
        _problem(key=jax.random.PRNGKey(7)), optax.sgd(LR), schedule=SCHEDULE
    )
    typed = accjax.train(
        _problem(key=jax.random.wrap_key_data(jax.random.PRNGKey(7))),
        optax.sgd(LR),
        schedule=SCHEDULE,
    )
    np.testing.assert_array_equal(raw.params["w2"], typed.params["w2"])
