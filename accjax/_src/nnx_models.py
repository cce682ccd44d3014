"""flax nnx modules as accjax problems: `from_nnx`, and the CIFAR-10 nnx CNN."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from accjax._src.models import _max_pool_2x2, conv2d_valid, softmax_cross_entropy
from accjax._src.problem import Problem


def _refuse_batch_coupling(model: nnx.Module) -> None:
    for path, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm) and not module.use_running_average:
            where = ".".join(map(str, path)) or "the model"
            raise ValueError(
                f"`model` has an nnx.BatchNorm in training mode at {where}: its output "
                "for one example depends on the other examples of the batch, which a "
                "per-example loss (and so removing one example) cannot express. Use "
                "nnx.LayerNorm or nnx.GroupNorm, or BatchNorm with "
                "use_running_average=True (frozen statistics)."
            )


def _reseeded(rng_state, key):
    """The j-th RngKey of the model (0-based, in `nnx.split` order) reseeded as
    `nnx.reseed` does with `fold_in(key, j + 1)` (its first draw,
    `fold_in(fold_in(key, j + 1), 0)`) and every RngCount set to 0: the
    stochastic layers draw from `key` alone (`fold_in(key, 0)` is the
    augmentation's)."""
    leaves, treedef = jax.tree.flatten(rng_state)
    is_key = [jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key) for leaf in leaves]
    positions = iter(range(1, sum(is_key) + 1))
    fresh = [
        jax.random.fold_in(jax.random.fold_in(key, next(positions)), 0)
        if k
        else jnp.zeros_like(leaf)
        for leaf, k in zip(leaves, is_key, strict=True)
    ]
    return jax.tree.unflatten(treedef, fresh)


@dataclasses.dataclass(frozen=True, eq=False)
class _NnxFunctions:
    """The module's graph, split once; hashed by identity so jit reuses it."""

    train_graph: nnx.GraphDef
    eval_graph: nnx.GraphDef
    rng_state: nnx.State
    rest: nnx.State
    loss: Callable
    augment: Callable | None

    @property
    def stochastic(self) -> bool:
        """Random layers (an `nnx.Rngs` stream) or an augmentation."""
        return bool(jax.tree.leaves(self.rng_state)) or self.augment is not None

    def forward(self, graph, params, x, key):
        rngs = self.rng_state if key is None else _reseeded(self.rng_state, key)
        model = nnx.merge(graph, params, rngs, self.rest)
        return model(x[None])[0]


@dataclasses.dataclass(frozen=True)
class _TrainLoss:
    fns: _NnxFunctions

    def __call__(self, params, example, key=None):
        if self.fns.stochastic and key is None:
            raise TypeError("the model is stochastic: the loss needs a key")
        x, y = example
        if self.fns.augment is not None:
            x = self.fns.augment(x, jax.random.fold_in(key, 0))
        out = self.fns.forward(self.fns.train_graph, params, x, key)
        return self.fns.loss(out, y)


@dataclasses.dataclass(frozen=True)
class _EvalApply:
    fns: _NnxFunctions

    def __call__(self, params, x):
        return self.fns.forward(self.fns.eval_graph, params, x, None)


@dataclasses.dataclass(frozen=True)
class NnxModel:
    """An nnx module split for accjax (see `from_nnx`).

    Attributes:
      params: the module's `nnx.Param` state, the `params` of a Problem.
      loss: the per-example training loss on `(x, y)` rows:
        `loss(params, example, key)` when `stochastic`, else `loss(params, example)`.
      apply: `apply(params, x)` for ONE example, in evaluation mode (dropout off,
        BatchNorm on its running averages): for queries and test errors.
      stochastic: True when the module has random layers (an `nnx.Rngs` stream)
        or `augment` was given: the Problem then needs a `key`.
    """

    params: nnx.State
    loss: Callable
    apply: Callable
    stochastic: bool

    def problem(self, data, *, l2: float = 0.0, key=None) -> Problem:
        """`accjax.Problem(self.loss, self.params, data, l2, key=key)`, refusing a
        missing key for a stochastic model (and a key for a deterministic one)."""
        if self.stochastic and key is None:
            raise ValueError(
                "this model has random layers or an augmentation: pass `key`, e.g. "
                "key=jax.random.key(0), so every step's randomness can be replayed."
            )
        if not self.stochastic and key is not None:
            raise ValueError(
                "this model is deterministic (no nnx.Rngs stream, no augment): "
                f"pass key=None; got key={key!r}."
            )
        return Problem(self.loss, self.params, data, l2, key=key)


def from_nnx(
    model: nnx.Module,
    loss: Callable = softmax_cross_entropy,
    *,
    augment: Callable | None = None,
) -> NnxModel:
    """Splits a flax nnx module into what `accjax.Problem` takes.

    Args:
      model: any `nnx.Module` mapping a batch of inputs to a batch of outputs.
        It is called on one example at a time (`model(x[None])[0]`).
        `nnx.Dropout` and any other layer that draws from an `nnx.Rngs` stream
        draw, at step t for example i, from the Problem's k = `step_key(key, t,
        i)`: the j-th stream (0-based, `nnx.split` order) is reseeded as
        `nnx.reseed(model, <its tag>=fold_in(k, j + 1))` would. `nnx.BatchNorm` in
        training mode is refused (`ValueError`): it couples the examples of a
        batch. Non-parameter state (e.g. BatchNorm's running averages under
        `use_running_average=True`) is held fixed.
      loss: `loss(outputs, y) -> scalar` for one example's outputs and label;
        default softmax cross-entropy on class ids.
      augment: optional `augment(x, key) -> x` applied to each training input
        (e.g. `accjax.models.random_crop_flip`) with the key `fold_in(k, 0)`;
        not applied by `apply`.

    Returns:
      `NnxModel(params, loss, apply, stochastic)`; `.problem(data, l2=, key=)`
      builds the Problem. Examples are `(x, y)` rows.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(
            f"`model` must be a flax nnx.Module; got {type(model).__name__}."
        )
    if not callable(loss):
        raise TypeError(f"`loss` must be callable loss(outputs, y); got {loss!r}.")
    if augment is not None and not callable(augment):
        raise TypeError(f"`augment` must be callable augment(x, key); got {augment!r}.")
    _refuse_batch_coupling(model)
    train_graph, params, rng_state, rest = nnx.split(
        model, nnx.Param, nnx.RngState, ...
    )
    modules = [m for _, m in nnx.iter_modules(model)]
    flags = {
        flag: True
        for flag in ("deterministic", "use_running_average")
        if any(hasattr(m, flag) for m in modules)
    }
    eval_model = nnx.view(model, **flags) if flags else model
    eval_graph = nnx.split(eval_model, nnx.Param, nnx.RngState, ...)[0]
    fns = _NnxFunctions(train_graph, eval_graph, rng_state, rest, loss, augment)
    return NnxModel(params, _TrainLoss(fns), _EvalApply(fns), fns.stochastic)


class _Conv(nnx.Module):
    """SAME stride-1 convolution through `conv2d_valid` (the CPU-fast lowering
    of docs/performance.md), PyTorch's default uniform init."""

    def __init__(self, cin: int, cout: int, kernel: int, *, rngs: nnx.Rngs, dtype):
        bound = 1.0 / jnp.sqrt(cin * kernel * kernel)
        shape = (kernel, kernel, cin, cout)
        self.w = nnx.Param(
            jax.random.uniform(rngs.params(), shape, dtype, -bound, bound)
        )
        self.b = nnx.Param(
            jax.random.uniform(rngs.params(), (cout,), dtype, -bound, bound)
        )
        self.pad = kernel // 2

    def __call__(self, x):  # (N, H, W, C)
        p = self.pad
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        y = jax.vmap(conv2d_valid, in_axes=(0, None))(x, self.w[...])
        return y + self.b[...][None, None, None, :]


class CifarCNN(nnx.Module):
    """A small CIFAR-10 CNN: two blocks of [3x3 conv, ReLU, 3x3 conv, ReLU, 2x2
    max-pool], then dropout, Linear(hidden), ReLU, dropout, Linear(num_classes)."""

    def __init__(
        self,
        *,
        rngs: nnx.Rngs,
        input_shape=(32, 32, 3),
        channels=(16, 32),
        hidden: int = 64,
        num_classes: int = 10,
        dropout: float = 0.25,
        dtype=jnp.float32,
    ):
        height, width, cin = input_shape
        convs = []
        for cout in channels:
            convs += [
                _Conv(cin, cout, 3, rngs=rngs, dtype=dtype),
                _Conv(cout, cout, 3, rngs=rngs, dtype=dtype),
            ]
            cin, height, width = cout, height // 2, width // 2
        self.convs = nnx.List(convs) if hasattr(nnx, "List") else convs
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.hidden = nnx.Linear(
            height * width * cin, hidden, rngs=rngs, param_dtype=dtype
        )
        self.out = nnx.Linear(hidden, num_classes, rngs=rngs, param_dtype=dtype)

    def __call__(self, x):
        convs = list(self.convs)
        for first, second in zip(convs[::2], convs[1::2], strict=True):
            x = jax.nn.relu(second(jax.nn.relu(first(x))))
            x = jax.vmap(_max_pool_2x2)(x)
        x = self.drop(x.reshape(x.shape[0], -1))
        return self.out(self.drop(jax.nn.relu(self.hidden(x))))
