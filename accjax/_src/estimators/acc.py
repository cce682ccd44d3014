"""ACC-SGD-IE: per-target perturbations propagated along the factual trajectory.

For the state z = (params, opt_state) and the perturbation D_k = z^{-k} - z,

    D_k <- [step(z_t, S_t, w^{-k}) - step(z_t, S_t, 1)] + J_z step(z_t, S_t, w^{-k}) D_k

Targets outside S_t have w^{-k} = 1 on the batch, so their update is the
tangent of the shared factual step: one `jax.linearize` of the batch gradient
per step, its linear map (the batch HVP) vmapped over all targets of the chunk.
The targets inside S_t differ from it by their own gradient and single-example
HVP (the batch gradient is linear in the weights), then every target goes
through the optax update and its tangent.

Differences of two steps are formed from the optax *updates* (and optimizer
states), never from the new parameters, so they do not cancel against the
parameters' magnitude in float32.
"""

from __future__ import annotations

import functools
import warnings

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
    example_loss,
    example_rows,
)
from accjax._src.schedule import check_per_epoch
from accjax._src.train import (
    batch_grad,
    init_state,
    mark_bad_step,
    param_dtype,
    raise_if_bad_step,
    step,
)
from accjax._src.zero_sqrt import optimizer_update


class _FloatView(common.FloatLeaves):
    """Splits a TrainState into the leaves that carry a perturbation and the rest.

    Integer leaves carry none (`common.FloatLeaves`). With a parameter subset,
    the unselected parameter leaves carry none either: they are held at the
    factual trajectory. The perturbation is a list: the selected parameter
    leaves, then the optimizer state's float leaves.
    """

    def __init__(self, z: TrainState, selected=None):
        super().__init__(z)
        self.params_treedef = jax.tree.structure(z.params)
        self.num_params = self.params_treedef.num_leaves
        self.selected = (
            (True,) * self.num_params if selected is None else tuple(selected)
        )
        self.num_selected = sum(self.selected)
        num_state_floats = sum(self.is_float) - self.num_params
        # over the float leaves (all parameter leaves are floats)
        self.perturbed = self.selected + (True,) * num_state_floats

    def params_of(self, floats: list):
        """The parameter part of a full float-leaf list, as a params pytree."""
        return jax.tree.unflatten(self.params_treedef, floats[: self.num_params])

    def perturbed_of(self, floats: list) -> list:
        """The leaves of a full float-leaf list that carry a perturbation."""
        return [x for x, p in zip(floats, self.perturbed, strict=True) if p]

    def expand(self, d: list) -> list:
        """A full float-leaf list from a perturbation, None where frozen."""
        it = iter(d)
        return [next(it) if p else None for p in self.perturbed]

    def select(self, params) -> list:
        """The selected parameter leaves."""
        leaves = jax.tree.leaves(params)
        return [x for x, s in zip(leaves, self.selected, strict=True) if s]

    def with_selected(self, params, chosen: list):
        """`params` with its selected leaves replaced by `chosen`."""
        it = iter(chosen)
        leaves = [
            next(it) if s else x
            for x, s in zip(jax.tree.leaves(params), self.selected, strict=True)
        ]
        return jax.tree.unflatten(self.params_treedef, leaves)

    def advance(self, d: list, change: list) -> list:
        """D_{t+1} from the change of (updates, opt_state): params add, rest replace."""
        return [
            x + c if i < self.num_selected else c
            for i, (x, c) in enumerate(zip(d, change, strict=True))
        ]


def _own_terms(problem, view, params, t, indices, slots, dp, in_window, source):
    """Per-target corrections of the batch gradient and its tangent.

    The batch gradient G(params, w) is linear in the weights, so removing k
    subtracts 1 / |S| of k's own gradient g_k per batch slot it holds, and the
    Jacobian of the step without k differs from the shared one by the same
    share of k's own Hessian H_k. Outside the window the primal stays factual
    and the tangent gets -g_k / |S|, the first-order (SGD-IE) injection.

    `source` False keeps the Jacobian's correction but drops the injection
    (the step's own contribution), for the per-epoch breakdown.

    Only the batch slots whose example is a target of the chunk do this work:
    one gradient and one single-example HVP per slot, for min(B, chunk) slots
    (a batch holds each example once, so no more can be targets), scattered
    back onto the chunk's targets.

    Args:
      indices: `(B,)` the batch's training indices, -1 for padding.
      slots: `(B,)` the chunk position of each slot's example, -1 where it is
        not a target of the chunk (or padding).
      dp: the selected parameter leaves of the perturbation, `(chunk, ...)`.

    Returns (primal, tangent) corrections of the selected leaves, lists with a
    leading chunk axis.
    """
    size = dp[0].shape[0]
    share = -1.0 / jnp.sum(indices >= 0)
    if size < indices.shape[0]:  # the target slots first, then as many others
        keep = jnp.argsort(slots < 0, stable=True)[:size]
        indices, slots = indices[keep], slots[keep]
    valid = slots >= 0
    selected = view.select(params)
    v = [a[jnp.where(valid, slots, 0)] for a in dp]

    def grad_and_hvp(k, v):
        example = example_rows(problem, k)
        grad = jax.grad(example_loss, argnums=1)
        own = lambda s: view.select(
            grad(problem, view.with_selected(params, s), example, k, t)
        )
        return jax.jvp(own, (selected,), (v,))

    g, h = jax.vmap(grad_and_hvp)(indices, v)
    share = jnp.where(valid, share, 0.0)
    to = jnp.where(valid, slots, size)  # out of range: dropped

    def correct(window_term, outside_term):
        s = share.astype(window_term.dtype).reshape(
            (-1,) + (1,) * (window_term.ndim - 1)
        )
        injection = jnp.where(source, outside_term, jnp.zeros_like(outside_term))
        term = s * jnp.where(in_window, window_term, injection)
        return (
            jnp.zeros((size,) + term.shape[1:], term.dtype)
            .at[to]
            .add(term, mode="drop")
        )

    primal = [correct(a, jnp.zeros_like(a)) for a in g]
    tangent = [correct(a, b) for a, b in zip(h, g, strict=True)]
    return primal, tangent


def _acc_step(
    problem, optimizer, view, z, d, inv, t, indices, in_window, source, map_hvps
):
    """One step of the recursion for every target of the chunk: (z_{t+1}, D_{t+1}).

    `map_hvps`: the chunk's batch HVPs one target after another (`lax.map`)
    instead of vmapped: on CPU a vmapped HVP of a convolution costs about 3x one
    HVP per target, mapped 0.8-1x; as fast for an MLP or a transformer.

    `source` False: the step's injection (the difference of the two steps) is
    left out, its Jacobian kept: D then carries the other steps' contributions.

    The batch gradient is linearised in the selected parameters only (the rest
    held factual); the tangents of the unselected gradient leaves are never
    used, so XLA drops their computation.
    """
    ones = jnp.ones(indices.shape, param_dtype(z.params))
    dp = d[: view.num_selected]
    grads, hvp = jax.linearize(
        lambda s: batch_grad(
            problem, view.with_selected(z.params, s), indices, ones, t
        ),
        view.select(z.params),
    )
    slots = jnp.where(indices >= 0, inv[jnp.maximum(indices, 0)], -1)
    size = dp[0].shape[0]
    count = (
        jnp.zeros(size, jnp.int32)
        .at[jnp.where(slots >= 0, slots, size)]
        .add(1, mode="drop")
    )
    own_primal, own_tangent = _own_terms(
        problem, view, z.params, t, indices, slots, dp, in_window, source
    )
    g_primal = [
        g[None] + c for g, c in zip(view.select(grads), own_primal, strict=True)
    ]
    g_tangent = [
        a + b
        for a, b in zip(
            view.select(jax.lax.map(hvp, dp) if map_hvps else jax.vmap(hvp)(dp)),
            own_tangent,
            strict=True,
        )
    ]

    def optimizer_step(g, zf):
        state = view.merge(zf, z)
        updates, opt_state = optimizer_update(
            optimizer, g, state.opt_state, state.params
        )
        return view.floats(TrainState(updates, opt_state)), opt_state

    zf = view.floats(z)
    factual, opt_state = optimizer_step(grads, zf)
    zero_grads = jax.tree.map(jnp.zeros_like, grads)

    def per_target(gp, gt, dk):
        full = lambda g: view.with_selected(grads, g)
        zt = [
            x if x is not None else jnp.zeros_like(f)
            for x, f in zip(view.expand(dk), zf, strict=True)
        ]
        new_floats = lambda g, a: optimizer_step(g, a)[0]
        out, tangent = jax.jvp(
            new_floats, (full(gp), zf), (view.with_selected(zero_grads, gt), zt)
        )
        return view.perturbed_of(out), view.perturbed_of(tangent)

    out, tangent = jax.vmap(per_target)(g_primal, g_tangent, d)
    changed = in_window & (count > 0) & source
    change = [
        jnp.where(changed.reshape((-1,) + (1,) * f.ndim), o - f[None], 0) + dt
        for o, f, dt in zip(out, view.perturbed_of(factual), tangent, strict=True)
    ]
    z = TrainState(optax.apply_updates(z.params, view.params_of(factual)), opt_state)
    return z, view.advance(d, change)


@functools.partial(
    jax.jit,
    static_argnames=(
        "optimizer",
        "linear_readout",
        "with_progress",
        "sharding",
        "selected",
        "map_hvps",
    ),
)
def _acc_chunks(
    problem,
    optimizer,
    schedule,
    chunks,
    window,
    *,
    query,
    linear_readout,
    with_progress,
    sharding=None,
    selected=None,
    chunk_groups=None,
    step_groups=None,
    chunk_starts=None,
    map_hvps=False,
):
    """Values, param shifts and the first bad step of every chunk of targets.

    With `chunk_groups` `(num_chunks,)` and `step_groups` `(num_steps,)`, chunk
    c takes its injections only from the steps of group `chunk_groups[c]`.
    With `chunk_starts` `(num_chunks,)`, chunk c runs only the factual step
    before step `chunk_starts[c]`, where its perturbations are still zero.
    """
    num_chunks, size = chunks.shape
    num_steps = schedule.shape[0]
    z0 = init_state(problem, optimizer)
    view = _FloatView(z0, selected)

    n = problem.num_examples
    if chunk_groups is None:
        chunk_groups = jnp.zeros((num_chunks,), jnp.int32)
        step_groups = jnp.zeros((num_steps,), jnp.int32)
    if chunk_starts is None:
        chunk_starts = jnp.zeros((num_chunks,), jnp.int32)

    def one_chunk(_, xs):
        c, row, group, start = xs
        inv = common.target_slots(row, n)

        def body(carry, xs):
            z, d, bad = carry
            t, indices, in_window, step_group = xs
            z, d = jax.lax.cond(
                t >= start,
                lambda z, d: _acc_step(
                    problem,
                    optimizer,
                    view,
                    z,
                    d,
                    inv,
                    t,
                    indices,
                    in_window,
                    step_group == group,
                    map_hvps,
                ),
                lambda z, d: (factual_step(z, indices, t), d),
                z,
                d,
            )
            d = common.shard_targets(d, sharding)
            bad = mark_bad_step(bad, t, d)
            if with_progress:
                progress_lib.tick(c * num_steps + t + 1, num_chunks * num_steps)
            return (z, d, bad), None

        d0 = [
            jnp.zeros((size,) + x.shape, x.dtype)
            for x in view.perturbed_of(view.floats(z0))
        ]
        d0 = common.shard_targets(d0, sharding)
        steps = (jnp.arange(num_steps, dtype=jnp.int32), schedule, window, step_groups)
        (z, d, bad), _ = jax.lax.scan(body, (z0, d0, jnp.int32(-1)), steps)
        shift = d[: view.num_selected]
        at = lambda s: view.with_selected(z.params, s)
        if linear_readout:
            _, query_linear = jax.linearize(
                lambda s: query(at(s)), view.select(z.params)
            )
            values = jax.vmap(query_linear)(shift)
        else:
            moved = lambda s: [
                a + b for a, b in zip(view.select(z.params), s, strict=True)
            ]
            values = (
                jax.vmap(lambda s: query(at(moved(s))))(shift) - query(z.params)[None]
            )
        zeros = jax.tree.map(lambda a: jnp.zeros((size,) + a.shape, a.dtype), z.params)
        return None, (values, view.with_selected(zeros, shift), bad)

    factual_step = lambda z, indices, t: step(
        problem,
        optimizer,
        z,
        indices,
        jnp.ones(indices.shape, param_dtype(z.params)),
        t,
    )
    xs = (jnp.arange(num_chunks), chunks, chunk_groups, chunk_starts)
    _, out = jax.lax.scan(one_chunk, None, xs)
    return out


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
        # one target's HVP at a time on CPU (see _acc_step), vmapped elsewhere
        # and wherever the targets are sharded over devices
        map_hvps=sharding is None and jax.default_backend() == "cpu",
    )
    if memory_budget is not None:
        if chunk_size is not None or devices is not None:
            raise ValueError("pass `memory_budget` without `chunk_size` and `devices`.")
        size = common.budget_chunk_size(
            _acc_chunks, args, targets, memory_budget, **options
        )
    chunks, chunk_groups, chunk_starts, positions = _plan(
        targets, run.schedule, run.problem.num_examples, size, groups
    )
    options.update(chunk_starts=chunk_starts)
    if groups is not None:
        options.update(chunk_groups=chunk_groups, step_groups=jnp.asarray(groups))
    with progress_lib.reporting(progress, "acc_sgd_ie") as with_progress:
        values, shift, bad = _acc_chunks(
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
