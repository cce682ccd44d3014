"""ACC-SGD-IE, the public call: targets planned into chunks (each starting at its
targets' first step), windows, parameter subsets and the per-epoch split around
the recursion of `acc_recursion`.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.estimators.acc_recursion import acc_chunks
from accjax._src.problem import Influence, Run
from accjax._src.schedule import check_per_epoch
from accjax._src.train import raise_if_bad_step

# Parameters from which a chunk's HVPs run one after another on CPU: measured,
# mapped HVPs cost 0.8 of a gradient each on Hara's CNN (13,750 parameters)
# against 2.8 vmapped, the same on a 230k transformer, and 1.3x vmapped's on a
# 921-parameter MLP.
MAP_HVPS_FROM = 4096


def first_injections(schedule, num_examples: int, groups=None) -> np.ndarray:
    """`(num_groups, num_examples)`: the first step of each group that holds
    each example (num_steps where none does). Before it, an example's
    perturbation (its part from that group) is exactly zero."""
    rows = np.asarray(schedule)
    num_steps = rows.shape[0]
    groups = np.zeros(num_steps, np.int32) if groups is None else np.asarray(groups)
    first = np.full((int(groups.max()) + 1, num_examples), num_steps, np.int64)
    for t in range(num_steps - 1, -1, -1):
        row = rows[t]
        first[groups[t], row[row >= 0]] = t
    return first


def _plan(targets, schedule, num_examples, size, groups):
    """Chunks of targets in the order they first appear, and where each starts.

    Returns `(chunks, chunk_groups, chunk_starts, positions)`: chunk rows
    `(num_groups x num_chunks, size)` (-1 padding), their group and first
    step with an injection (None if `groups` is None, resp. if the inputs are
    traced), and for every chunk slot its place in the `(num_groups x K)`
    output (num_groups x K for padding).
    """
    num_targets = targets.shape[0]
    num_groups = 1 if groups is None else int(groups.max()) + 1
    concrete = not isinstance(targets, jax.core.Tracer) and not isinstance(
        schedule, jax.core.Tracer
    )
    first = (
        first_injections(schedule, num_examples, groups)[:, np.asarray(targets)]
        if concrete
        else None
    )
    chunks, starts, positions = [], [], []
    for g in range(num_groups):
        if concrete:
            order = np.argsort(first[g], kind="stable")
        else:
            order = np.arange(num_targets)
        pos = np.full(-(-num_targets // size) * size, -1)
        pos[:num_targets] = order
        pos = pos.reshape(-1, size)
        chunks.append(pos)
        positions.append(np.where(pos >= 0, g * num_targets + pos, -1))
        if concrete:
            at = np.where(pos >= 0, first[g][np.maximum(pos, 0)], schedule.shape[0])
            starts.append(at.min(axis=1))
    index = np.concatenate(chunks)
    chunks = jnp.where(index >= 0, targets[np.maximum(index, 0)], -1)
    positions = np.concatenate(positions).reshape(-1)
    positions = np.where(positions >= 0, positions, num_groups * num_targets)
    chunk_groups = None
    if groups is not None:
        chunk_groups = jnp.repeat(jnp.arange(num_groups), chunks.shape[0] // num_groups)
    chunk_starts = jnp.asarray(np.concatenate(starts), jnp.int32) if concrete else None
    return chunks, chunk_groups, chunk_starts, positions


def _assemble(a, positions, num_groups, num_targets):
    """Chunk outputs `(chunks, size, ...)` -> `(num_groups, num_targets, ...)`."""
    flat = a.reshape((-1,) + a.shape[2:])
    out = jnp.zeros((num_groups * num_targets,) + a.shape[2:], a.dtype)
    out = out.at[positions].set(flat, mode="drop")
    return out.reshape((num_groups, num_targets) + a.shape[2:])


def subset_flags(params_subset, params) -> tuple[bool, ...] | None:
    """`params_subset` as one bool per parameter leaf; None selects every leaf."""
    if params_subset is None:
        return None
    leaves_with_path = jax.tree_util.tree_flatten_with_path(params)[0]
    if callable(params_subset):
        flags = tuple(bool(params_subset(path, x)) for path, x in leaves_with_path)
    else:
        mask_leaves, mask_def = jax.tree.flatten(params_subset)
        if mask_def != jax.tree.structure(params) or not all(
            isinstance(m, bool | np.bool_) for m in mask_leaves
        ):
            raise ValueError(
                "`params_subset` must be a predicate (path, leaf) -> bool or a "
                "pytree of Python bools with the structure of params "
                f"{jax.tree.structure(params)}; got {params_subset!r}."
            )
        flags = tuple(bool(m) for m in mask_leaves)
    if not any(flags):
        paths = [jax.tree_util.keystr(p) for p, _ in leaves_with_path]
        raise ValueError(
            f"`params_subset` selects none of the parameter leaves {paths}."
        )
    return None if all(flags) else flags


def window_mask(window, num_steps: int) -> jax.Array:
    """Steps that get the per-target correction, as a bool array `(num_steps,)`.

    Accepts None (all steps), a `slice` or `range` of steps, an int array of
    step indices, or a bool array `(num_steps,)`.
    """
    if window is None:
        return jnp.ones((num_steps,), bool)
    if isinstance(window, slice | range):
        mask = np.zeros(num_steps, bool)
        mask[window if isinstance(window, slice) else list(window)] = True
        return jnp.asarray(mask)
    arr = np.asarray(window)
    if arr.dtype == bool:
        if arr.shape != (num_steps,):
            raise ValueError(
                f"a bool `window` must have shape (num_steps,) = ({num_steps},); "
                f"got {arr.shape}."
            )
        return jnp.asarray(arr)
    if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() >= num_steps):
            raise ValueError(
                f"`window` step indices must lie in [0, {num_steps}); got "
                f"min {arr.min()}, max {arr.max()}."
            )
        mask = np.zeros(num_steps, bool)
        mask[arr] = True
        return jnp.asarray(mask)
    raise ValueError(
        "`window` must be None, a slice or range of steps, an int array of step "
        f"indices, or a bool array of shape ({num_steps},); got {window!r}."
    )


def acc_sgd_ie(
    run: Run,
    query,
    *,
    targets=None,
    chunk_size: int | None = None,
    window=None,
    readout: str = "linear",
    params_subset=None,
    memory_budget: int | None = None,
    devices=None,
    per_epoch=False,
    progress=False,
) -> Influence:
    """Accumulative SGD-influence of removing each target on `query`.

    Propagates each target's perturbation D_k = z^{-k} - z along the factual
    trajectory. At every step that holds k, it uses the Jacobian of the step
    *without* k (for plain SGD, I - eta_t H_t^{-k}, the batch Hessian without
    k's curvature, still divided by |S_t|) and injects the difference of the
    two steps (for plain SGD, (eta_t / |S_t|) grad loss_k). For a quadratic loss
    and a linear optimizer (SGD, momentum) it equals exact retraining.

    Args:
      run: from `accjax.train`; replayed step by step.
      query: `f(params) -> scalar` or `(num_queries,)` vector.
      targets: int array `(num_targets,)` of training indices; None means all.
      chunk_size: targets propagated together (memory ~ chunk_size x state);
        None means all at once. Results do not depend on it.
      window: the steps that get the per-target correction (the paper's
        cheaper hybrid): None (all steps), a slice/range, int step indices or
        a bool mask `(num_steps,)`. Outside the window a step that holds k uses
        the shared Jacobian and the first-order injection, as SGD-IE does; an
        empty window gives SGD-IE's values.
      readout: "linear" for `<grad f(params_T), D_k>` (first order, the
        paper's estimator) or "nonlinear" for `f(params_T + D_k) - f(params_T)`.
      params_subset: propagate the perturbation through these parameter leaves
        only, the others held at the factual trajectory (the paper's
        restriction to influence-critical parameters, e.g. the last layer): a
        predicate `(path, leaf) -> bool` over `jax.tree_util` key paths, or a
        pytree of bools shaped like params. The per-target state and work
        shrink to the subset (the optimizer state's float leaves keep a full
        perturbation); `param_shift` is zero outside it. None: every leaf.
      memory_budget: bytes the call may use (arguments, outputs, XLA's
        temporaries, as XLA's memory analysis of the compiled call counts them);
        the largest chunk size that fits is chosen by compiling two trial sizes.
        Exclusive with `chunk_size` and `devices`.
      devices: shard each chunk's targets (the perturbation state and the
        per-target work) over these devices, e.g. `jax.devices()`; the factual
        trajectory is replicated. The chunk size is rounded up to a multiple
        of the device count. None: no sharding. Results do not depend on it.
      per_epoch: True for `Influence.per_epoch`: the part of D_k that the
        injections of each epoch's steps produce, carried to the end with the
        same (counterfactual) Jacobians, read out linearly; the parts sum to D_k
        because the recursion is linear in D. An int array `(num_steps,)`
        groups the steps your way. Costs one pass per epoch (group);
        needs readout="linear".
      progress: True (or a label) for a progress bar on stderr, or a
        callable `(done, total)` called as the steps complete.

    Returns:
      Influence with `values` of shape `(num_targets,)` (or
      `(num_targets, num_queries)`) and `param_shift`.

    Raises:
      ValueError: if a target is out of range or repeated, or an argument is
        malformed.
      FloatingPointError: if a perturbation becomes non-finite (names the step).
    """
    query = common.check_run(run, query)
    if readout not in ("linear", "nonlinear"):
        raise ValueError(f"`readout` must be 'linear' or 'nonlinear'; got {readout!r}.")
    targets = common.check_targets(targets, run.problem.num_examples)
    size = common.check_chunk_size(chunk_size, targets.shape[0])
    sharding = common.target_sharding(devices)
    if sharding is not None:
        num_devices = len(sharding.mesh.devices.flat)
        size = -(-size // num_devices) * num_devices
    mask = window_mask(window, run.schedule.shape[0])
    selected = subset_flags(params_subset, run.problem.params)
    groups = check_per_epoch(per_epoch, run.schedule)
    if groups is not None and readout != "linear":
        raise ValueError(
            "`per_epoch` needs readout='linear': the non-linear read-out does not "
            "split into a sum over epochs."
        )
    args = (run.problem, run.optimizer, run.schedule)
    options = dict(
        window=mask,
        query=query,
        linear_readout=readout == "linear",
        sharding=sharding,
        selected=selected,
        # one target's HVP at a time on CPU (see _acc_step) unless the model is
        # so small that the loop's own cost dominates; vmapped elsewhere and
        # wherever the targets are sharded over devices
        map_hvps=sharding is None
        and jax.default_backend() == "cpu"
        and common.num_params(run.problem.params) >= MAP_HVPS_FROM,
    )
    if memory_budget is not None:
        if chunk_size is not None or devices is not None:
            raise ValueError("pass `memory_budget` without `chunk_size` and `devices`.")
        size = common.budget_chunk_size(
            acc_chunks, args, targets, memory_budget, **options
        )
    chunks, chunk_groups, chunk_starts, positions = _plan(
        targets, run.schedule, run.problem.num_examples, size, groups
    )
    options.update(chunk_starts=chunk_starts)
    if groups is not None:
        options.update(chunk_groups=chunk_groups, step_groups=jnp.asarray(groups))
    with progress_lib.reporting(progress, "acc_sgd_ie") as with_progress:
        values, shift, bad = acc_chunks(
            *args, chunks, with_progress=with_progress, **options
        )
        jax.block_until_ready(values)
    values, shift, bad = common.to_local((values, shift, bad))
    raise_if_bad_step(bad, "acc_sgd_ie's perturbation", derivative=True)
    num_groups = 1 if groups is None else int(groups.max()) + 1
    place = lambda a: _assemble(a, positions, num_groups, targets.shape[0])
    by_epoch = place(values)
    shift = jax.tree.map(lambda a: place(a).sum(0), shift)
    per_epoch = None if groups is None else jnp.moveaxis(by_epoch, 0, 1)
    warn_if_outside_linear_regime(targets, shift, run.problem.params, run.params)
    return Influence(targets, by_epoch.sum(0), shift, per_epoch=per_epoch)


def warn_if_outside_linear_regime(targets, shift, start, end) -> None:
    """Warns (RuntimeWarning) naming the targets whose perturbation outgrew the
    whole run's movement tenfold, |D_k| > 10 |params_T - params_0|: removing one
    example cannot plausibly move the parameters ten times further than training
    on all of them did, so the linearised dynamics have left their regime there
    and the values are unreliable. (Up to a few times the movement is seen where
    the values are still fine: a perturbation on rows the query never reads.)
    Seen with Adam where a coordinate's second moment is tiny (an embedding row
    of a rare token): its effective step lr / sqrt(v) is far beyond what the
    non-linear update ever takes."""
    trees = (targets, shift, start, end)
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(trees)):
        return
    sizes = np.sqrt(
        sum(
            np.sum(np.square(np.asarray(a, np.float64)).reshape(a.shape[0], -1), 1)
            for a in jax.tree.leaves(shift)
        )
    )
    moved = np.sqrt(
        sum(
            np.sum(np.square(np.asarray(b, np.float64) - np.asarray(a, np.float64)))
            for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(end), strict=True)
        )
    )
    bad = np.flatnonzero(sizes > 10 * moved)
    if bad.size:
        warnings.warn(
            f"acc_sgd_ie: the perturbation of {bad.size} target(s), e.g. "
            f"{np.asarray(targets)[bad[:5]].tolist()}, moved the parameters more than "
            f"ten times as far as the whole run did (|D_k| up to "
            f"{sizes[bad].max() / moved:.3g} x |params_T - params_0|): the "
            "linearised run left its regime there and "
            "those values are unreliable (with Adam: a coordinate whose second "
            "moment is tiny, such as a rare token's embedding row). Check them with "
            "loo_retrain.",
            RuntimeWarning,
            stacklevel=3,
        )
