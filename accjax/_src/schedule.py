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
