"""SGD-IE (Hara et al. 2019): one reverse pass through the training scan."""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.problem import Influence, Run
from accjax._src.schedule import check_per_epoch
from accjax._src.train import DERIVATIVE_HINT, init_state, param_dtype, step


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _tick_backward(x, done, total):
    """Identity whose backward pass reports progress `done` of `total`."""
    del done
    return x


def _tick_backward_fwd(x, done, total):
    del total
    return x, done


def _tick_backward_bwd(total, done, cotangent):
    progress_lib.tick(done, total)
    return cotangent, None


_tick_backward.defvjp(_tick_backward_fwd, _tick_backward_bwd)


STORAGES = ("auto", "all", "states", "nested")


def check_storage(storage, num_steps: int):
    """Validates `storage`: one of STORAGES or a segment length in [1, num_steps]."""
    if isinstance(storage, str) and storage in STORAGES:
        return storage
    if (
        not isinstance(storage, bool)
        and isinstance(storage, int | np.integer)
        and 1 <= storage <= num_steps
    ):
        return int(storage)
    raise ValueError(
        "`storage` must be 'auto', 'all', 'states', 'nested' or a segment length "
        f"(int) in [1, {num_steps}]; got {storage!r}."
    )


def available_memory() -> int:
    """Bytes free on the default device now: XLA's allocator limit less what is in
    use where the backend reports it (GPU, TPU), else the host's MemAvailable."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def nested_states(num_steps: int, levels: int) -> int:
    """How many states `levels` nested checkpoint levels keep at most (`_nested`)."""
    if levels == 1:
        return num_steps
    block = _block(num_steps, levels)
    return num_steps // block + nested_states(block, levels - 1)


def _block(num_steps: int, levels: int) -> int:
    """The block length of the outermost of `levels` levels: ~T^((L-1)/L)."""
    return max(1, min(num_steps, math.ceil(num_steps ** ((levels - 1) / levels))))


def reverse_storage_bytes(storage, num_steps: int, state: int, residuals: int) -> int:
    """What the reverse pass keeps beyond arguments and outputs, estimated from
    the bytes of one state and of one step's residuals (as `jax.vjp` keeps them)."""
    if storage == "all":
        return num_steps * residuals
    if storage == "states":
        return num_steps * state + residuals
    if isinstance(storage, int):
        return -(-num_steps // storage) * state + storage * residuals
    _, levels = storage
    return nested_states(num_steps, levels) * state + residuals


def choose_storage(storage, num_steps: int, state: int, residuals: int, budget: int):
    """The fastest storage within `budget` bytes: "all", then "states", then the
    fewest nested levels that fit ("auto"); the fewest levels ("nested")."""
    if storage == "auto":
        for candidate in ("all", "states"):
            if reverse_storage_bytes(candidate, num_steps, state, residuals) <= budget:
                return candidate
    most = max(2, math.ceil(math.log2(max(num_steps, 2))))
    for levels in range(2, most + 1):
        candidate = ("nested", levels)
        if reverse_storage_bytes(candidate, num_steps, state, residuals) <= budget:
            return candidate
    need = reverse_storage_bytes(("nested", most), num_steps, state, residuals)
    raise ValueError(
        f"`memory_budget` = {budget} bytes is below what the reverse pass keeps with "
        f"every storage: at least {need} bytes ({most} nested levels of a "
        f"{state}-byte state, one step's {residuals} bytes of residuals)."
    )


def step_bytes(problem, optimizer, schedule) -> tuple[int, int]:
    """(bytes of the training state, bytes of one step's residuals).

    Cached on the shapes, the problem's static fields and the optimizer: tracing
    one step costs about as much as running a short run's reverse pass.
    """
    key = _step_bytes_key(problem, optimizer, schedule)
    try:
        return _step_bytes(*key)
    except TypeError:  # something unhashable (a loss or optimizer): no cache
        return _step_bytes.__wrapped__(*key)


def _step_bytes_key(problem, optimizer, schedule):
    leaves, treedef = jax.tree.flatten(problem)
    specs = tuple(
        jax.ShapeDtypeStruct(np.shape(x), x.dtype if hasattr(x, "dtype") else type(x))
        for x in leaves
    )
    return treedef, specs, optimizer, schedule.shape[1:], np.dtype(schedule.dtype)


@functools.lru_cache(maxsize=16)
def _step_bytes(treedef, specs, optimizer, batch_shape, index_dtype):
    problem = jax.tree.unflatten(treedef, specs)
    z0 = jax.eval_shape(lambda p: init_state(p, optimizer), problem)
    dtype = param_dtype(problem.params)
    indices = jax.ShapeDtypeStruct(batch_shape, index_dtype)
    weights = jax.ShapeDtypeStruct(batch_shape, dtype)

    def pullback(problem, z, indices, weights):  # problem traced: its data may be NumPy
        one = lambda z, w: step(problem, optimizer, z, indices, w, 0)
        return jax.vjp(one, z, weights)[1]

    residuals = jax.eval_shape(pullback, problem, z0, indices, weights)
    return common.nbytes(z0), common.nbytes(residuals)


def resolve_storage(run: Run, storage, memory_budget=None):
    """`storage` checked, with "auto" and "nested" resolved to the concrete mode
    `sgd_ie` runs for `memory_budget` (None: half the free memory)."""
    storage = check_storage(storage, run.num_steps)
    if memory_budget is not None:
        common.check_memory_budget(memory_budget)
    if storage in ("auto", "nested"):
        if memory_budget is None:
            memory_budget = available_memory() // 2
        sizes = step_bytes(run.problem, run.optimizer, run.schedule)
        return choose_storage(storage, run.num_steps, *sizes, int(memory_budget))
    if memory_budget is not None:
        raise ValueError(
            "`memory_budget` chooses the storage: pass it with storage='auto' or "
            f"'nested', not storage={storage!r}."
        )
    return storage


SAVED = jax.checkpoint_policies.dots_saveable  # what "all" stores of a step


def _nested(body, z, xs, levels):
    """`levels` nested checkpointed scans: the outer level keeps the state at the
    start of each block of ~T^((L-1)/L) steps, and when the reverse pass reaches
    a block it replays it as `levels - 1` levels; one level is "states". About
    L x T^(1/L) states in memory and L - 1 extra forward passes."""
    if levels == 1:
        return jax.lax.scan(jax.checkpoint(body), z, xs)[0]
    num_steps = jax.tree.leaves(xs)[0].shape[0]
    block = _block(num_steps, levels)
    whole = num_steps // block * block
    head = jax.tree.map(lambda a: a[:whole].reshape((-1, block) + a.shape[1:]), xs)
    inner = jax.checkpoint(lambda z, blk: (_nested(body, z, blk, levels - 1), None))
    z = jax.lax.scan(inner, z, head)[0]
    if whole < num_steps:
        z = _nested(body, z, jax.tree.map(lambda a: a[whole:], xs), levels - 1)
    return z


def _scan(body, z, xs, storage):
    """`lax.scan(body, z, xs)[0]`, keeping for the reverse pass what `storage` says.

    "all": every step's residuals, of which the matrix products are stored and
    the elementwise rest is recomputed in the reverse pass (`SAVED`: faster than
    storing it all, as bench/api.py's `sgd_ie_x_train` measures). "states": the
    state before each step (the step is recomputed in the reverse pass). An int
    c: the state every c steps; each segment is replayed, storing its residuals
    as "all" does, when the reverse pass reaches it. ("nested", L): `_nested`.
    """
    saving = jax.checkpoint(body, policy=SAVED)
    if storage == "all":
        return jax.lax.scan(saving, z, xs)[0]
    if storage == "states":
        return jax.lax.scan(jax.checkpoint(body), z, xs)[0]
    if isinstance(storage, tuple):
        return _nested(body, z, xs, storage[1])
    num_steps = jax.tree.leaves(xs)[0].shape[0]
    whole = num_steps // storage * storage
    head = jax.tree.map(lambda a: a[:whole].reshape((-1, storage) + a.shape[1:]), xs)
    segment = jax.checkpoint(lambda z, seg: (jax.lax.scan(saving, z, seg)[0], None))
    z = jax.lax.scan(segment, z, head)[0]
    if whole < num_steps:
        z = jax.lax.scan(saving, z, jax.tree.map(lambda a: a[whole:], xs))[0]
    return z


def final_query(
    problem,
    optimizer,
    schedule,
    weights,
    groups,
    *,
    query,
    with_progress=False,
    storage="all",
):
    """f(params_T(w)): the query after training with per-example weights `w`.

    `weights` has shape `(num_groups, num_examples)`, and `groups`
    `(num_steps,)` names the row each step reads; padding slots get weight 0.
    `storage` is what the reverse pass keeps (see `_scan`).
    """
    num_steps = schedule.shape[0]
    total = 2 * num_steps

    def body(z, xs):
        t, indices, group = xs
        row = weights[group]
        slot_weights = jnp.where(indices >= 0, row[jnp.maximum(indices, 0)], 0)
        if with_progress:
            progress_lib.tick(t + 1, total)
            z = _tick_backward(z, total - t, total)
        return step(problem, optimizer, z, indices, slot_weights, t), None

    z0 = init_state(problem, optimizer)
    z = _scan(body, z0, (jnp.arange(num_steps), schedule, groups), storage)
    return query(z.params)


@functools.partial(
    jax.jit, static_argnames=("optimizer", "num_groups", "with_progress", "storage")
)
def _sgd_ie_all(
    problem,
    optimizer,
    schedule,
    *,
    query,
    groups=None,
    num_groups=1,
    with_progress,
    storage,
):
    """-d f(train(w)) / d w at w = 1 for every example and group of steps:
    `(num_groups, n)` or `(num_groups, n, Q)`."""
    ones = jnp.ones((num_groups, problem.num_examples), param_dtype(problem.params))
    if groups is None:
        groups = jnp.zeros(schedule.shape[:1], jnp.int32)
    f = lambda w: final_query(
        problem,
        optimizer,
        schedule,
        w,
        groups,
        query=query,
        with_progress=with_progress,
        storage=storage,
    )
    value, pullback = jax.vjp(f, ones)
    if value.ndim == 0:
        (grad,) = pullback(jnp.ones_like(value))
        return -grad
    (jac,) = jax.vmap(pullback)(jnp.eye(value.shape[0], dtype=value.dtype))
    return -jnp.moveaxis(jac, 0, -1)


def sgd_ie(
    run: Run,
    query,
    *,
    targets=None,
    storage="auto",
    memory_budget=None,
    per_epoch=False,
    progress=False,
) -> Influence:
    """SGD-IE: the first-order effect of each example's weight on the query.

    influence(k) ~ -d f(params_T(w)) / d w_k at w = 1, for all examples in one
    reverse-mode pass through the training scan. For plain SGD this is exactly
    Hara et al.'s adjoint recursion u <- (I - eta_t H_t) u; for other optax
    optimizers it differentiates through their update and state. At the steps
    that hold k it keeps k's own curvature (the full-batch Jacobian), which is
    what ACC-SGD-IE corrects.

    Args:
      run: from `accjax.train`.
      query: `f(params) -> scalar` or `(num_queries,)` vector (one reverse
        pass per query component).
      targets: int array `(num_targets,)`; None means all. The pass computes
        every example either way.
      storage: what the forward pass keeps for the reverse pass: "all" (every
        step's matrix products, the elementwise rest recomputed: fastest,
        O(T x (state + activations))), "states" (the
        state before each step, each step recomputed once: O(T x state)), an
        int c (the state every c steps; each segment replayed with its
        residuals: O((T/c) x state + c x residuals), about one more training
        run of compute), "nested" (L levels of checkpoints, ~L x T^(1/L)
        states, L - 1 more training runs of compute; the fewest levels that
        fit `memory_budget`), or "auto" (the default: "all" if it fits
        `memory_budget`, else "states", else "nested"). Results do not depend
        on it.
      memory_budget: bytes the reverse pass may keep ("auto" and "nested"),
        estimated from the shapes of the state and of one step's residuals as
        `jax.vjp` keeps them; None is half of the default device's free memory
        (the host's MemAvailable on CPU). Arguments (the data) and XLA's
        working space for one step come on top.
      per_epoch: True for `Influence.per_epoch`, each epoch's share (the
        derivative in k's weight at that epoch's steps only; see
        `accjax.epochs_of`), or an int array `(num_steps,)` grouping the steps
        your way. Same single pass; the weights grow to
        `(num_groups, num_examples)`.
      progress: True (or a label) for a progress bar on stderr, or a
        callable `(done, total)` called as the steps complete.

    Returns:
      Influence with `values` `(num_targets,)` (or `(num_targets, num_queries)`),
      no `param_shift`, and `per_epoch` if asked for.

    Memory: see `storage`.
    """
    query = common.check_run(run, query)
    targets = common.check_targets(targets, run.problem.num_examples)
    storage = resolve_storage(run, storage, memory_budget)
    groups = check_per_epoch(per_epoch, run.schedule)
    with progress_lib.reporting(progress, "sgd_ie") as with_progress:
        grouped = _sgd_ie_all(
            run.problem,
            run.optimizer,
            run.schedule,
            query=query,
            groups=None if groups is None else jnp.asarray(groups),
            num_groups=1 if groups is None else int(groups.max()) + 1,
            with_progress=with_progress,
            storage=storage,
        )
        jax.block_until_ready(grouped)
    values = grouped.sum(0)
    common.check_finite(
        values,
        "sgd_ie produced non-finite influence values; check that training "
        "itself stayed finite and the query is finite at the final params."
        + DERIVATIVE_HINT,
    )
    if groups is None:
        return Influence(targets, values[targets])
    by_epoch = jnp.moveaxis(grouped, 0, 1)[targets]
    return Influence(targets, values[targets], per_epoch=by_epoch)
