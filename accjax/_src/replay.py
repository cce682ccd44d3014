"""`replay`: a run retrained once per row of example weights, every row vmapped in
one `lax.scan` over the schedule, from the start or from a step of the factual
run; what `cleanse` and `subset_retrain` retrain with.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.problem import Run, TrainState
from accjax._src.train import (
    _train_scan,
    init_state,
    mark_bad_step,
    param_dtype,
    raise_if_bad_step,
    step,
)


@functools.partial(jax.jit, static_argnames=("optimizer", "with_progress"))
def _replay(
    problem, optimizer, schedule, start, state, keep, done, total, *, with_progress
):
    """Replays `schedule` from `state` (at step `start`) once per row of `keep`.

    `keep` is `(R, n)`: the weight of every training example in that run (1
    kept, 0 removed). Returns the `R` final states and the first non-finite step.
    """
    zs = jax.tree.map(lambda a: jnp.broadcast_to(a, keep.shape[:1] + a.shape), state)

    def body(carry, xs):
        zs, bad = carry
        t, indices = xs
        weights = keep[:, jnp.where(indices >= 0, indices, 0)]
        zs = jax.vmap(lambda z, w: step(problem, optimizer, z, indices, w, t))(
            zs, weights
        )
        bad = mark_bad_step(bad, t, zs.params)
        if with_progress:
            progress_lib.tick(done + t - start + 1, total)
        return (zs, bad), None

    steps = (start + jnp.arange(schedule.shape[0], dtype=jnp.int32), schedule)
    (zs, bad), _ = jax.lax.scan(body, (zs, jnp.int32(-1)), steps)
    return zs, bad


@jax.jit
def evaluate(fn, params):
    """`fn` on each of a stack of parameters, one after another (`lax.map`): a
    vmap would hold every model's activations on the whole test set at once."""
    return jax.lax.map(fn, params)


def last_epoch_start(schedule, num_examples: int) -> int:
    """The latest step from which the rest of `schedule` visits every example."""
    rows = np.asarray(schedule)
    seen = np.zeros(num_examples, bool)
    for t in range(rows.shape[0] - 1, -1, -1):
        seen[rows[t][rows[t] >= 0]] = True
        if seen.all():
            return t
    raise ValueError(
        "retrain='last-epoch' needs a schedule whose final steps visit every "
        f"training example; {int((~seen).sum())} of {num_examples} never appear. "
        "Pass retrain='all' or the first step to replay as an int."
    )


def check_retrain(retrain, num_steps: int | None = None) -> None:
    """`retrain` is "all", "last-epoch" or a step index in [0, num_steps)."""
    if retrain in ("all", "last-epoch"):
        return
    limit = float("inf") if num_steps is None else num_steps
    if not (isinstance(retrain, int | np.integer) and 0 <= retrain < limit):
        where = "" if num_steps is None else f" in [0, {num_steps})"
        raise ValueError(
            f"`retrain` must be 'all', 'last-epoch' or a step index{where}; got "
            f"{retrain!r}."
        )


def start_step(retrain, run: Run) -> int:
    check_retrain(retrain, run.num_steps)
    if retrain == "all":
        return 0
    if retrain == "last-epoch":
        return last_epoch_start(run.schedule, run.problem.num_examples)
    return int(retrain)


def replay(
    run: Run, keep, *, retrain="all", chunk_size=None, progress=False
) -> TrainState:
    """Replays `run` once per row of `keep` and returns the final states.

    Args:
      run: from `accjax.train`.
      keep: `(R, num_examples)` example weights, 1 to keep and 0 to remove
        (fractional weights are allowed: the objective is linear in them).
      retrain: "all" (from the initial state), "last-epoch" (from the factual
        state at `last_epoch_start`) or the step index to restart from.
      chunk_size: rows retrained together (memory ~ chunk_size x state); None
        means all at once.
      progress: as for the estimators.

    Returns:
      A `TrainState` whose leaves have a leading axis `R`.
    """
    n = run.problem.num_examples
    keep = np.asarray(keep)
    if keep.ndim != 2 or keep.shape[1] != n:
        raise ValueError(f"`keep` must have shape (num_runs, {n}); got {keep.shape}.")
    start = start_step(retrain, run)
    size = common.check_chunk_size(chunk_size, keep.shape[0])
    problem, optimizer = run.problem, run.optimizer
    if start:
        state, bad = _train_scan(problem, optimizer, run.schedule[:start])
        raise_if_bad_step(bad, "training up to the restart step")
    else:
        state = init_state(problem, optimizer)
    dtype = param_dtype(problem.params)
    num_chunks = -(-keep.shape[0] // size)
    padded = np.ones((num_chunks * size, n), keep.dtype)
    padded[: keep.shape[0]] = keep
    steps = run.num_steps - start
    outs = []
    with progress_lib.reporting(progress, "retrain") as with_progress:
        for c in range(num_chunks):
            zs, bad = _replay(
                problem,
                optimizer,
                run.schedule[start:],
                jnp.int32(start),
                state,
                jnp.asarray(padded[c * size : (c + 1) * size], dtype),
                jnp.int32(c * steps),
                jnp.int32(num_chunks * steps),
                with_progress=with_progress,
            )
            raise_if_bad_step(bad, "retraining")
            outs.append(zs)
    return jax.tree.map(lambda *a: jnp.concatenate(a)[: keep.shape[0]], *outs)
