"""The training step, one pure function of (state, batch, weights), and its scan."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from accjax._src import progress as progress_lib
from accjax._src.problem import (
    Params,
    Problem,
    Run,
    TrainState,
    check_problem,
    example_losses,
)
from accjax._src.schedule import check_schedule, make_schedule
from accjax._src.zero_sqrt import optimizer_update


def param_dtype(params: Params):
    """The common float dtype of the parameters (float32 unless x64 is on)."""
    return jnp.result_type(*jax.tree.leaves(params))


def batch_loss(problem: Problem, params: Params, indices, weights, t) -> jax.Array:
    """L(params; S, w) of DESIGN.md section 1 for one batch.

    Args:
      problem: the loss, data, L2 coefficient and key.
      params: the parameters.
      indices: int array `(batch_size,)`, `-1` for padding.
      weights: float array `(batch_size,)`, the weight of each batch slot
        (padding slots are ignored whatever their weight).
      t: the step index (0-based), which a problem with a key folds into the
        key of each example's loss.
    """
    valid = indices >= 0
    losses = example_losses(problem, params, indices, t)
    count = jnp.sum(valid).astype(losses.dtype)
    data_term = jnp.sum(jnp.where(valid, weights * losses, 0)) / count
    squares = sum(jnp.vdot(p, p) for p in jax.tree.leaves(params))
    return data_term + 0.5 * problem.l2 * squares


def batch_grad(problem: Problem, params: Params, indices, weights, t) -> Params:
    """The gradient of `batch_loss` in the parameters; linear in `weights`."""
    return jax.grad(batch_loss, argnums=1)(problem, params, indices, weights, t)


def update(problem, optimizer, state: TrainState, indices, weights, t):
    """The optax update of one step: `(updates, new_opt_state)`.

    The new parameters are `optax.apply_updates(state.params, updates)`;
    estimators use the updates themselves to form differences of two steps
    without cancelling against the (much larger) parameters. Differentiated,
    the derivative of a `sqrt` at 0 inside the optimizer is 0 (`zero_sqrt`).
    """
    grads = batch_grad(problem, state.params, indices, weights, t)
    return optimizer_update(optimizer, grads, state.opt_state, state.params)


def step(problem, optimizer, state: TrainState, indices, weights, t) -> TrainState:
    """z_{t+1} = step(z_t, S_t, w): the gradient of L(.; S_t, w), then optax."""
    updates, opt_state = update(problem, optimizer, state, indices, weights, t)
    return TrainState(optax.apply_updates(state.params, updates), opt_state)


def init_state(problem: Problem, optimizer) -> TrainState:
    """The state before the first step: `(problem.params, optimizer.init(...))`."""
    return TrainState(problem.params, optimizer.init(problem.params))


def make_step(
    problem: Problem, optimizer: optax.GradientTransformation
) -> Callable[[TrainState, jax.Array], TrainState]:
    """The public training step: `step(state, batch_indices, t=None) -> state`.

    `batch_indices` is an int array `(batch_size,)` of training indices (`-1`
    pads a ragged batch); `t` is the step's index from 0, required when the
    problem has a `key` (the randomness of step t) and ignored otherwise. The
    function is pure and can be jitted; a loop that calls it with t = 0, 1, ...
    and stacks the index arrays it used has recorded a schedule that
    `accjax.train(..., schedule=...)` and every estimator can replay. Start from
    `accjax.TrainState(problem.params, optimizer.init(problem.params))`.
    """
    check_problem(problem)

    def train_step(state: TrainState, batch_indices, t=None) -> TrainState:
        if t is None:
            if problem.key is not None:
                raise ValueError(
                    "this problem has a `key`: pass the step index, "
                    "step(state, batch_indices, t) with t = 0, 1, ... (the key of "
                    "step t is what every estimator replays)."
                )
            t = 0
        batch_indices = jnp.asarray(batch_indices)
        ones = jnp.ones(batch_indices.shape, param_dtype(state.params))
        return step(problem, optimizer, state, batch_indices, ones, t)

    return train_step


def all_finite(tree) -> jax.Array:
    """True when every float leaf of `tree` is finite."""
    flags = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(flags)) if flags else jnp.bool_(True)


def mark_bad_step(bad, t, tree) -> jax.Array:
    """Inside a scan: `t` if `tree` has a non-finite value and no step did before."""
    return jnp.where((bad < 0) & ~all_finite(tree), t, bad).astype(bad.dtype)


DERIVATIVE_HINT = (
    " A derivative is infinite there: the loss's curvature at a kink (e.g. "
    "|r|^p, p < 2, at r = 0) or the optimizer's update (a sqrt of 0 is "
    "differentiated as 0 only where its argument is exactly 0)."
)


def raise_if_bad_step(bad_step, what: str, *, derivative: bool = False) -> None:
    """Raises FloatingPointError for a concrete non-negative step index."""
    if isinstance(bad_step, jax.core.Tracer):
        return
    bad = int(np.max(np.asarray(bad_step)))
    if bad >= 0:
        raise FloatingPointError(
            f"{what} produced non-finite values at step {bad} (0-based). Lower the "
            "learning rate, add L2, or check the data for inf/nan."
            + (DERIVATIVE_HINT if derivative else "")
        )


@functools.partial(jax.jit, static_argnames=("optimizer", "with_progress"))
def _train_scan(problem, optimizer, schedule, with_progress=False):
    def body(carry, xs):
        state, bad = carry
        t, indices = xs
        ones = jnp.ones(indices.shape, param_dtype(state.params))
        state = step(problem, optimizer, state, indices, ones, t)
        if with_progress:
            progress_lib.tick(t + 1, schedule.shape[0])
        return (state, mark_bad_step(bad, t, state.params)), None

    steps = (jnp.arange(schedule.shape[0], dtype=jnp.int32), schedule)
    carry = (init_state(problem, optimizer), jnp.int32(-1))
    (state, bad_step), _ = jax.lax.scan(body, carry, steps)
    return state, bad_step


def train(
    problem: Problem,
    optimizer: optax.GradientTransformation,
    *,
    schedule=None,
    batch_size: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    progress=False,
) -> Run:
    """Trains `problem` with `optimizer` by a `lax.scan` over a minibatch schedule.

    Args:
      problem: loss, initial params, data, L2.
      optimizer: any `optax.GradientTransformation`, learning-rate schedules
        included.
      schedule: int array `(num_steps, batch_size)` of training indices, `-1`
        for padding. If None, built by `accjax.make_schedule(num_examples,
        batch_size, epochs, seed=seed)`.
      batch_size, epochs, seed: used only when `schedule` is None.
      progress: False, True (a progress bar on stderr), a label, or a callable
        `(done, total)` receiving the step counts, as for the estimators.

    Returns:
      A `Run` recording the problem, optimizer, schedule and final state.

    Raises:
      ValueError: for a malformed schedule or problem.
      FloatingPointError: if the parameters become non-finite (names the step).
    """
    check_problem(problem)
    n = problem.num_examples
    if schedule is None:
        if batch_size is None or epochs is None:
            raise ValueError(
                "pass either `schedule` or both `batch_size` and `epochs`; got "
                f"batch_size={batch_size!r}, epochs={epochs!r}."
            )
        schedule = make_schedule(n, batch_size, epochs, seed=seed)
    elif batch_size is not None or epochs is not None:
        raise ValueError("pass either `schedule` or `batch_size`/`epochs`, not both.")
    schedule = check_schedule(schedule, n)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "`optimizer` must be an optax.GradientTransformation, e.g. "
            f"optax.sgd(0.1); got {type(optimizer).__name__}."
        )
    with progress_lib.reporting(progress, "train") as with_progress:
        state, bad_step = _train_scan(problem, optimizer, schedule, with_progress)
    raise_if_bad_step(bad_step, "training")
    return Run(problem=problem, optimizer=optimizer, schedule=schedule, state=state)
