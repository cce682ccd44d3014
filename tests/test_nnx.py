"""flax nnx models through `accjax.models.from_nnx`, against plain nnx loops."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import accjax

jax.config.update("jax_enable_x64", True)

N, D, C = 12, 3, 2
LR, L2 = 0.2, 1e-3
KEY = jax.random.key(3)
SCHEDULE = accjax.make_schedule(N, 4, 2, seed=1)


class Net(nnx.Module):
    def __init__(self, rngs, norm=None):
        self.l1 = nnx.Linear(D, 6, rngs=rngs, param_dtype=jnp.float64)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.norm = norm
        self.l2 = nnx.Linear(6, C, rngs=rngs, param_dtype=jnp.float64)

    def __call__(self, x):
        h = jax.nn.relu(self.l1(x))
        if self.norm is not None:
            h = self.norm(h)
        return self.l2(self.drop(h))


def _data():
    rng = np.random.RandomState(0)
    return jnp.asarray(rng.randn(N, D)), jnp.asarray(rng.randint(0, C, N))


def _model():
    return Net(nnx.Rngs(params=0, dropout=1))


def plain_nnx_train(weights):
    """SGD written with nnx itself: at step t each example's model is reseeded
    with fold_in(fold_in(fold_in(KEY, t), i), 1) (from_nnx's documented rule)."""
    x, y = _data()
    graphdef, params, rest = nnx.split(_model(), nnx.Param, ...)

    def example_grad(params, i, t):  # eagerly, with nnx's own grad
        model = nnx.merge(graphdef, params, rest)
        k = jax.random.fold_in(jax.random.fold_in(KEY, t), i)
        nnx.reseed(model, dropout=jax.random.fold_in(k, 1))

        def loss(model):
            logits = model(x[i][None])[0]
            return jax.nn.logsumexp(logits) - logits[y[i]]

        return nnx.grad(loss)(model)

    for t, row in enumerate(np.asarray(SCHEDULE)):
        batch = [int(i) for i in row if i >= 0]
        g = jax.tree.map(lambda p: L2 * p, params)
        for i in batch:
            gi = example_grad(params, i, t)
            w = weights[i] / len(batch)
            g = jax.tree.map(lambda a, b, w=w: a + w * b, g, gi)
        params = jax.tree.map(lambda p, g: p - LR * g, params, g)
    return params


def _query(model):
    x, y = _data()
    return accjax.mean_loss(
        lambda p, ex: accjax.models.softmax_cross_entropy(model.apply(p, ex[0]), ex[1]),
        (x[:5] + 0.1, y[:5]),
    )


def test_dropout_model_trains_like_a_plain_nnx_loop():
    model = accjax.models.from_nnx(_model())
    assert model.stochastic
    run = accjax.train(
        model.problem(_data(), l2=L2, key=KEY), optax.sgd(LR), schedule=SCHEDULE
    )
    want = plain_nnx_train(jnp.ones(N))
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_loo_on_the_dropout_model_matches_plain_nnx_retraining():
    model = accjax.models.from_nnx(_model())
    run = accjax.train(
        model.problem(_data(), l2=L2, key=KEY), optax.sgd(LR), schedule=SCHEDULE
    )
    query = _query(model)
    targets = jnp.array([2, 9])
    base = query(plain_nnx_train(jnp.ones(N)))
    want = [query(plain_nnx_train(jnp.ones(N).at[k].set(0.0))) - base for k in [2, 9]]
    loo = accjax.loo_retrain(run, query, targets=targets)
    np.testing.assert_allclose(loo.values, want, rtol=1e-9, atol=1e-14)
    # (ACC's exactness under keys is tested on a per-mask quadratic in
    # test_randomness.py; on this ReLU net at lr 0.2 it is a first-order estimate)


def test_apply_is_the_evaluation_mode_forward():
    net = _model()
    model = accjax.models.from_nnx(net)
    x, _ = _data()
    p = model.params
    h = jax.nn.relu(x @ p["l1"]["kernel"][...] + p["l1"]["bias"][...][None])
    want = h @ p["l2"]["kernel"][...] + p["l2"]["bias"][...][None]  # no dropout
    got = jax.vmap(model.apply, in_axes=(None, 0))(p, x)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # the training loss does drop units, and replays for a fixed key
    ex = (x[0], 1)
    a, b = (model.loss(p, ex, jax.random.key(s)) for s in (0, 1))
    assert a == model.loss(p, ex, jax.random.key(0)) and a != b


def test_batchnorm_in_training_mode_is_refused_with_the_alternatives():
    with pytest.raises(
        ValueError, match="BatchNorm in training mode at norm.*LayerNorm"
    ):
        accjax.models.from_nnx(Net(nnx.Rngs(0), nnx.BatchNorm(6, rngs=nnx.Rngs(0))))
    frozen = nnx.BatchNorm(6, use_running_average=True, rngs=nnx.Rngs(0))
    accjax.models.from_nnx(Net(nnx.Rngs(0), frozen))
    accjax.models.from_nnx(Net(nnx.Rngs(0), nnx.LayerNorm(6, rngs=nnx.Rngs(0))))


def test_keys_are_required_exactly_when_the_model_is_stochastic():
    model = accjax.models.from_nnx(_model())
    with pytest.raises(ValueError, match="pass `key`"):
        model.problem(_data())
    with pytest.raises(TypeError, match="needs a key"):
        accjax.train(
            accjax.Problem(model.loss, model.params, _data()),
            optax.sgd(LR),
            schedule=SCHEDULE,
        )
    mlp = nnx.Sequential(nnx.Linear(D, C, rngs=nnx.Rngs(0), param_dtype=jnp.float64))
    det = accjax.models.from_nnx(mlp)
    assert not det.stochastic
    with pytest.raises(ValueError, match="deterministic"):
        det.problem(_data(), key=KEY)
    accjax.train(det.problem(_data()), optax.sgd(LR), schedule=SCHEDULE)
    with pytest.raises(TypeError, match="nnx.Module"):
        accjax.models.from_nnx(lambda x: x)


def test_random_crop_flip_is_a_shift_of_the_padded_image_and_flips_half():
    x = jnp.asarray(np.random.RandomState(0).rand(6, 5, 2))
    padded = np.pad(np.asarray(x), ((2, 2), (2, 2), (0, 0)))
    flips = 0
    for s in range(40):
        out = np.asarray(accjax.models.random_crop_flip(x, jax.random.key(s), pad=2))
        found = [
            (dy, dx, f)
            for dy in range(5)
            for dx in range(5)
            for f in (0, 1)
            if np.array_equal(
                out,
                (lambda c: c[:, ::-1] if f else c)(padded[dy : dy + 6, dx : dx + 5]),
            )
        ]
        assert found, s
        flips += found[0][2]
    assert 8 <= flips <= 32


def test_random_crop_draws_every_offset_of_the_padded_image_and_never_flips():
    x = jnp.asarray(np.random.RandomState(1).rand(4, 4, 1))
    padded = np.pad(np.asarray(x), ((1, 1), (1, 1), (0, 0)))
    crop = jax.jit(accjax.models.random_crop, static_argnames="pad")
    seen = set()
    for s in range(200):
        out = np.asarray(crop(x, jax.random.key(s), pad=1))
        found = [
            (dy, dx)
            for dy in range(3)
            for dx in range(3)
            if np.array_equal(out, padded[dy : dy + 4, dx : dx + 4])
        ]
        assert len(found) == 1, s
        seen.add(found[0])
    assert len(seen) == 9


def test_cifar_cnn_with_dropout_and_augmentation_runs_every_estimator():
    net = accjax.models.CifarCNN(
        rngs=nnx.Rngs(0),
        input_shape=(8, 8, 3),
        channels=(2, 3),
        hidden=4,
        dtype=jnp.float64,
    )
    model = accjax.models.from_nnx(net, augment=accjax.models.random_crop_flip)
    rng = np.random.RandomState(0)
    data = (jnp.asarray(rng.rand(8, 8, 8, 3)), jnp.asarray(rng.randint(0, 10, 8)))
    run = accjax.train(
        model.problem(data, key=KEY), optax.sgd(0.1), batch_size=4, epochs=2
    )
    query = accjax.mean_loss(
        lambda p, ex: accjax.models.softmax_cross_entropy(model.apply(p, ex[0]), ex[1]),
        data,
    )
    for estimate in [
        accjax.loo_retrain(run, query, targets=jnp.arange(3)),
        accjax.acc_sgd_ie(run, query, targets=jnp.arange(3)),
        accjax.sgd_ie(run, query, targets=jnp.arange(3)),
        accjax.tracin(run, query, learning_rate=0.1, targets=jnp.arange(3)),
    ]:
        assert estimate.values.shape == (3,) and bool(
            jnp.all(jnp.isfinite(estimate.values))
        )
    # the CPU convolution of the shipped layer is conv2d_valid's: SAME padding
    # checked against lax.conv_general_dilated
    conv = net.convs[0]
    x = data[0][:2]
    want = (
        jax.lax.conv_general_dilated(
            x, conv.w[...], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        + conv.b[...][None, None, None, :]
    )
    np.testing.assert_allclose(conv(x), want, rtol=1e-12, atol=1e-14)
