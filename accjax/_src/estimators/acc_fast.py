"""ACC-SGD-IE's correction at SGD-IE's cost, for any optax optimizer: the
perturbation carried between an example's occurrences by a scalar contraction
(docs/algorithm.md).

With z = (params, the optimizer state's float leaves), F_t the step, a_t the
factual adjoint of the query over z (a_T = (grad f(params_T), 0), a_t =
J_t^T a_{t+1}, J_t = d F_t / d z at w = 1) and D_k(t) ACC's perturbation of k
before step t, ACC's recursion D <- Delta_k(t) + J_t^{-k} D telescopes to

    I_ACC(k) = sum_{t holding k} <a_{t+1}, Delta_k(t)>
                                 + <a_{t+1}, (J_t^{-k} - J_t) D_k(t)>,

Delta_k(t) = F_t(z_t, w^{-k}) - F_t(z_t, 1), the exact change of the step when k
leaves the batch. The first sum is computed exactly: for plain SGD it is SGD-IE
(the step is linear in the weights); for Adam it also holds the non-linearity of
the update in k's weight, which SGD-IE's derivative misses. In the second,
J^{-k} - J is k's share of the curvature, -(1/|S|) H_k pushed through the
step without k linearised in its gradient: with b_k(t) = (dF_t/dg)^T a_{t+1}
at the batch gradient without k (for SGD, -lr_t a_{t+1}) it reads
<v_k(t), D_k(t)>, v_k(t) = -(1/|S_t|) H_k b_k(t) (the change of the
optimizer's other derivatives between the two gradients is left out).
D_k(t) is zero before k's first occurrence; at a later one it is
approximated by the parameter moves u_k(s) = the parameter part of
Delta_k(s) of k's earlier occurrences, each multiplied by the scalar that the
steps in between apply to the adjoint's parameter part:

    c(s + 1, t) = prod_{tau = s+1}^{t-1} rho_tau,
    rho_tau = <a_tau, a_{tau+1}> / |a_{tau+1}|^2    (contraction="adjoint"; "none": 1)

and ACC's in-between corrections are dropped (second order). Everything is one
reverse sweep: the adjoint, per batch the example gradients, the steps without
each example, and the HVPs H_k b_k; per example one carried vector X_k (the
v's of its later occurrences contracted to the current step), so that the
correction at an occurrence is u^T X_k. With one occurrence per example (one
epoch) the correction vanishes. For plain SGD: with one epoch SGD-IE exactly, as
ACC is; exact for ACC when the steps between two occurrences scale every vector
alike (isotropic curvature) and k occurs at most twice.

Memory: `acc_fast_memory`.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.estimators.acc_fast_memory import Sketch, plan_memory
from accjax._src.problem import Influence, Run, example_grads, example_hvps
from accjax._src.train import batch_grad, init_state, param_dtype, step
from accjax._src.zero_sqrt import optimizer_update

CONTRACTIONS = ("adjoint", "none")


def _flat_rows(tree):
    """A pytree with a leading `(B,)` axis as `(B, |params|)`."""
    return jax.vmap(lambda leaves: ravel_pytree(leaves)[0])(tree)


def _vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(a, b, strict=True))


def _backward_step(problem, optimizer, view, sketch, carry, t, indices, z):
    """One step of the reverse sweep at the factual state `z` = z_t."""
    n = problem.num_examples
    a_next, log_next, sign_next, carried, log_k, sign_k, seen, values = carry
    a_params, a_opt = a_next
    dtype = param_dtype(z.params)
    valid = indices >= 0
    size = jnp.sum(valid).astype(dtype)
    ones = jnp.ones(indices.shape, dtype)
    opt_floats = view.floats(z.opt_state)

    def float_step(g, params, floats):
        state = view.merge(floats, z.opt_state)
        updates, new_state = optimizer_update(optimizer, g, state, params)
        return updates, view.floats(new_state)

    grads, grad_vjp = jax.vjp(
        lambda p: batch_grad(problem, p, indices, ones, t), z.params
    )
    (updates, new_floats), step_vjp = jax.vjp(float_step, grads, z.params, opt_floats)
    b, c_params, c_opt = step_vjp((a_params, a_opt))
    (h,) = grad_vjp(b)  # H_batch b: the Hessian is symmetric
    a_t = (jax.tree.map(lambda x, y, z: x + y + z, a_params, c_params, h), c_opt)

    flat_a = ravel_pytree(a_params)[0]
    flat_at = ravel_pytree(a_t[0])[0]
    tiny = jnp.finfo(dtype).tiny
    if sketch.contraction == "adjoint":
        rho = jnp.vdot(flat_at, flat_a) / jnp.maximum(jnp.vdot(flat_a, flat_a), tiny)
    else:
        rho = jnp.ones((), dtype)
    log_t = log_next + jnp.log(jnp.maximum(jnp.abs(rho), tiny))
    sign_t = sign_next * jnp.where(rho < 0, -1, 1).astype(dtype)

    g_k = example_grads(problem, z.params, indices, t)

    def without(g_one):
        """The step without k, as differences from the factual, and b_k, the
        step's gradient adjoint there."""
        g = jax.tree.map(lambda G, x: G - x / size, grads, g_one)
        (upd, flo), vjp_k = jax.vjp(lambda g: float_step(g, z.params, opt_floats), g)
        d_upd = jax.tree.map(jnp.subtract, upd, updates)
        d_flo = [x - y for x, y in zip(flo, new_floats, strict=True)]
        return d_upd, d_flo, vjp_k((a_params, a_opt))[0]

    d_updates, d_floats, b_k = jax.vmap(without)(g_k)
    injection = jax.vmap(
        lambda du, df: (
            _vdot(jax.tree.leaves(a_params), jax.tree.leaves(du)) + _vdot(a_opt, df)
        )
    )(d_updates, d_floats)
    u = sketch(_flat_rows(d_updates))
    hvps = example_hvps(problem, z.params, indices, t, b_k, per_example=True)
    v = sketch(-_flat_rows(hvps) / size)

    slot = jnp.where(valid, indices, n)
    safe = jnp.maximum(indices, 0)
    # X_k contracted from its last update (at M_k) to this step: exp(M(t+1) - M_k).
    scale = jnp.where(
        seen[safe] & valid,
        jnp.exp(log_next - log_k[safe]) * sign_next * sign_k[safe],
        0,
    ).astype(dtype)
    w = scale[:, None] * carried[safe]
    terms = injection + jnp.sum(u * w, axis=1)
    values = values.at[slot].add(jnp.where(valid, terms, 0), mode="drop")
    carried = carried.at[slot].set(v + rho * w, mode="drop")
    log_k = log_k.at[slot].set(log_t, mode="drop")
    sign_k = sign_k.at[slot].set(sign_t, mode="drop")
    seen = seen.at[slot].set(True, mode="drop")
    return (a_t, log_t, sign_t, carried, log_k, sign_k, seen, values)


@functools.partial(
    jax.jit,
    static_argnames=("optimizer", "sketch", "segment", "with_progress"),
)
def _acc_fast_all(
    problem, optimizer, schedule, *, query, sketch, segment, with_progress
):
    n = problem.num_examples
    num_steps = schedule.shape[0]
    dtype = param_dtype(problem.params)
    z0 = init_state(problem, optimizer)
    view = common.FloatLeaves(z0.opt_state)
    ones_like = lambda i: jnp.ones(i.shape, dtype)

    def forward(z, xs):
        t, indices = xs
        if with_progress:
            progress_lib.tick(t + 1, 2 * num_steps)
        return step(problem, optimizer, z, indices, ones_like(indices), t), z

    def replay(z, ts, rows):
        """The states before each of these steps."""
        body = lambda z, xs: (
            step(problem, optimizer, z, xs[1], ones_like(xs[1]), xs[0]),
            z,
        )
        return jax.lax.scan(body, z, (ts, rows))[1]

    def backward(carry, xs):
        t, indices, z = xs
        carry = _backward_step(problem, optimizer, view, sketch, carry, t, indices, z)
        if with_progress:
            progress_lib.tick(2 * num_steps - t, 2 * num_steps)
        return carry, None

    ts = jnp.arange(num_steps)
    whole = num_steps // segment * segment
    # forward: the state at the start of every segment (every state: segment 1)
    starts = jax.lax.scan(
        lambda z, xs: (
            jax.lax.scan(forward, z, xs)[0],
            z,
        ),
        z0,
        jax.tree.map(
            lambda a: a[:whole].reshape((-1, segment) + a.shape[1:]), (ts, schedule)
        ),
    )
    z_whole, seg_starts = starts
    z_final = z_whole
    if whole < num_steps:
        z_final = jax.lax.scan(forward, z_whole, (ts[whole:], schedule[whole:]))[0]
    a_final = (
        jax.grad(query)(z_final.params),
        [jnp.zeros_like(x) for x in view.floats(z_final.opt_state)],
    )
    dim = sketch.dim
    carry = (
        a_final,
        jnp.zeros((), dtype),
        jnp.ones((), dtype),
        jnp.zeros((n, dim), dtype),
        jnp.zeros((n,), dtype),
        jnp.ones((n,), dtype),
        jnp.zeros((n,), bool),
        jnp.zeros((n,), dtype),
    )

    def sweep(carry, z_start, steps, rows):
        if segment > 1:
            states = replay(z_start, steps, rows)
        else:  # every state was stored
            states = jax.tree.map(lambda a: a[None], z_start)
        return jax.lax.scan(backward, carry, (steps, rows, states), reverse=True)[0]

    if whole < num_steps:
        carry = sweep(carry, z_whole, ts[whole:], schedule[whole:])
    segments = jax.tree.map(
        lambda a: a[:whole].reshape((-1, segment) + a.shape[1:]), (ts, schedule)
    )
    carry = jax.lax.scan(
        lambda c, xs: (sweep(c, xs[0], *xs[1]), None),
        carry,
        (seg_starts, segments),
        reverse=True,
    )[0]
    return carry[-1]


def warn_if_optimizer_carries_gradients(optimizer, params) -> None:
    """A warning where the optimizer's state holds float leaves (momentum, Adam's
    moments): they carry each gradient into later steps, which the fast ACC's
    carried parameter move leaves out (docs/results.md measures what it keeps)."""
    if any(common.FloatLeaves(jax.eval_shape(optimizer.init, params)).is_float):
        warnings.warn(
            "acc_sgd_ie_fast: the run's optimizer carries gradients in its state "
            "(momentum, Adam's moments). The fast ACC follows each example's "
            "parameter move, not what that state carries into later steps: where "
            "full ACC gained >= 10 % RMSE over SGD-IE it kept a median 36 % of the "
            "gain with momentum 0.9 and 55 % with Adam (docs/results.md, 'ACC at "
            "SGD-IE's cost, through momentum and Adam'). Use acc_sgd_ie on the "
            "targets that matter.",
            stacklevel=3,
        )


def acc_sgd_ie_fast(
    run: Run,
    query,
    *,
    learning_rate=None,
    targets=None,
    contraction="adjoint",
    projection_dim=None,
    seed: int = 0,
    storage="all",
    memory_budget=None,
    progress=False,
) -> Influence:
    """ACC-SGD-IE approximated in one reverse sweep, all examples, any optimizer.

    The exact change of each step when k leaves its batch, read by the factual
    adjoint (for plain SGD: SGD-IE; for Adam also the non-linearity of the
    update in k's weight), plus ACC's curvature correction at each later
    occurrence of k, k's perturbation there approximated by its earlier
    parameter moves contracted by the scalar that the steps in between apply
    to the query's adjoint (the module docstring and docs/algorithm.md give
    the derivation). It needs no vector per target over the whole run, only
    one per example (or a sketch of it) for the reverse sweep.

    Args:
      run: from `accjax.train`, any optax optimizer (SGD, momentum, Adam,
        AdamW, chains).
      query: `f(params) -> scalar`.
      learning_rate: optional; the steps come from the run's optimizer. If
        given, the run is checked to be plain SGD with this rate (`ValueError`
        otherwise).
      targets: int array `(num_targets,)`; None means all. Every example is
        computed either way.
      contraction: "adjoint" (the scalar above) or "none" (the perturbation
        carried unchanged between occurrences).
      projection_dim: None (the carried vectors in full, n x |params| floats)
        or d: each in a count sketch of d buckets (n x d floats; the
        correction's error grows as 1 / sqrt(d)).
      seed: the sketch's hashing.
      storage: "all" (every state of the forward pass kept, T x state) or an
        int c (the state every c steps, each segment replayed when the sweep
        reaches it: (T/c + c) x state, one more training run of compute).
      memory_budget: bytes for the carried vectors and the stored states;
        chooses `projection_dim` (the carried vectors in at most half of it)
        and `storage` unless given. Arguments (the data) and one step's work
        come on top.
      progress: True (or a label) for a progress bar on stderr, or a callable
        `(done, total)`.

    Returns:
      Influence with `values` `(num_targets,)` and no `param_shift`. For plain
      SGD equal to `sgd_ie` when every example occurs once (one epoch), as
      ACC-SGD-IE is.

    Raises:
      ValueError: for a vector query, a malformed argument, a run that holds an
        example twice in one step, or a `learning_rate` that is not the run's.

    Warns:
      UserWarning: where the optimizer's state carries gradients (momentum,
        Adam's moments): the approximation keeps less of ACC's gain there.
    """
    query = common.check_run(run, query)
    targets = common.check_targets(targets, run.problem.num_examples)
    if contraction not in CONTRACTIONS:
        raise ValueError(
            f"`contraction` must be one of {CONTRACTIONS}; got {contraction!r}."
        )
    if jax.eval_shape(query, run.problem.params).shape:
        raise ValueError(
            "acc_sgd_ie_fast takes a scalar query; call it once per component of "
            "a vector query."
        )
    if learning_rate is not None:
        common.check_learning_rate(learning_rate)
        common.check_plain_sgd(
            run,
            learning_rate,
            "acc_sgd_ie_fast with `learning_rate`",
            "Leave `learning_rate` out: acc_sgd_ie_fast follows the run's own "
            "optimizer.",
        )
    warn_if_optimizer_carries_gradients(run.optimizer, run.problem.params)
    projection_dim, segment = plan_memory(run, projection_dim, storage, memory_budget)
    if not isinstance(run.schedule, jax.core.Tracer):
        ordered = np.sort(np.asarray(run.schedule), axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
        if repeated.any():
            t, j = np.argwhere(repeated)[0]
            raise ValueError(
                f"acc_sgd_ie_fast needs each example at most once per step; step {t} "
                f"holds example {ordered[t, j + 1]} twice. Use acc_sgd_ie."
            )
    num_params = common.num_params(run.problem.params)
    sketch = Sketch(num_params, projection_dim, seed, contraction)
    with progress_lib.reporting(progress, "acc_sgd_ie_fast") as with_progress:
        values = _acc_fast_all(
            run.problem,
            run.optimizer,
            run.schedule,
            query=query,
            sketch=sketch,
            segment=segment,
            with_progress=with_progress,
        )
        jax.block_until_ready(values)
    common.check_finite(
        values,
        "acc_sgd_ie_fast produced non-finite influence values; check that "
        "training stayed finite.",
    )
    return Influence(targets, values[targets])
