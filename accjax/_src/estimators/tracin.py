"""TracIn (Pruthi et al. 2020): gradient dot products along the recorded trajectory."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.problem import (
    Influence,
    Run,
    TrainState,
    example_grads,
    example_loss,
)
from accjax._src.schedule import epochs_of
from accjax._src.train import batch_grad, init_state, param_dtype
from accjax._src.zero_sqrt import optimizer_update


def _dot_with(query_grads, rows):
    """<grad f, row_i> for each row: `(B,)` or `(B, Q)`."""
    per_leaf = jax.tree.map(
        lambda q, e: jnp.einsum(
            "b...,...->b" if q.ndim == e.ndim - 1 else "b...,q...->bq", e, q
        ),
        query_grads,
        rows,
    )
    return sum(jax.tree.leaves(per_leaf))


def _row_dots(a, b):
    """<a_i, b_i> for each row of two pytrees with a leading `(B,)` axis."""
    per_leaf = jax.tree.map(
        lambda x, y: jnp.sum((x * y).reshape(x.shape[0], -1), axis=1), a, b
    )
    return sum(jax.tree.leaves(per_leaf))


def _scorer(query, params):
    """`(score, out_shape)`: `score(params)(grads, moves)` maps per-example
    gradients g_i and the parameter moves they cause to `(B,)` or `(B, Q)`
    values -<grad f(params), move_i>, or, for `query=None` (self-influence),
    -<g_i, move_i>."""
    if query is None:
        return (lambda p: lambda grads, moves: -_row_dots(grads, moves)), ()
    out_shape = jax.eval_shape(query, params).shape
    jac = jax.jacrev(query) if out_shape else jax.grad(query)

    def score(p):
        q = jac(p)
        return lambda grads, moves: -_dot_with(q, moves)

    return score, out_shape


def _step_and_moves(problem, optimizer, z, indices, t, size):
    """`(z_{t+1}, moves)`: the factual step from z = z_t, and `moves(grads)`
    for per-example gradients `(B, ...)`: M_t(g) = U_t(G_t) - U_t(G_t - g /
    size), the change of step t's parameter update U_t (at its batch gradient
    G_t and optimizer state) that g's share of the batch causes; for SGD,
    -lr_t g / size. The step's values are those of `train.step`."""
    ones = jnp.ones(indices.shape, param_dtype(z.params))
    grads = batch_grad(problem, z.params, indices, ones, t)
    update = lambda g: optimizer_update(optimizer, g, z.opt_state, z.params)
    updates, opt_state = update(grads)
    z_next = TrainState(optax.apply_updates(z.params, updates), opt_state)

    def move(g):
        without = jax.tree.map(lambda G, x: G - x / size, grads, g)
        return jax.tree.map(jnp.subtract, updates, update(without)[0])

    return z_next, jax.vmap(move)


@functools.partial(jax.jit, static_argnames=("optimizer", "with_progress"))
def _tracin_all(problem, optimizer, schedule, *, query, with_progress):
    n = problem.num_examples
    num_steps = schedule.shape[0]
    dtype = param_dtype(problem.params)
    score, out_shape = _scorer(query, problem.params)

    def body(carry, xs):
        z, values = carry
        t, indices = xs
        valid = indices >= 0
        grads = example_grads(problem, z.params, indices, t)
        size = jnp.sum(valid).astype(dtype)
        z_next, moves = _step_and_moves(problem, optimizer, z, indices, t, size)
        dots = score(z.params)(grads, moves(grads))
        contrib = jnp.where(valid.reshape((-1,) + (1,) * (dots.ndim - 1)), dots, 0)
        values = values.at[jnp.where(valid, indices, n)].add(contrib, mode="drop")
        if with_progress:
            progress_lib.tick(t + 1, num_steps)
        return (z_next, values), None

    values = jnp.zeros((n, *out_shape), dtype)
    carry = (init_state(problem, optimizer), values)
    (_, values), _ = jax.lax.scan(body, carry, (jnp.arange(num_steps), schedule))
    return values


@functools.partial(jax.jit, static_argnames=("optimizer", "with_progress"))
def _tracin_checkpoints(problem, optimizer, schedule, saved, *, query, with_progress):
    """TracInCP: the sum over the steps t with `saved[t]` of
    -<grad f, M_t(grad loss_i)> at the params after step t, all i (M_t of
    `_step_and_moves` with mean|S|)."""
    n = problem.num_examples
    num_steps = schedule.shape[0]
    dtype = param_dtype(problem.params)
    score, out_shape = _scorer(query, problem.params)
    mean_size = jnp.sum(schedule >= 0) / num_steps

    def dots(params, t, moves):
        grad = jax.grad(example_loss, argnums=1)
        at_params = score(params)

        def one(xs):
            g = jax.tree.map(lambda a: a[None], grad(problem, params, *xs, t))
            return at_params(g, moves(g))[0]

        xs = (problem.data, jnp.arange(n))
        return jax.lax.map(one, xs, batch_size=256)

    def body(carry, xs):
        z, values = carry
        t, indices, keep = xs
        z, moves = _step_and_moves(
            problem, optimizer, z, indices, t, mean_size.astype(dtype)
        )
        values = jax.lax.cond(
            keep, lambda v: v + dots(z.params, t, moves), lambda v: v, values
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
    learning_rate=None,
    targets=None,
    checkpoints=None,
    progress=False,
) -> Influence:
    """TracIn: each example's first-order effect at the steps that held it.

    influence(k) ~ -sum over steps t with k in S_t of
    <grad f(params_t), M_t(grad loss_k(params_t))>, where M_t(g) =
    U_t(G_t) - U_t(G_t - g / |S_t|) is the part of step t's parameter update
    U_t (the run's optimizer, at the step's batch gradient G_t and state) that
    k's share of the batch gradient causes: removing k moves the parameters by
    -M_t. For plain SGD M_t(g) = -(lr_t / |S_t|) g, and this is Pruthi et al.'s
    sum of (lr_t / |S_t|) <grad f(params_t), grad loss_k(params_t)>; for Adam it
    is an Adam-aware TracIn in the spirit of LESS (k's gradient through the
    step's normalisation), taken as the exact difference, which stays bounded
    where k alone moves a coordinate (a rare token's embedding row), where the
    derivative would not. What SGD-IE would give if every step's Jacobian were
    the identity, the query's gradient taken at the current rather than the
    final params, and an optimizer's memory (momentum, the moments of later
    steps) ignored. Same sign convention as the other estimators (removing a
    helpful example raises a validation loss: positive).

    Args:
      run: from `accjax.train`; replayed step by step.
      query: `f(params) -> scalar` or `(num_queries,)` vector; or "self" for
        each example's self-influence, the query being its own training loss:
        the sum of -<grad loss_k, M_t(grad loss_k)> (for SGD,
        (lr_t / |S_t|) |grad loss_k(params_t)|^2; with checkpoints, at
        params_c with step c - 1's M and mean|S|), >= 0 for SGD,
        large where the model has to be pushed hardest to fit k (mislabelled
        examples are found by ranking it largest first:
        `metrics.detection(..., largest_first=True)`). With a key, k's loss
        gets the same step key as in training.
      learning_rate: optional; the step sizes come from the run's optimizer.
        If given (a float or a schedule `lr(step_index)`), the run is checked
        to be plain SGD with this rate, and a run that is not is refused
        (`ValueError`).
      targets: int array `(num_targets,)`; None means all. Every example is
        computed either way.
      checkpoints: None for the ideal sum over the steps holding k (above).
        Otherwise TracInCP, the checkpoint variant: the sum over checkpoints c
        of -<grad f(params_c), M_{c-1}(grad loss_k(params_c))>, M with mean|S|
        for |S| (for SGD, (lr_{c-1} / mean|S|) <grad f(params_c),
        grad loss_k(params_c)>)
        for every example, params_c the parameters after c steps and mean|S|
        the run's mean batch size. "epochs": a checkpoint at the end of each
        epoch (`accjax.epochs_of`), where each example occurs once per epoch,
        so the scale matches the ideal sum; or a 1-D int array of step counts
        in [1, num_steps].
      progress: True (or a label) for a progress bar on stderr, or a callable
        `(done, total)`.

    Returns:
      Influence with `values` `(num_targets,)` (or `(num_targets, num_queries)`)
      and no `param_shift`.

    Raises:
      ValueError: if `learning_rate` is given and the run is not plain SGD
        with that rate.
    """
    if isinstance(query, str) and query == "self":
        common.check_run_only(run)
        query = None  # the cores' self-influence mode
    else:
        query = common.check_run(run, query)
    targets = common.check_targets(targets, run.problem.num_examples)
    if learning_rate is not None:
        common.check_learning_rate(learning_rate)
        common.check_plain_sgd(
            run,
            learning_rate,
            "tracin with `learning_rate`",
            "Leave `learning_rate` out: tracin follows the run's own optimizer.",
        )
    args = (run.problem, run.optimizer, run.schedule)
    with progress_lib.reporting(progress, "tracin") as with_progress:
        if checkpoints is None:
            values = _tracin_all(*args, query=query, with_progress=with_progress)
        else:
            saved = _saved_steps(checkpoints, run.schedule)
            values = _tracin_checkpoints(
                *args, saved, query=query, with_progress=with_progress
            )
        jax.block_until_ready(values)
    common.check_finite(
        values,
        "tracin produced non-finite influence values; check that training "
        "stayed finite and the query is finite along the trajectory.",
    )
    return Influence(targets, values[targets])
