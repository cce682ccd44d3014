"""The objects every estimator shares: Problem, TrainState, Run, Influence."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Params = Any
PyTree = Any


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Problem:
    """A per-example loss, the initial parameters and the training data.

    The objective of a batch S with per-example weights w is

        L(params; S, w) = (1/|S|) * sum_{i in S} w_i * loss(params, data[i])
                          + (l2 / 2) * ||params||^2

    where |S| counts the real (non-padding) entries of the batch.

    Attributes:
      loss: `loss(params, example) -> scalar` for ONE example, where `example` is
        one row of `data` (every leaf indexed at the same position); with a
        `key`, `loss(params, example, key) -> scalar`.
      params: the initial parameters, any pytree of float arrays.
      data: any pytree of arrays sharing a leading axis `num_examples`.
      l2: coefficient of the L2 term, part of every step's objective and not
        attached to any example.
      key: None (a deterministic loss), or a `jax.random.key` / `PRNGKey` for
        a stochastic one (dropout, augmentation). At step t (0-based) the loss
        of training example i receives `step_key(key, t, i)` =
        `fold_in(fold_in(key, t), i)`: a function of (step, example) only, so
        the factual run and every counterfactual one draw the same masks and
        augmentations, and removing k changes nothing but k's weight.
    """

    loss: Callable[[Params, PyTree], jax.Array] = dataclasses.field(
        metadata=dict(static=True)
    )
    params: Params
    data: PyTree
    l2: float = 0.0
    key: jax.Array | None = None

    def __post_init__(self):
        # Python and NumPy numbers are checked at once; arrays (possibly traced,
        # or placeholders while JAX rebuilds the tree) are left to `check_problem`.
        if isinstance(self.l2, int | float | str | np.number):
            check_l2(self.l2)

    @property
    def num_examples(self) -> int:
        return num_examples(self.data)


class TrainState(NamedTuple):
    """The state `z = (params, opt_state)` that one training step maps forward."""

    params: Params
    opt_state: optax.OptState


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Run:
    """What training recorded: all an estimator needs to replay it.

    Attributes:
      problem: the `Problem` that was trained.
      optimizer: the `optax.GradientTransformation` (learning-rate schedules
        included) that produced every update.
      schedule: int array `(num_steps, batch_size)` of training indices, `-1`
        marking padding in a ragged batch.
      state: the final `TrainState`.
    """

    problem: Problem
    optimizer: optax.GradientTransformation = dataclasses.field(
        metadata=dict(static=True)
    )
    schedule: jax.Array
    state: TrainState

    @property
    def params(self) -> Params:
        """The final parameters."""
        return self.state.params

    @property
    def num_steps(self) -> int:
        return self.schedule.shape[0]


class Influence(NamedTuple):
    """Estimated effect of removing each target example on a query.

    Attributes:
      targets: int array `(num_targets,)` of training indices.
      values: `f(params without k) - f(params)`, shape `(num_targets,)`, or
        `(num_targets, num_queries)` for a vector query. Positive: removing k
        would raise f (for a validation loss, k was helpful). Negative: k was
        harmful.
      param_shift: `params without k - params`, a pytree like params whose
        leaves have a leading `num_targets` axis; None where the estimator has
        no such quantity.
      per_epoch: the contribution of each epoch's occurrences of k,
        `(num_targets, num_epochs)` (or `(num_targets, num_epochs,
        num_queries)`), summing to `values`; None unless asked for with
        `per_epoch=` (estimators that are sums over the steps holding k).
    """

    targets: jax.Array
    values: jax.Array
    param_shift: Params | None = None
    per_epoch: jax.Array | None = None


def step_key(key: jax.Array, t, index) -> jax.Array:
    """The key the loss of training example `index` receives at step `t`."""
    return jax.random.fold_in(jax.random.fold_in(key, t), index)


def example_loss(problem: Problem, params: Params, example, index, t) -> jax.Array:
    """The loss of training example `index` (its row `example`) at step `t`.

    Every estimator evaluates training losses through this function, so a
    problem with a `key` draws the same randomness everywhere. `index` may be
    -1 (padding): it then gets example 0's key, and the caller masks it.
    """
    if problem.key is None:
        return problem.loss(params, example)
    key = step_key(problem.key, t, jnp.maximum(index, 0))
    return problem.loss(params, example, key)


def example_rows(problem: Problem, indices):
    """The data rows of training examples `indices` (-1: padding, example 0's row).

    NumPy data are taken as jax arrays, so a step jitted around a closure over
    the problem (`make_step`) indexes them with traced indices."""
    safe = jnp.maximum(indices, 0)
    return jax.tree.map(lambda a: jnp.asarray(a)[safe], problem.data)


def example_losses(problem: Problem, params: Params, indices, t) -> jax.Array:
    """`(B,)` losses of the training examples `indices` at step `t` (-1: padding,
    whose value is example 0's and must be masked)."""
    rows = example_rows(problem, indices)
    return jax.vmap(lambda ex, i: example_loss(problem, params, ex, i, t))(
        rows, indices
    )


def example_grads(problem: Problem, params: Params, indices, t) -> Params:
    """Per-example loss gradients at step `t`, a pytree like params with a
    leading `(B,)` axis (padding rows: example 0's, to be masked)."""
    rows = example_rows(problem, indices)
    grad = jax.grad(example_loss, argnums=1)
    return jax.vmap(lambda ex, i: grad(problem, params, ex, i, t))(rows, indices)


def example_hvps(
    problem: Problem, params: Params, indices, t, tangent, *, per_example=False
) -> Params:
    """Per-example Hessian-vector products H_i(params) tangent at step `t`, like
    `example_grads` (leading `(B,)` axis; padding rows to be masked). With
    `per_example`, `tangent` has a leading `(B,)` axis too: H_i tangent_i."""
    rows = example_rows(problem, indices)
    grad = jax.grad(example_loss, argnums=1)

    def one(ex, i, v):
        return jax.jvp(lambda p: grad(problem, p, ex, i, t), (params,), (v,))[1]

    return jax.vmap(one, in_axes=(0, 0, 0 if per_example else None))(
        rows, indices, tangent
    )


def num_examples(data: PyTree) -> int:
    """Leading-axis size shared by every leaf of `data`; raises if they disagree."""
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("`data` has no array leaves; expected a pytree of arrays.")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        shapes = jax.tree.map(lambda a: tuple(np.shape(a)), data)
        raise ValueError(
            "every leaf of `data` must share the leading axis num_examples; got "
            f"leaf shapes {shapes}."
        )
    return sizes.pop()


@dataclasses.dataclass(frozen=True)
class _MeanLoss:
    """`(data, params) -> mean loss`; equal for equal losses, so jit reuses it.

    More rows than `batch_size` are evaluated `batch_size` at a time, each
    chunk rematerialised in the backward pass, so that a derivative of the
    query holds one chunk's activations, not the whole set's.
    """

    loss: Callable
    batch_size: int

    def __call__(self, data, params):
        one = lambda example: self.loss(params, example)
        if num_examples(data) <= self.batch_size:
            return jnp.mean(jax.vmap(one)(data))
        losses = jax.lax.map(jax.checkpoint(one), data, batch_size=self.batch_size)
        return jnp.mean(losses)


def mean_loss(
    loss: Callable, data: PyTree, *, batch_size: int = 1024
) -> Callable[[Params], jax.Array]:
    """A query `f(params) -> scalar`: the mean of `loss` over the rows of `data`.

    Typical use: `query = accjax.mean_loss(problem.loss, val_data)`. The result
    is a `jax.tree_util.Partial` whose leaves are `data`: estimators take it as
    a traced argument, so a new validation set of the same shape (another seed,
    another split) reuses the compiled estimator instead of recompiling.

    `batch_size` rows are evaluated at a time (the rest of the set waits, and
    each chunk is recomputed in the backward pass), so the memory of the
    query's gradient does not grow with the set: 10,000 MNIST images through a
    CNN at once would hold gigabytes of activations. The value is the same.
    """
    num_examples(data)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"`batch_size` must be an int >= 1; got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size!r}.")
    return jax.tree_util.Partial(_MeanLoss(loss, int(batch_size)), data)


def as_query_tree(query: Callable) -> jax.tree_util.Partial:
    """A query as a pytree: a `Partial` stays (its arguments are traced), any
    other callable becomes a static `Partial(query)` (compiled per function)."""
    if isinstance(query, jax.tree_util.Partial):
        return query
    return jax.tree_util.Partial(query)


def check_l2(l2) -> None:
    """A finite coefficient >= 0; a no-op on traced values."""
    if isinstance(l2, jax.core.Tracer):
        return
    if isinstance(l2, bool | str) or np.ndim(l2) != 0:
        raise TypeError(f"`l2` must be a float >= 0; got {l2!r}.")
    try:
        value = float(l2)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`l2` must be a float >= 0; got {l2!r}.") from err
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(
            f"`l2` must be a finite float >= 0 (the coefficient of (l2/2) ||params||^2 "
            f"in every step's objective); got {l2!r}. Use 0.0 for no L2 term."
        )


def check_key(key) -> None:
    """None, a typed key (`jax.random.key`) or a raw uint32 `(2,)` PRNGKey."""
    if key is None or isinstance(key, jax.core.Tracer):
        return
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if np.ndim(key) == 0:
            return
    elif dtype == jnp.uint32 and np.shape(key) == (2,):
        return
    raise TypeError(
        "`key` must be None or one PRNG key, e.g. jax.random.key(0) or "
        f"jax.random.PRNGKey(0); got {key!r}."
    )


def check_problem(problem: Problem) -> None:
    """Validates `problem` before tracing; a no-op on traced values."""
    if not isinstance(problem, Problem):
        raise TypeError(
            f"expected an accjax.Problem, got {type(problem).__name__}. Build one "
            "with accjax.Problem(loss, params, data, l2=...)."
        )
    check_l2(problem.l2)
    n = num_examples(problem.data)
    bad = [
        str(jnp.result_type(leaf))
        for leaf in jax.tree.leaves(problem.params)
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
    ]
    if bad:
        raise ValueError(
            f"every leaf of `params` must be a float array; got dtypes {bad}."
        )
    check_key(problem.key)
    row = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), problem.data
    )
    signature = (
        "loss(params, example)"
        if problem.key is None
        else ("loss(params, example, key)")
    )
    try:
        out = jax.eval_shape(
            lambda p, r: example_loss(problem, p, r, 0, 0), problem.params, row
        )
    except TypeError as err:
        hint = (
            " A loss that takes a key needs accjax.Problem(..., key=jax.random.key(0))."
            if problem.key is None
            else " With `key`, the loss is called with a third argument, the key."
        )
        raise TypeError(f"calling `{signature}` failed: {err}.{hint}") from err
    if getattr(out, "shape", None) != ():
        raise ValueError(
            f"`{signature}` must return a scalar for one example; got "
            f"shape {getattr(out, 'shape', out)} (example = one row of `data`, "
            f"num_examples = {n})."
        )


def check_query(query: Callable, params: Params) -> tuple[int, ...]:
    """Returns the query's output shape, `()` or `(num_queries,)`; raises otherwise."""
    if not callable(query):
        raise TypeError(f"`query` must be callable f(params) -> scalar; got {query!r}.")
    out = jax.eval_shape(query, params)
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) > 1:
        raise ValueError(
            "`query(params)` must return a scalar or a vector of shape "
            f"(num_queries,); got {out}."
        )
    return tuple(shape)
