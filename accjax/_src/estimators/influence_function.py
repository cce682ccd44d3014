"""Influence functions (Koh and Liang 2017) at the final parameters."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from accjax._src.estimators import common
from accjax._src.problem import Influence, Run, example_grads, example_losses


def _objective(problem, params, t):
    """The full training objective: mean loss over all n examples plus L2
    (a problem with a key: each example's loss with its key of step t)."""
    losses = example_losses(problem, params, jnp.arange(problem.num_examples), t)
    squares = sum(jnp.vdot(p, p) for p in jax.tree.leaves(params))
    return jnp.mean(losses) + 0.5 * problem.l2 * squares


def _lissa(hvp, b, scale, depth):
    """H^{-1} b by the LiSSA recursion v <- b + (I - H / scale) v, then v / scale.

    Converges when every eigenvalue of H lies in (0, 2 scale).
    """
    body = lambda _, v: b + v - hvp(v) / scale
    return jax.lax.fori_loop(0, depth, body, b) / scale


@functools.partial(jax.jit, static_argnames=("method", "maxiter"))
def _influence_all(problem, params, t, query, damping, scale, *, method, maxiter):
    flat, unravel = ravel_pytree(params)
    n = problem.num_examples
    objective = lambda f: _objective(problem, unravel(f), t)
    q = jax.eval_shape(query, params).shape
    query_flat = lambda f: query(unravel(f))
    u = jax.jacrev(query_flat)(flat) if q else jax.grad(query_flat)(flat)
    u = u.reshape((-1, flat.size))  # (Q or 1, P)
    if method == "explicit":
        h = jax.hessian(objective)(flat) + damping * jnp.eye(
            flat.size, dtype=flat.dtype
        )
        v = jnp.linalg.solve(h, u.T).T
    else:  # conjugate gradients with Hessian-vector products
        grad = jax.grad(objective)
        hvp = lambda x: jax.jvp(grad, (flat,), (x,))[1] + damping * x
        v = jax.vmap(lambda b: jax.scipy.sparse.linalg.cg(hvp, b, maxiter=maxiter)[0])(
            u
        )
    grads = example_grads(problem, params, jnp.arange(n), t)
    grads = jax.vmap(lambda g: ravel_pytree(g)[0])(grads)  # (n, P)
    values = grads @ v.T / n  # (n, Q or 1)
    return values if q else values[:, 0]


def influence_function(
    run: Run,
    query,
    *,
    targets=None,
    damping: float = 0.0,
    method: str = "explicit",
    maxiter: int = 100,
    scale: float = 10.0,
) -> Influence:
    """Classic influence functions at the final parameters.

    influence(k) ~ (1/n) grad f(params)^T (H + damping I)^{-1} grad loss_k(params),
    with H the Hessian of the whole training objective (mean loss + L2) at the
    final params: the first-order change of the objective's minimiser when k's
    weight drops from 1 to 0. It ignores the trajectory (schedule, steps,
    learning rates), so it describes a run trained to convergence. A problem
    with a key is evaluated with the keys of step T = `run.num_steps` (those a
    next step would draw).

    Args:
      run: from `accjax.train`; only `run.params` and the problem are used.
      query: `f(params) -> scalar` or `(num_queries,)` vector.
      targets: int array `(num_targets,)`; None means all.
      damping: added to the Hessian's diagonal (needed where H is singular or
        indefinite, e.g. for non-convex models).
      method: "explicit" (dense Hessian, small models), "cg" (conjugate
        gradients with Hessian-vector products; H + damping I must be positive
        definite) or "lissa" (the LiSSA recursion, full-batch HVPs; the
        eigenvalues of H + damping I must lie in (0, 2 scale)).
      maxiter: CG iterations, or LiSSA's recursion depth.
      scale: LiSSA's scale (above the largest eigenvalue of H + damping I).

    Returns:
      Influence with `values` `(num_targets,)` (or `(num_targets, num_queries)`).
    """
    query = common.check_run(run, query)
    targets = common.check_targets(targets, run.problem.num_examples)
    if method not in ("explicit", "cg", "lissa"):
        raise ValueError(
            f"`method` must be 'explicit', 'cg' or 'lissa'; got {method!r}."
        )
    if not damping >= 0:
        raise ValueError(f"`damping` must be >= 0; got {damping!r}.")
    values = _influence_all(
        run.problem,
        run.params,
        run.num_steps,
        query,
        damping,
        scale,
        method=method,
        maxiter=maxiter,
    )
    return Influence(targets, values[targets])
