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

import jax
import jax.numpy as jnp
import numpy as np
import optax

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.problem import Influence, Run, TrainState
from accjax._src.train import (
    batch_grad,
    init_state,
    mark_bad_step,
    param_dtype,
    raise_if_bad_step,
)


class _FloatView:
    """Splits a TrainState into its float leaves (perturbed) and the rest.

    Integer leaves such as optax step counts carry no perturbation: they evolve
    the same in the factual and the counterfactual runs.
    """

    def __init__(self, z: TrainState):
        leaves, self.treedef = jax.tree.flatten(z)
        self.is_float = [jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves]
        self.params_treedef = jax.tree.structure(z.params)
        self.num_params = self.params_treedef.num_leaves

    def floats(self, z) -> list:
        leaves = jax.tree.leaves(z)
        return [x for x, f in zip(leaves, self.is_float, strict=True) if f]

    def merge(self, floats: list, z):
        it = iter(floats)
        leaves = jax.tree.leaves(z)
        merged = [
            next(it) if f else x for x, f in zip(leaves, self.is_float, strict=True)
        ]
        return jax.tree.unflatten(self.treedef, merged)

    def params_tree(self, d: list):
        """The parameter part of a float-leaf list, as a params pytree."""
        return jax.tree.unflatten(self.params_treedef, d[: self.num_params])

    def advance(self, d: list, change: list) -> list:
        """D_{t+1} from the change of (updates, opt_state): params add, rest replace."""
        return [
            x + c if i < self.num_params else c
            for i, (x, c) in enumerate(zip(d, change, strict=True))
        ]


def _own_terms(problem, params, row, dp, scale, in_window):
    """Per-target corrections of the batch gradient and its tangent.

    The batch gradient G(params, w) is linear in the weights, so removing k
    subtracts count_k / |S| times k's own gradient g_k, and the Jacobian of the
    step without k differs from the shared one by count_k / |S| times k's own
    Hessian H_k. Outside the window the primal stays factual and the tangent
    gets -g_k count_k / |S|, the first-order (SGD-IE) injection.

    Computed densely for every target of the chunk (count_k = 0 outside the
    batch): one single-example HVP per target, about 1/batch_size of the shared
    batch HVP, and no gathers or scatters of the state.

    Args:
      scale: `(chunk,)`, count_k / |S| (0 for targets outside the batch).

    Returns (primal, tangent) corrections, pytrees like params with a leading
    chunk axis.
    """

    def grad_and_hvp(k, v):
        example = jax.tree.map(lambda a: a[jnp.maximum(k, 0)], problem.data)
        grad = jax.grad(problem.loss)
        return jax.jvp(lambda p: grad(p, example), (params,), (v,))

    g, h = jax.vmap(grad_and_hvp)(row, dp)

    def correct(window_term, outside_term):
        s = -scale.astype(window_term.dtype).reshape(
            (-1,) + (1,) * (window_term.ndim - 1)
        )
        return s * jnp.where(in_window, window_term, outside_term)

    primal = jax.tree.map(lambda a: correct(a, jnp.zeros_like(a)), g)
    tangent = jax.tree.map(correct, h, g)
    return primal, tangent


def _acc_step(problem, optimizer, view, z, d, row, indices, in_window):
    """One step of the recursion for every target of the chunk: (z_{t+1}, D_{t+1})."""
    ones = jnp.ones(indices.shape, param_dtype(z.params))
    dp = view.params_tree(d)
    grads, hvp = jax.linearize(
        lambda p: batch_grad(problem, p, indices, ones), z.params
    )
    count = jnp.sum((indices[None, :] == row[:, None]) & (row[:, None] >= 0), axis=1)
    scale = count / jnp.sum(indices >= 0)
    own_primal, own_tangent = _own_terms(problem, z.params, row, dp, scale, in_window)
    g_primal = jax.tree.map(lambda g, c: g[None] + c, grads, own_primal)
    g_tangent = jax.tree.map(jnp.add, jax.vmap(hvp)(dp), own_tangent)

    def optimizer_step(g, zf):
        state = view.merge(zf, z)
        updates, opt_state = optimizer.update(g, state.opt_state, state.params)
        return view.floats(TrainState(updates, opt_state)), opt_state

    zf = view.floats(z)
    factual, opt_state = optimizer_step(grads, zf)
    new_floats = lambda g, a: optimizer_step(g, a)[0]
    out, tangent = jax.vmap(lambda g, gt, dk: jax.jvp(new_floats, (g, zf), (gt, dk)))(
        g_primal, g_tangent, d
    )
    changed = in_window & (count > 0)
    change = [
        jnp.where(changed.reshape((-1,) + (1,) * f.ndim), o - f[None], 0) + dt
        for o, f, dt in zip(out, factual, tangent, strict=True)
    ]
    updates = view.params_tree(factual)
    z = TrainState(optax.apply_updates(z.params, updates), opt_state)
    return z, view.advance(d, change)


@functools.partial(
    jax.jit,
    static_argnames=("optimizer", "linear_readout", "with_progress", "sharding"),
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
):
    num_chunks, size = chunks.shape
    num_steps = schedule.shape[0]
    z0 = init_state(problem, optimizer)
    view = _FloatView(z0)

    def one_chunk(_, xs):
        c, row = xs

        def body(carry, xs):
            z, d, bad = carry
            t, indices, in_window = xs
            z, d = _acc_step(problem, optimizer, view, z, d, row, indices, in_window)
            d = common.shard_targets(d, sharding)
            bad = mark_bad_step(bad, t, d)
            if with_progress:
                progress_lib.tick(c * num_steps + t + 1, num_chunks * num_steps)
            return (z, d, bad), None

        d0 = [jnp.zeros((size,) + x.shape, x.dtype) for x in view.floats(z0)]
        d0 = common.shard_targets(d0, sharding)
        steps = (jnp.arange(num_steps, dtype=jnp.int32), schedule, window)
        (z, d, bad), _ = jax.lax.scan(body, (z0, d0, jnp.int32(-1)), steps)
        shift = view.params_tree(d)
        if linear_readout:
            _, query_linear = jax.linearize(query, z.params)
            values = jax.vmap(query_linear)(shift)
        else:
            values = (
                jax.vmap(lambda s: query(jax.tree.map(jnp.add, z.params, s)))(shift)
                - query(z.params)[None]
            )
        return None, (values, shift, bad)

    _, out = jax.lax.scan(one_chunk, None, (jnp.arange(num_chunks), chunks))
    return out


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
    devices=None,
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
      devices: shard each chunk's targets (the perturbation state and the
        per-target work) over these devices, e.g. `jax.devices()`; the factual
        trajectory is replicated. The chunk size is rounded up to a multiple
        of the device count. None: no sharding. Results do not depend on it.
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
    with progress_lib.reporting(progress, "acc_sgd_ie") as with_progress:
        values, shift, bad = _acc_chunks(
            run.problem,
            run.optimizer,
            run.schedule,
            common.chunk(targets, size),
            mask,
            query=query,
            linear_readout=readout == "linear",
            with_progress=with_progress,
            sharding=sharding,
        )
        jax.block_until_ready(values)
    raise_if_bad_step(bad, "acc_sgd_ie's perturbation", derivative=True)
    num = targets.shape[0]
    return Influence(targets, common.unchunk(values, num), common.unchunk(shift, num))
