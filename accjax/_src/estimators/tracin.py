"""TracIn (Pruthi et al. 2020): gradient dot products along the recorded trajectory."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.problem import Influence, Run, example_grads, example_loss
from accjax._src.schedule import epochs_of
from accjax._src.train import init_state, param_dtype, step


def _dot_with(query_grads, example_grads):
    """<grad f, grad loss_i> for each example: `(B,)` or `(B, Q)`."""
    per_leaf = jax.tree.map(
        lambda q, e: jnp.einsum(
            "b...,...->b" if q.ndim == e.ndim - 1 else "b...,q...->bq", e, q
        ),
        query_grads,
        example_grads,
    )
    return sum(jax.tree.leaves(per_leaf))


def _squared_norms(example_grads):
    """|grad loss_i|^2 for each example: `(B,)`."""
    per_leaf = jax.tree.map(
        lambda e: jnp.sum(jnp.square(e).reshape(e.shape[0], -1), axis=1),
        example_grads,
    )
    return sum(jax.tree.leaves(per_leaf))


def _scorer(query, params):
    """`(score, out_shape)`: `score(params)` maps per-example gradients at those
    params to `(B,)` or `(B, Q)` dot products with the query's gradient there,
    or, for `query=None`, to the self-influence scores |grad loss_i|^2."""
    if query is None:
        return (lambda p: _squared_norms), ()
    out_shape = jax.eval_shape(query, params).shape
    jac = jax.jacrev(query) if out_shape else jax.grad(query)

    def score(p):
        q = jac(p)
        return lambda grads: _dot_with(q, grads)

    return score, out_shape


@functools.partial(
    jax.jit,
    static_argnames=("optimizer", "learning_rate", "with_progress"),
)
def _tracin_all(problem, optimizer, schedule, *, query, learning_rate, with_progress):
    n = problem.num_examples
    num_steps = schedule.shape[0]
    dtype = param_dtype(problem.params)
    score, out_shape = _scorer(query, problem.params)

    def body(carry, xs):
        z, values = carry
        t, indices = xs
        valid = indices >= 0
        grads = example_grads(problem, z.params, indices, t)
        dots = score(z.params)(grads)
        lr = common.learning_rate_at(learning_rate, t)
        scale = jnp.where(valid, lr / jnp.sum(valid), 0).astype(dtype)
        contrib = scale.reshape((-1,) + (1,) * (dots.ndim - 1)) * dots
        values = values.at[jnp.where(valid, indices, n)].add(contrib, mode="drop")
        ones = jnp.ones(indices.shape, dtype)
        if with_progress:
            progress_lib.tick(t + 1, num_steps)
        return (step(problem, optimizer, z, indices, ones, t), values), None

    values = jnp.zeros((n, *out_shape), dtype)
    carry = (init_state(problem, optimizer), values)
    (_, values), _ = jax.lax.scan(body, carry, (jnp.arange(num_steps), schedule))
    return values


@functools.partial(
    jax.jit,
    static_argnames=("optimizer", "learning_rate", "with_progress"),
)
def _tracin_checkpoints(
    problem, optimizer, schedule, saved, *, query, learning_rate, with_progress
):
    """TracInCP: the sum over the steps with `saved[t]` of
    lr_t / mean|S| <grad f, grad loss_i> at the params after step t, all i."""
    n = problem.num_examples
    num_steps = schedule.shape[0]
    dtype = param_dtype(problem.params)
    score, out_shape = _scorer(query, problem.params)
    mean_size = jnp.sum(schedule >= 0) / num_steps

    def dots(params, t):
        grad = jax.grad(example_loss, argnums=1)
        at_params = score(params)
        one = lambda xs: at_params(
            jax.tree.map(lambda a: a[None], grad(problem, params, *xs, t))
        )[0]
        xs = (problem.data, jnp.arange(n))
        return jax.lax.map(one, xs, batch_size=256)

    def body(carry, xs):
        z, values = carry
        t, indices, keep = xs
        z = step(problem, optimizer, z, indices, jnp.ones(indices.shape, dtype), t)
        scale = (common.learning_rate_at(learning_rate, t) / mean_size).astype(dtype)
        values = jax.lax.cond(
            keep, lambda v: v + scale * dots(z.params, t), lambda v: v, values
        )
        if with_progress:
            progress_lib.tick(t + 1, num_steps)
        return (z, values), None

    values = jnp.zeros((n, *out_shape), dtype)
    carry = (init_state(problem, optimizer), values)
    xs = (jnp.arange(num_steps), schedule, saved)
    (_, values), _ = jax.lax.scan(body, carry, xs)
    return values


def _saved_steps(checkpoints, schedule) -> jax.Array:
    """`checkpoints` as a bool per step: True where the params after it are used."""
    num_steps = schedule.shape[0]
    if isinstance(checkpoints, str) and checkpoints == "epochs":
        epochs = epochs_of(schedule)
        return jnp.asarray(np.append(epochs[1:] != epochs[:-1], True))
    steps = np.asarray(checkpoints)
    if (
        steps.ndim != 1
        or steps.size == 0
        or not np.issubdtype(steps.dtype, np.integer)
        or steps.min() < 1
        or steps.max() > num_steps
    ):
        raise ValueError(
            "`checkpoints` must be None, 'epochs' or a 1-D int array of step "
            f"counts in [1, num_steps = {num_steps}]; got {checkpoints!r}."
        )
    saved = np.zeros(num_steps, bool)
    saved[steps - 1] = True
    return jnp.asarray(saved)


def tracin(
    run: Run,
    query,
    *,
    learning_rate,
    targets=None,
    checkpoints=None,
    progress=False,
) -> Influence:
    """TracIn: each example's first-order effect at the steps that held it.

    influence(k) ~ sum over steps t with k in S_t of
    (lr_t / |S_t|) <grad f(params_t), grad loss_k(params_t)>:
    what SGD-IE would give if every step's Jacobian were the identity and the
    query's gradient were taken at the current rather than the final params.
    Same sign convention as the other estimators (removing a helpful example
    raises a validation loss: positive).

    Args:
      run: from `accjax.train`; replayed step by step.
      query: `f(params) -> scalar` or `(num_queries,)` vector; or "self" for
        each example's self-influence, the query being its own training loss:
        the sum of (lr_t / |S_t|) |grad loss_k(params_t)|^2 (with checkpoints,
        of (lr_{c-1} / mean|S|) |grad loss_k(params_c)|^2), >= 0, large where
        the model has to be pushed hardest to fit k (mislabelled examples are
        found by ranking it largest first: `metrics.detection(...,
        largest_first=True)`). With a key, k's loss gets the same step key as
        in training.
      learning_rate: the step size of each step: a float, or an optax-style
        schedule `lr(step_index)` (step index from 0). TracIn is defined for
        SGD; with another optimizer, pass the rate you want to weight by.
      targets: int array `(num_targets,)`; None means all. Every example is
        computed either way.
      checkpoints: None for the ideal sum over the steps holding k (above).
        Otherwise TracInCP, the checkpoint variant: the sum over checkpoints c
        of (lr_{c-1} / mean|S|) <grad f(params_c), grad loss_k(params_c)> for
        every example, params_c the parameters after c steps and mean|S| the
        run's mean batch size. "epochs": a checkpoint at the end of each
        epoch (`accjax.epochs_of`), where each example occurs once per epoch,
        so the scale matches the ideal sum; or a 1-D int array of step counts
        in [1, num_steps].
      progress: True (or a label) for a progress bar on stderr, or a callable
        `(done, total)`.

    Returns:
      Influence with `values` `(num_targets,)` (or `(num_targets, num_queries)`)
      and no `param_shift`.
    """
    if isinstance(query, str) and query == "self":
        common.check_run_only(run)
        query = None  # the cores' self-influence mode
    else:
        query = common.check_run(run, query)
    targets = common.check_targets(targets, run.problem.num_examples)
    common.check_learning_rate(learning_rate)
    options = dict(query=query, learning_rate=learning_rate)
    args = (run.problem, run.optimizer, run.schedule)
    with progress_lib.reporting(progress, "tracin") as with_progress:
        if checkpoints is None:
            values = _tracin_all(*args, with_progress=with_progress, **options)
        else:
            saved = _saved_steps(checkpoints, run.schedule)
            values = _tracin_checkpoints(
                *args, saved, with_progress=with_progress, **options
            )
        jax.block_until_ready(values)
    common.check_finite(
        values,
        "tracin produced non-finite influence values; check that training "
        "stayed finite and the query is finite along the trajectory.",
    )
    return Influence(targets, values[targets])
