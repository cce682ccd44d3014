"""ACC-SGD-IE's correction at SGD-IE's cost: the perturbation carried between an
example's occurrences by a scalar contraction (issue 13; docs/algorithm.md).

For plain SGD, with a_t the adjoint of the query (a_T = grad f(params_T),
a_t = J_t^T a_{t+1}, J_t the step's Jacobian in the parameters) and D_k(t) the
counterfactual perturbation of ACC-SGD-IE just before step t, exactly

    I_ACC(k) = I_SGD(k) + sum_{t holding k} (eta_t/|S_t|) (H_k a_{t+1})^T D_k(t),

with H_k = H_k(params_t), where I_SGD(k) is the same sum of
(eta_t/|S_t|) a_{t+1}^T grad loss_k(params_t). D_k(t) is zero before k's first
occurrence; at a later occurrence t_e it is the propagation, by the steps in
between, of what k injected at its earlier ones, u_k(s) = (eta_s/|S_s|) grad
loss_k(params_s). The approximation replaces that propagation by a scalar: the
steps from s + 1 to t - 1 multiply any vector by

    c(s + 1, t) = prod_{tau = s+1}^{t-1} rho_tau,
    rho_tau = <a_tau, a_{tau+1}> / |a_{tau+1}|^2,

the contraction each step applies to the adjoint (contraction="adjoint"), or by 1
(contraction="none"), and drops the in-between ACC corrections (second order):

    D_k(t_e) ~ sum_{e' < e} c(t_e' + 1, t_e) u_k(t_e').

Everything is computed in one reverse sweep over the steps: the adjoint, the
per-example gradients u and Hessian-vector products v = (eta/|S|) H_k a_{t+1} of
each batch, and per example one carried vector X_k (the v's of its later
occurrences, contracted to the current step), so that the correction at an
occurrence is u^T X_k. Memory: the T states of the forward pass and n x |params|
for the X_k. With one occurrence per example (one epoch) it is SGD-IE exactly, as
ACC-SGD-IE is; it is exact for ACC when the steps between two occurrences scale
every vector alike (isotropic curvature) and k occurs at most twice.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.problem import Influence, Run, TrainState, example_grads, example_hvps
from accjax._src.train import init_state, param_dtype, step

CONTRACTIONS = ("adjoint", "none")


def _flat_rows(tree):
    """A pytree with a leading `(B,)` axis as `(B, |params|)`."""
    return jax.vmap(lambda leaves: ravel_pytree(leaves)[0])(tree)


@functools.partial(
    jax.jit,
    static_argnames=("optimizer", "learning_rate", "contraction", "with_progress"),
)
def _acc_fast_all(
    problem, optimizer, schedule, *, query, learning_rate, contraction, with_progress
):
    n = problem.num_examples
    num_steps = schedule.shape[0]
    dtype = param_dtype(problem.params)
    flat0, unravel = ravel_pytree(problem.params)

    def forward(z, xs):
        t, indices = xs
        ones = jnp.ones(indices.shape, dtype)
        if with_progress:
            progress_lib.tick(t + 1, 2 * num_steps)
        return step(problem, optimizer, z, indices, ones, t), z

    z_final, states = jax.lax.scan(
        forward, init_state(problem, optimizer), (jnp.arange(num_steps), schedule)
    )
    a_final = ravel_pytree(jax.grad(query)(z_final.params))[0]

    def backward(carry, xs):
        a_next, log_next, sign_next, carried, log_k, sign_k, seen, values = carry
        t, indices, z = xs
        valid = indices >= 0
        ones = jnp.ones(indices.shape, dtype)

        def params_step(flat):
            state = TrainState(unravel(flat), z.opt_state)
            return ravel_pytree(
                step(problem, optimizer, state, indices, ones, t).params
            )[0]

        flat = ravel_pytree(z.params)[0]
        a_t = jax.vjp(params_step, flat)[1](a_next)[0]
        tiny = jnp.finfo(dtype).tiny
        if contraction == "adjoint":
            rho = jnp.vdot(a_t, a_next) / jnp.maximum(jnp.vdot(a_next, a_next), tiny)
        else:
            rho = jnp.ones((), dtype)
        log_t = log_next + jnp.log(jnp.maximum(jnp.abs(rho), tiny))
        sign_t = sign_next * jnp.where(rho < 0, -1, 1).astype(dtype)

        lr = common.learning_rate_at(learning_rate, t)
        eta = (lr / jnp.sum(valid)).astype(dtype)
        u = eta * _flat_rows(example_grads(problem, z.params, indices, t))
        v = eta * _flat_rows(
            example_hvps(problem, z.params, indices, t, unravel(a_next))
        )
        slot = jnp.where(valid, indices, n)
        safe = jnp.maximum(indices, 0)
        # X_k contracted from its last update (at M_k) to this step: exp(M(t+1) - M_k).
        scale = jnp.where(
            seen[safe] & valid,
            jnp.exp(log_next - log_k[safe]) * sign_next * sign_k[safe],
            0,
        ).astype(dtype)
        w = scale[:, None] * carried[safe]
        terms = u @ a_next + jnp.sum(u * w, axis=1)
        values = values.at[slot].add(jnp.where(valid, terms, 0), mode="drop")
        carried = carried.at[slot].set(v + rho * w, mode="drop")
        log_k = log_k.at[slot].set(log_t, mode="drop")
        sign_k = sign_k.at[slot].set(sign_t, mode="drop")
        seen = seen.at[slot].set(True, mode="drop")
        if with_progress:
            progress_lib.tick(2 * num_steps - t, 2 * num_steps)
        carry = (a_t, log_t, sign_t, carried, log_k, sign_k, seen, values)
        return carry, None

    carry = (
        a_final,
        jnp.zeros((), dtype),
        jnp.ones((), dtype),
        jnp.zeros((n, flat0.shape[0]), dtype),
        jnp.zeros((n,), dtype),
        jnp.ones((n,), dtype),
        jnp.zeros((n,), bool),
        jnp.zeros((n,), dtype),
    )
    xs = (jnp.arange(num_steps), schedule, states)
    carry, _ = jax.lax.scan(backward, carry, xs, reverse=True)
    return carry[-1]


def acc_sgd_ie_fast(
    run: Run,
    query,
    *,
    learning_rate,
    targets=None,
    contraction="adjoint",
    progress=False,
) -> Influence:
    """ACC-SGD-IE approximated in one reverse sweep (2.5-4x SGD-IE), all examples.

    SGD-IE plus ACC's correction at each step that holds k, (eta/|S|) (H_k
    a_{t+1})^T D_k(t), with k's perturbation D_k(t) at a later occurrence
    approximated by what k injected at its earlier ones, contracted by the
    scalar that the steps in between apply to the query's adjoint (the module
    docstring and docs/algorithm.md give the derivation). It needs no vector
    per target over the whole run, only one per example for the reverse sweep.

    Args:
      run: from `accjax.train` with plain SGD (`optax.sgd`, no momentum); the
        first steps are checked.
      query: `f(params) -> scalar`.
      learning_rate: the step size the run used, a float or an optax-style
        schedule `lr(step_index)`.
      targets: int array `(num_targets,)`; None means all. Every example is
        computed either way.
      contraction: "adjoint" (the scalar above) or "none" (the perturbation
        carried unchanged between occurrences).
      progress: True (or a label) for a progress bar on stderr, or a callable
        `(done, total)`.

    Returns:
      Influence with `values` `(num_targets,)` and no `param_shift`. Equal to
      `sgd_ie` when every example occurs once (one epoch), as ACC-SGD-IE is.

    Memory: the states of all T steps and n x |params| floats (one carried
    vector per example), e.g. 3.2 GB for 59,000 MNIST images and Hara's CNN in
    float32.
    """
    query = common.check_run(run, query)
    targets = common.check_targets(targets, run.problem.num_examples)
    common.check_learning_rate(learning_rate)
    if contraction not in CONTRACTIONS:
        raise ValueError(
            f"`contraction` must be one of {CONTRACTIONS}; got {contraction!r}."
        )
    if jax.eval_shape(query, run.problem.params).shape:
        raise ValueError(
            "acc_sgd_ie_fast takes a scalar query; call it once per component of "
            "a vector query."
        )
    common.check_plain_sgd(run, learning_rate, "acc_sgd_ie_fast")
    if not isinstance(run.schedule, jax.core.Tracer):
        ordered = np.sort(np.asarray(run.schedule), axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
        if repeated.any():
            t, j = np.argwhere(repeated)[0]
            raise ValueError(
                f"acc_sgd_ie_fast needs each example at most once per step; step {t} "
                f"holds example {ordered[t, j + 1]} twice. Use acc_sgd_ie."
            )
    with progress_lib.reporting(progress, "acc_sgd_ie_fast") as with_progress:
        values = _acc_fast_all(
            run.problem,
            run.optimizer,
            run.schedule,
            query=query,
            learning_rate=learning_rate,
            contraction=contraction,
            with_progress=with_progress,
        )
        jax.block_until_ready(values)
    common.check_finite(
        values,
        "acc_sgd_ie_fast produced non-finite influence values; check that "
        "training stayed finite.",
    )
    return Influence(targets, values[targets])
