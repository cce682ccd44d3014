"""`models.TextTransformer` through `from_nnx`: masking, dropout modes, and the
first try of a transformer user: optax.adamw's defaults with dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import accjax

VOCAB, LENGTH, N = 40, 8, 16


def _tokens(seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, LENGTH + 1, N)
    tokens = rng.integers(2, 25, (N, LENGTH))
    tokens[np.arange(LENGTH)[None] >= lengths[:, None]] = 0
    tokens[rng.random(N) < 0.3, 0] = 30  # a row few batches touch; 31-39: none
    labels = (tokens[:, :3].sum(1) % 2).astype(np.int32)
    return jnp.asarray(tokens), jnp.asarray(labels)


def _model(dropout=0.1, pooling="mean", dtype=jnp.float64):
    return accjax.models.TextTransformer(
        vocab_size=VOCAB, max_len=LENGTH, num_classes=2, dim=8, heads=2,
        num_layers=1, dropout=dropout, pooling=pooling, rngs=nnx.Rngs(0),
        dtype=dtype,
    )  # fmt: skip


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_padding_is_ignored(pooling):
    model = accjax.models.from_nnx(_model(pooling=pooling))
    tokens = jnp.array([5, 6, 7, 0, 0, 0, 0, 0])
    other = tokens.at[3:].set(0)
    out = model.apply(model.params, tokens)
    assert out.shape == (2,)
    # what sits behind the padding never reaches the output: here the padding
    # positions' embeddings are changed instead of the tokens
    params = jax.tree.map(lambda a: a, model.params)
    params["positions"]["embedding"] = params["positions"]["embedding"].at[5].add(1.0)
    np.testing.assert_allclose(model.apply(params, other), out, rtol=1e-12)
    moved = model.apply(params, jnp.array([5, 6, 7, 8, 9, 10, 0, 0]))
    assert not np.allclose(moved, model.apply(model.params, tokens))


def test_dropout_decides_stochastic_and_evaluation_is_deterministic():
    assert accjax.models.from_nnx(_model(dropout=0.1)).stochastic
    deterministic = accjax.models.from_nnx(_model(dropout=0.0))
    assert not deterministic.stochastic
    deterministic.problem(_tokens())  # no key needed
    model = accjax.models.from_nnx(_model())
    x = _tokens()[0][0]
    np.testing.assert_array_equal(
        model.apply(model.params, x), model.apply(model.params, x)
    )
    train = [model.loss(model.params, (x, 1), jax.random.key(i)) for i in range(3)]
    assert len(set(np.asarray(train).round(12).tolist())) > 1  # dropout draws
    with pytest.raises(ValueError, match="`heads`"):
        accjax.models.TextTransformer(
            vocab_size=5, max_len=4, num_classes=2, dim=6, heads=4, rngs=nnx.Rngs(0)
        )


def test_adamw_defaults_with_dropout_acc_is_finite_and_near_exact():
    """optax.adamw with eps_root = 0, embedding rows that batches never touch,
    dropout through the Problem's key: Adam-IE and ACC-Adam-IE are finite, and
    ACC is much closer to exact retraining (float64, lr 1e-4: the
    linearisation of the propagation is accurate, Adam's step is not linear
    in the removed example's weight)."""
    model = accjax.models.from_nnx(_model())
    problem = model.problem(_tokens(), key=jax.random.key(1))
    run = accjax.train(problem, optax.adamw(1e-4), batch_size=4, epochs=2)
    evaluate = lambda p, ex: accjax.models.softmax_cross_entropy(
        model.apply(p, ex[0]), ex[1]
    )
    tokens, labels = _tokens(seed=1)
    query = accjax.mean_loss(evaluate, (tokens[:6], labels[:6]))
    exact = accjax.loo_retrain(run, query)
    sgd = accjax.sgd_ie(run, query)
    acc = accjax.acc_sgd_ie(run, query)
    assert np.all(np.isfinite(sgd.values)) and np.all(np.isfinite(acc.values))
    rmse_acc = accjax.metrics.rmse(exact, acc)
    rmse_sgd = accjax.metrics.rmse(exact, sgd)
    assert rmse_acc < 0.5 * rmse_sgd, (rmse_acc, rmse_sgd)
    assert accjax.metrics.kendall(exact, acc) > 0.9
