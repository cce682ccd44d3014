"""Minibatch schedules: int arrays `(num_steps, batch_size)`, `-1` for padding."""

from __future__ import annotations

import math

import jax
import numpy as np


def make_schedule(
    num_examples: int, batch_size: int, epochs: int, *, seed: int = 0
) -> np.ndarray:
    """The minibatch schedule of the reference experiments.

    Every epoch draws a fresh permutation of `range(num_examples)` and splits it
    into `ceil(num_examples / batch_size)` nearly equal batches (as
    `np.array_split` does: the first `num_examples % num_batches` batches hold one
    more). Shorter batches are padded with `-1`.

    The permutation of epoch `e` comes from NumPy's legacy generator,
    `np.random.RandomState(e).permutation(num_examples)` when `seed == 0`: the
    reference scripts seed it with the epoch index alone, so `seed=0` reproduces
    their batches exactly. Any other seed uses `RandomState([seed, e])`.

    Returns:
      int32 array `(epochs * ceil(num_examples / batch_size), max_batch)`.
    """
    for name, value, low in (
        ("num_examples", num_examples, 1),
        ("batch_size", batch_size, 1),
        ("epochs", epochs, 1),
    ):
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}; got {value!r}.")
    if batch_size > num_examples:
        raise ValueError(
            f"`batch_size` ({batch_size}) exceeds `num_examples` ({num_examples})."
        )
    num_batches = math.ceil(num_examples / batch_size)
    width = math.ceil(num_examples / num_batches)
    rows = []
    for epoch in range(epochs):
        rng = np.random.RandomState(epoch if seed == 0 else [seed, epoch])
        for batch in np.array_split(rng.permutation(num_examples), num_batches):
            rows.append(np.pad(batch, (0, width - batch.size), constant_values=-1))
    return np.stack(rows).astype(np.int32)


def check_schedule(schedule, num_examples: int):
    """Validates a schedule against `num_examples`; returns it as a jax int array.

    Traced schedules (inside a user's `jax.jit`) are checked for shape and dtype
    only: their values are unknown until run time.
    """
    if not hasattr(schedule, "dtype"):
        schedule = np.asarray(schedule)
    if schedule.ndim != 2 or not np.issubdtype(schedule.dtype, np.integer):
        raise ValueError(
            "`schedule` must be an int array of shape (num_steps, batch_size); got "
            f"dtype {schedule.dtype} and shape {tuple(schedule.shape)}. Build one "
            "with `accjax.make_schedule(...)`."
        )
    if schedule.shape[0] == 0 or schedule.shape[1] == 0:
        raise ValueError(
            f"`schedule` has shape {tuple(schedule.shape)}; it needs at least one "
            "step and one batch slot."
        )
    if not isinstance(schedule, jax.core.Tracer):
        values = np.asarray(schedule)
        bad = np.argwhere((values < -1) | (values >= num_examples))
        if bad.size:
            t, j = bad[0]
            raise ValueError(
                f"`schedule` holds index {values[t, j]} at step {t}, slot {j}; "
                f"expected training indices in [0, {num_examples}) or -1 for "
                "padding."
            )
        empty = np.flatnonzero((values < 0).all(axis=1))
        if empty.size:
            raise ValueError(
                f"`schedule` step {empty[0]} holds only padding (-1); every step "
                "needs at least one training index."
            )
    return jax.numpy.asarray(schedule, dtype=jax.numpy.int32)


def epochs_of(schedule) -> np.ndarray:
    """The epoch of each step of a concrete schedule: int32 `(num_steps,)`.

    A new epoch starts at the first step whose batch holds an example already
    visited in the current epoch. For `make_schedule` (a permutation per epoch)
    these are exactly its epochs; for other schedules, maximal runs of steps
    that visit no example twice.
    """
    if isinstance(schedule, jax.core.Tracer):
        raise ValueError(
            "finding the epochs needs a concrete (not traced) schedule; call the "
            "estimator outside jax.jit, or give the steps' groups (per_epoch=) or "
            "checkpoints as an int array."
        )
    rows = np.asarray(schedule)
    out = np.zeros(rows.shape[0], np.int32)
    seen: set[int] = set()
    epoch = 0
    for t, row in enumerate(rows):
        batch = {int(i) for i in row if i >= 0}
        if seen & batch:
            epoch += 1
            seen = set()
        seen |= batch
        out[t] = epoch
    return out


def check_per_epoch(per_epoch, schedule) -> np.ndarray | None:
    """`per_epoch` as a group id per step: int32 `(num_steps,)`, or None.

    False: no breakdown. True: the epochs of `epochs_of`. An int array
    `(num_steps,)` of ids >= 0: your own grouping of the steps (e.g. phases of
    a learning-rate schedule); there are `max + 1` groups.
    """
    if per_epoch is False or per_epoch is None:
        return None
    num_steps = schedule.shape[0]
    if per_epoch is True:
        return epochs_of(schedule)
    groups = np.asarray(per_epoch)
    if (
        groups.shape != (num_steps,)
        or not np.issubdtype(groups.dtype, np.integer)
        or groups.min() < 0
    ):
        raise ValueError(
            "`per_epoch` must be a bool or an int array of group ids >= 0 with "
            f"shape (num_steps,) = ({num_steps},); got {per_epoch!r}."
        )
    return groups.astype(np.int32)
