"""The reference experiments' models as plain `(params, apply)` pairs.

`apply(params, x) -> logit` takes ONE example's features `(num_features,)` and
returns one logit; `binary_loss(apply)` turns it into the per-example loss of an
`accjax.Problem`, whose examples are `(x, y)` rows with labels in {0, 1}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

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


def _logistic_apply(params, x):
    return (x @ params["w"] + params["b"])[0]


def _mlp_apply(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return (x @ params[-1]["w"] + params[-1]["b"])[0]


def logistic_regression(key, num_features: int, *, dtype=jnp.float32):
    """One linear logit, `x @ w + b`. Returns `(params, apply)`.

    `apply` is one module-level function whatever the size or seed, so runs
    over many seeds share compiled estimators.
    """
    return _linear_init(key, num_features, 1, dtype), _logistic_apply


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
    return params, _mlp_apply


def binary_cross_entropy(logit, label):
    """Binary cross-entropy with logits (labels in {0, 1}), computed stably."""
    return jax.nn.softplus(logit) - label * logit


@dataclasses.dataclass(frozen=True)
class _BinaryLoss:
    apply: Callable

    def __call__(self, params, example):
        x, y = example
        return binary_cross_entropy(self.apply(params, x), y)


@dataclasses.dataclass(frozen=True)
class _BinaryError:
    apply: Callable

    def __call__(self, params, example):
        x, y = example
        wrong = (self.apply(params, x) > 0) != (y > 0.5)
        return wrong.astype(jnp.result_type(float))


def binary_loss(apply):
    """`loss(params, (x, y))`: binary cross-entropy of `apply(params, x)`.

    Equal (`==`) for equal `apply`, so jit caches keyed on the loss are shared.
    """
    return _BinaryLoss(apply)


def binary_error(apply):
    """`error(params, (x, y))`: 1 where the logit's sign disagrees with the label."""
    return _BinaryError(apply)
