"""ACC-SGD-IE's recursion: one chunk of targets' perturbations along the run.

For the state z = (params, opt_state) and the perturbation D_k = z^{-k} - z,

    D_k <- [step(z_t, S_t, w^{-k}) - step(z_t, S_t, 1)] + J_z step(z_t, S_t, w^{-k}) D_k

Targets outside S_t have w^{-k} = 1 on the batch, so their update is the
tangent of the shared factual step: one `jax.linearize` of the batch gradient
per step, its linear map (the batch HVP) applied to every target of the chunk
(vmapped, or one target after another on CPU: `_acc_step`).
The targets inside S_t differ from it by their own gradient and single-example
HVP (the batch gradient is linear in the weights), then every target goes
through the optax update and its tangent.

Differences of two steps are formed from the optax *updates* (and optimizer
states), never from the new parameters, so they do not cancel against the
parameters' magnitude in float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.problem import TrainState, example_loss, example_rows
from accjax._src.train import (
    batch_grad,
    init_state,
    mark_bad_step,
    param_dtype,
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
def acc_chunks(
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
