"""Input checks and target chunking shared by the estimators."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.flatten_util import ravel_pytree

from accjax._src.problem import Run, as_query_tree, check_problem, check_query
from accjax._src.schedule import check_schedule
from accjax._src.train import batch_grad, init_state, param_dtype, step, update


class FloatLeaves:
    """The float leaves of a pytree of one structure (a TrainState, an optimizer
    state) as a list, and back. Integer leaves such as optax step counts carry
    no perturbation: they evolve the same in the factual and the
    counterfactual runs, and `merge` takes them from the tree it is given."""

    def __init__(self, tree):
        leaves, self.treedef = jax.tree.flatten(tree)
        self.is_float = [jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves]

    def floats(self, tree) -> list:
        """Every float leaf of `tree`, in flattening order."""
        leaves = jax.tree.leaves(tree)
        return [x for x, f in zip(leaves, self.is_float, strict=True) if f]

    def merge(self, floats: list, tree):
        """`tree` with its float leaves replaced by `floats`."""
        it = iter(floats)
        leaves = [
            next(it) if f else x
            for x, f in zip(jax.tree.leaves(tree), self.is_float, strict=True)
        ]
        return jax.tree.unflatten(self.treedef, leaves)


def num_params(tree) -> int:
    """Entries of the arrays (or shape structs) of a pytree."""
    return sum(int(a.size) for a in jax.tree.leaves(tree))


def nbytes(tree) -> int:
    """Bytes of the arrays (or shape structs) of a pytree."""
    return sum(a.size * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree))


def check_memory_budget(budget) -> None:
    """A positive int of bytes; raises ValueError otherwise."""
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int | np.integer)
        or budget < 1
    ):
        raise ValueError(
            f"`memory_budget` must be a positive int (bytes); got {budget!r}."
        )


def check_run(run: Run, query) -> jax.tree_util.Partial:
    """Validates a run and a query; returns the query as a pytree (`as_query_tree`).

    Estimators pass it to their jitted core as a traced argument: queries that
    are `jax.tree_util.Partial`s (such as `accjax.mean_loss`) differing only in
    their arrays share one compilation.
    """
    check_run_only(run)
    check_query(query, run.problem.params)
    return as_query_tree(query)


def check_run_only(run: Run) -> None:
    """Validates a run (its type, problem and schedule)."""
    if not isinstance(run, Run):
        raise TypeError(
            f"expected an accjax.Run (from accjax.train); got {type(run).__name__}."
        )
    check_problem(run.problem)
    check_schedule(run.schedule, run.problem.num_examples)


def check_targets(targets, num_examples: int) -> jax.Array:
    """Validates target indices; None means all examples. Returns int32 `(K,)`."""
    if targets is None:
        return jnp.arange(num_examples, dtype=jnp.int32)
    if not hasattr(targets, "dtype"):
        targets = np.asarray(targets)
    if targets.ndim != 1 or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(
            "`targets` must be a 1-D int array of training indices; got dtype "
            f"{targets.dtype} and shape {tuple(targets.shape)}."
        )
    if targets.shape[0] == 0:
        raise ValueError("`targets` is empty; pass at least one training index.")
    if not isinstance(targets, jax.core.Tracer):
        values = np.asarray(targets)
        bad = values[(values < 0) | (values >= num_examples)]
        if bad.size:
            raise ValueError(
                f"`targets` holds {bad[0]}, outside [0, {num_examples}) "
                f"(num_examples = {num_examples})."
            )
        uniq, counts = np.unique(values, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"`targets` repeats index {uniq[counts > 1][0]}; each target must "
                "appear once."
            )
    return jnp.asarray(targets, dtype=jnp.int32)


def check_learning_rate(learning_rate) -> None:
    """A float or an optax-style schedule `lr(step_index)`."""
    if not (callable(learning_rate) or isinstance(learning_rate, int | float)):
        raise TypeError(
            "`learning_rate` must be a float or a schedule lr(step); got "
            f"{learning_rate!r}."
        )


def learning_rate_at(learning_rate, t):
    """The step size of step `t` (from 0)."""
    return learning_rate(t) if callable(learning_rate) else learning_rate


def check_chunk_size(chunk_size, num_targets: int) -> int:
    """None means one chunk holding every target."""
    if chunk_size is None:
        return num_targets
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(
            f"`chunk_size` must be an int >= 1 or None; got {chunk_size!r}."
        )
    return min(int(chunk_size), num_targets)


def budget_chunk_size(core, args, targets, budget, **options) -> int:
    """`chunk_size_for_budget` for a jitted estimator core called as
    `core(*args, chunks, with_progress=False, **options)`."""
    return chunk_size_for_budget(
        lambda c: footprint(
            core.lower(
                *args, chunk(targets, c), with_progress=False, **options
            ).compile()
        ),
        budget,
        targets.shape[0],
    )


def footprint(compiled) -> int:
    """Bytes a compiled call needs: arguments, outputs and XLA's temporaries."""
    m = compiled.memory_analysis()
    if m is None:
        raise ValueError(
            "`memory_budget` needs XLA's memory analysis, which this backend does "
            "not provide; pass `chunk_size` instead."
        )
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)


def chunk_size_for_budget(measure, budget, num_targets: int) -> int:
    """The largest chunk size whose compiled footprint fits `budget` bytes.

    `measure(c)` compiles the estimator for chunks of `c` targets and returns its
    footprint. The footprint is fitted as a + b c from two trial sizes, and the
    chosen size is measured and shrunk until it fits.
    """
    check_memory_budget(budget)
    small = measure(1)
    if small > budget:
        raise ValueError(
            f"`memory_budget` = {budget} bytes is below the footprint of a chunk of "
            f"one target ({small} bytes, arguments and outputs included)."
        )
    trial = min(num_targets, 16)
    per_target = max((measure(trial) - small) / max(trial - 1, 1), 1.0)
    size = int(min(num_targets, max(1, 1 + (budget - small) // per_target)))
    while size > 1 and measure(size) > budget:
        size = max(1, int(size * 0.8))
    return size


def target_sharding(devices) -> jax.sharding.NamedSharding | None:
    """A sharding of the leading (target) axis over `devices`; None for one device."""
    if devices is None:
        return None
    devices = list(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(
            f"`devices` must be a non-empty list of jax devices, e.g. jax.devices(); "
            f"got {devices!r}."
        )
    if len(devices) == 1:
        return None
    mesh = jax.sharding.Mesh(np.array(devices), ("targets",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("targets"))


def shard_targets(tree, sharding):
    """Constrains every leaf's leading axis to `sharding` (no-op for None)."""
    if sharding is None:
        return tree
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)


def to_local(tree):
    """Leaves spread over several processes (a mesh of many hosts) gathered into
    ordinary arrays on this process's default device, equal on every process.

    Every process must call it (it is a collective); arrays this process holds
    entirely, and traced values, are returned as they are.
    """

    def local(a):
        traced = isinstance(a, jax.core.Tracer)
        if traced or not isinstance(a, jax.Array) or a.is_fully_addressable:
            return a
        return jnp.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(local, tree)


def chunk(targets: jax.Array, chunk_size: int) -> jax.Array:
    """Splits `(K,)` targets into `(num_chunks, chunk_size)`, padding with -1."""
    num_chunks = -(-targets.shape[0] // chunk_size)
    padded = jnp.full((num_chunks * chunk_size,), -1, targets.dtype)
    return padded.at[: targets.shape[0]].set(targets).reshape(num_chunks, chunk_size)


def unchunk(tree, num_targets: int):
    """Merges the leading (num_chunks, chunk_size) axes and drops the padding."""
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:])[:num_targets], tree)


def target_slots(row: jax.Array, num_examples: int) -> jax.Array:
    """Training index -> position in `row` (a chunk of targets, -1 padding);
    -1 for examples that are not in it."""
    return (
        jnp.full((num_examples,), -1, jnp.int32)
        .at[jnp.where(row >= 0, row, num_examples)]
        .set(jnp.arange(row.shape[0], dtype=jnp.int32), mode="drop")
    )


def counterfactual_weights(indices: jax.Array, target, dtype) -> jax.Array:
    """Batch-slot weights of the run without `target`: 0 where it sits, else 1.

    A target of -1 (chunk padding, or the factual reference) removes nothing.
    """
    return jnp.where((indices == target) & (target >= 0), 0, 1).astype(dtype)


def check_plain_sgd(run: Run, learning_rate, name: str, advice: str = "") -> None:
    """Raises unless the run's first steps moved params by -learning_rate * gradient.

    `advice` ends the message (default: pass the run's rate, or use an
    estimator that follows any optimizer)."""
    if isinstance(run.schedule, jax.core.Tracer):
        return
    problem, z = run.problem, init_state(run.problem, run.optimizer)
    for t in range(min(2, run.num_steps)):
        indices = run.schedule[t]
        ones = jnp.ones(indices.shape, param_dtype(z.params))
        grads = ravel_pytree(batch_grad(problem, z.params, indices, ones, t))[0]
        moved = ravel_pytree(update(problem, run.optimizer, z, indices, ones, t)[0])[0]
        want = -learning_rate_at(learning_rate, t) * grads
        scale = float(jnp.max(jnp.abs(want)))
        if float(jnp.max(jnp.abs(moved - want))) > 1e-3 * scale + 1e-30:
            raise ValueError(
                f"{name} models plain SGD (params -= learning_rate(t) * gradient), "
                f"but at step {t} the run's optimizer moved the parameters by "
                f"{np.asarray(moved)[:3]}... where -learning_rate({t}) * gradient is "
                f"{np.asarray(want)[:3]}.... "
                + (
                    advice
                    or "Pass the learning rate the run was trained with, or use "
                    "sgd_ie / acc_sgd_ie, which follow any optax optimizer."
                )
            )
        z = step(problem, run.optimizer, z, indices, ones, t)


def check_finite(values, message: str) -> None:
    """Raises FloatingPointError(`message`) if concrete `values` hold a NaN or inf."""
    if not isinstance(values, jax.core.Tracer) and not bool(
        jnp.all(jnp.isfinite(values))
    ):
        raise FloatingPointError(message)
