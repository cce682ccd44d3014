"""Exact leave-one-out retraining: the ground truth every estimator aims at."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.problem import Influence, Run
from accjax._src.train import (
    init_state,
    mark_bad_step,
    param_dtype,
    raise_if_bad_step,
    step,
)


@functools.partial(jax.jit, static_argnames=("optimizer", "with_progress", "sharding"))
def _loo_chunks(
    problem, optimizer, schedule, chunks, *, query, with_progress, sharding=None
):
    """Retrains once per target of each chunk, plus one factual reference run.

    The factual run (target -1, removes nothing) goes through the same vmapped
    kernels as the counterfactual ones, so a target that never shapes the
    parameters gets a shift of exactly zero, not a rounding difference between
    two code paths. With `sharding`, the runs (reference included) are split
    over its devices.
    """
    num_chunks, size = chunks.shape
    num_steps = schedule.shape[0]
    dtype = param_dtype(problem.params)
    z0 = init_state(problem, optimizer)
    rows = jnp.concatenate([jnp.full((num_chunks, 1), -1, chunks.dtype), chunks], 1)

    def one_chunk(_, xs):
        c, row = xs
        zs = jax.tree.map(lambda a: jnp.broadcast_to(a, (size + 1,) + a.shape), z0)
        zs = common.shard_targets(zs, sharding)

        def body(carry, xs):
            zs, bad = carry
            t, indices = xs
            weights = jax.vmap(
                lambda k: common.counterfactual_weights(indices, k, dtype)
            )(row)
            zs = jax.vmap(lambda z, w: step(problem, optimizer, z, indices, w, t))(
                zs, weights
            )
            zs = common.shard_targets(zs, sharding)
            bad = mark_bad_step(bad, t, zs.params)
            if with_progress:
                progress_lib.tick(c * num_steps + t + 1, num_chunks * num_steps)
            return (zs, bad), None

        steps = (jnp.arange(num_steps, dtype=jnp.int32), schedule)
        (zs, bad), _ = jax.lax.scan(body, (zs, jnp.int32(-1)), steps)
        shift = jax.tree.map(lambda a: a[1:] - a[:1], zs.params)
        f = jax.vmap(query)(zs.params)
        return None, (f[1:] - f[:1], shift, bad)

    _, out = jax.lax.scan(one_chunk, None, (jnp.arange(num_chunks), rows))
    return out


def loo_retrain(
    run: Run,
    query,
    *,
    targets=None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    devices=None,
    progress=False,
) -> Influence:
    """Exact counterfactual retraining without each target (DESIGN.md section 2).

    For every target k, replays the run (same initial params, schedule,
    optimizer and learning rates) with k's weight set to 0 in every batch that
    holds it; the batch denominator |S| and the L2 term are unchanged. The runs
    of a chunk of targets are vmapped.

    In float32 the difference of two long trajectories loses digits to
    cancellation; use float64 (`jax_enable_x64` and float64 params/data) for a
    ground truth on long runs.

    Args:
      run: from `accjax.train`.
      query: `f(params) -> scalar` or `(num_queries,)` vector.
      targets: int array `(num_targets,)` of training indices; None means all.
      chunk_size: targets retrained together (memory ~ chunk_size x state);
        None means all at once. Results do not depend on it.
      memory_budget: bytes the call may use (arguments, outputs and XLA's
        temporaries, by XLA's memory analysis of the compiled call); the
        largest chunk size that fits is chosen. Exclusive with `chunk_size`
        and `devices`.
      devices: split each chunk's retrainings over these devices, e.g.
        `jax.devices()`. The chunk size is rounded up so that the chunk plus
        its factual reference run is a multiple of the device count. None: no
        sharding. Results do not depend on it.
      progress: True (or a label) for a progress bar on stderr, or a
        callable `(done, total)` called as the steps complete.

    Returns:
      Influence with `values` `f(params without k) - f(params)` of shape
      `(num_targets,)` (or `(num_targets, num_queries)`) and `param_shift`.

    Raises:
      ValueError: for bad targets, chunk size, query or run.
      FloatingPointError: if a retraining diverges (names the step).
    """
    query = common.check_run(run, query)
    targets = common.check_targets(targets, run.problem.num_examples)
    size = common.check_chunk_size(chunk_size, targets.shape[0])
    sharding = common.target_sharding(devices)
    if sharding is not None:
        num_devices = len(sharding.mesh.devices.flat)
        size = -(-(size + 1) // num_devices) * num_devices - 1
    args = (run.problem, run.optimizer, run.schedule)
    if memory_budget is not None:
        if chunk_size is not None or devices is not None:
            raise ValueError("pass `memory_budget` without `chunk_size` and `devices`.")
        size = common.budget_chunk_size(
            _loo_chunks, args, targets, memory_budget, query=query
        )
    with progress_lib.reporting(progress, "loo_retrain") as with_progress:
        values, shift, bad = _loo_chunks(
            *args,
            common.chunk(targets, size),
            query=query,
            with_progress=with_progress,
            sharding=sharding,
        )
        jax.block_until_ready(values)
    values, shift, bad = common.to_local((values, shift, bad))
    raise_if_bad_step(bad, "leave-one-out retraining")
    num = targets.shape[0]
    return Influence(targets, common.unchunk(values, num), common.unchunk(shift, num))
