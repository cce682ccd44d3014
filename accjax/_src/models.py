"""The reference experiments' models as plain `(params, apply)` pairs.

`apply(params, x) -> logit` takes ONE example's features `(num_features,)` and
returns one logit; `binary_loss(apply)` turns it into the per-example loss of an
`accjax.Problem`, whose examples are `(x, y)` rows with labels in {0, 1}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _linear_init(key, fan_in: int, fan_out: int, dtype):
    """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / jnp.sqrt(fan_in)
    wkey, bkey = jax.random.split(key)
    return {
        "w": jax.random.uniform(wkey, (fan_in, fan_out), dtype, -bound, bound),
        "b": jax.random.uniform(bkey, (fan_out,), dtype, -bound, bound),
    }


def logistic_regression(key, num_features: int, *, dtype=jnp.float32):
    """One linear logit, `x @ w + b`. Returns `(params, apply)`."""
    params = _linear_init(key, num_features, 1, dtype)

    def apply(params, x):
        return (x @ params["w"] + params["b"])[0]

    return params, apply


def mlp(key, num_features: int, widths=(8, 8), *, dtype=jnp.float32):
    """The reference MLP: Linear-ReLU per hidden width, then one logit.

    Returns `(params, apply)` with `params` a list of `{"w", "b"}` layers.
    """
    sizes = (num_features, *widths, 1)
    keys = jax.random.split(key, len(sizes) - 1)
    params = [
        _linear_init(k, fan_in, fan_out, dtype)
        for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]

    def apply(params, x):
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        return (x @ params[-1]["w"] + params[-1]["b"])[0]

    return params, apply


def binary_cross_entropy(logit, label):
    """Binary cross-entropy with logits (labels in {0, 1}), computed stably."""
    return jax.nn.softplus(logit) - label * logit


def binary_loss(apply):
    """`loss(params, (x, y))`: binary cross-entropy of `apply(params, x)`."""

    def loss(params, example):
        x, y = example
        return binary_cross_entropy(apply(params, x), y)

    return loss


def binary_error(apply):
    """`error(params, (x, y))`: 1 where the logit's sign disagrees with the label."""

    def error(params, example):
        x, y = example
        return ((apply(params, x) > 0).astype(jnp.result_type(float)) != y).astype(
            jnp.result_type(float)
        )

    return error
