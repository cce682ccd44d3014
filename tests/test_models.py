import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import accjax


def test_mlp_and_logreg_shapes_and_loss():
    params, apply = accjax.models.mlp(jax.random.PRNGKey(0), 5, (8, 8))
    assert [p["w"].shape for p in params] == [(5, 8), (8, 8), (8, 1)]
    assert all(p["w"].dtype == jnp.float32 for p in params)
    bound = 1 / np.sqrt(5)
    assert np.all(np.abs(params[0]["w"]) <= bound)
    x = jnp.ones(5)
    assert apply(params, x).shape == ()
    lr_params, lr_apply = accjax.models.logistic_regression(jax.random.PRNGKey(1), 5)
    logit = lr_apply(lr_params, x)
    loss = accjax.models.binary_loss(lr_apply)
    for y in (0.0, 1.0):  # -y log sigma(z) - (1 - y) log(1 - sigma(z))
        p = 1 / (1 + np.exp(-float(logit)))
        want = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        np.testing.assert_allclose(loss(lr_params, (x, y)), want, rtol=1e-5)
        err = accjax.models.binary_error(lr_apply)(lr_params, (x, y))
        assert float(err) == float((float(logit) > 0) != y)


def test_flax_nnx_module_plugs_in_and_matches_plain_mlp():
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(12, 3))
    y = jnp.asarray(rng.randint(0, 2, 12), jnp.float64)
    model = nnx.Sequential(
        nnx.Linear(3, 4, rngs=nnx.Rngs(0), param_dtype=jnp.float64),
        nnx.relu,
        nnx.Linear(4, 1, rngs=nnx.Rngs(1), param_dtype=jnp.float64),
    )
    graphdef, state = nnx.split(model, nnx.Param)

    def nnx_loss(params, example):
        xi, yi = example
        logit = nnx.merge(graphdef, params)(xi)[0]
        return accjax.models.binary_cross_entropy(logit, yi)

    _, apply = accjax.models.mlp(jax.random.PRNGKey(0), 3, (4,), dtype=jnp.float64)
    layers = [model.layers[0], model.layers[2]]
    plain = [{"w": m.kernel[...], "b": m.bias[...]} for m in layers]
    schedule = accjax.make_schedule(12, 4, 3)
    estimates = []
    for loss, params in ((nnx_loss, state), (accjax.models.binary_loss(apply), plain)):
        problem = accjax.Problem(loss, params, (x, y))
        run = accjax.train(problem, optax.sgd(0.2), schedule=schedule)
        query = accjax.mean_loss(loss, (x[:5], y[:5]))
        estimates.append(accjax.acc_sgd_ie(run, query).values)
    np.testing.assert_allclose(estimates[0], estimates[1], rtol=1e-10, atol=1e-14)
