"""Plain, slow reference computations for the tests: Python loops, dense Hessians.

Independent of accjax's code paths: per target, per step, no vmap, no scan;
the batch objective is written out as a Python sum and plain SGD is applied
by hand with the learning rate of each step.
"""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


def _fingerprint(x):
    """Hashable stand-in for an argument: functions by identity (the key keeps
    them alive), arrays and numbers (in any pytree) by content."""
    if callable(x):
        return x
    leaves, treedef = jax.tree.flatten(x)
    arrays = [np.asarray(a) for a in leaves]
    return str(treedef), tuple((a.shape, a.dtype.str, a.tobytes()) for a in arrays)


def memoized(fn):
    """Caches `fn` on its arguments' contents. The references stay plain loops;
    a test asking again for the same trajectory or batch Hessian (another
    target, another epoch) gets the one already computed."""
    signature = inspect.signature(fn)
    cache = {}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = tuple(_fingerprint(a) for a in bound.arguments.values())
        if key not in cache:
            cache[key] = fn(*args, **kwargs)
        return cache[key]

    return wrapper


def batch_objective(loss, flat, unravel, data, batch, drop, l2):
    """(1/|S|) sum_{i in S, i not dropped} loss_i + (l2/2)||theta||^2, written out
    as a Python sum over the batch slots; padding (-1) and dropped examples add 0.

    `drop` is one index (-1 for none) or a collection of indices.
    """
    batch = jnp.asarray(batch)
    drops = jnp.atleast_1d(jnp.asarray(drop))
    params = unravel(flat)
    total = 0.0
    for slot in range(batch.shape[0]):
        i = batch[slot]
        example = jax.tree.map(lambda a, i=i: a[jnp.maximum(i, 0)], data)
        keep = (i >= 0) & ~jnp.any(drops == i)
        total = total + jnp.where(keep, loss(params, example), 0.0)
    return total / jnp.sum(batch >= 0) + 0.5 * l2 * jnp.dot(flat, flat)


# One compilation per (loss, parameter layout, shapes); batches, dropped indices
# and parameters are traced.
_batch_grad = jax.jit(jax.grad(batch_objective, argnums=1), static_argnums=(0, 2))
_batch_hessian = jax.jit(jax.hessian(batch_objective, argnums=1), static_argnums=(0, 2))


@memoized
def trajectory(loss, params, data, schedule, lrs, l2, drop=-1, from_step=0):
    """Flat parameters before every step and after the last: `(T + 1, P)`.

    `drop` (one index or several) is left out of the batches from step
    `from_step` on.
    """
    flat, unravel = ravel_pytree(params)
    out = [flat]
    for t, batch in enumerate(np.asarray(schedule)):
        g = _batch_grad(
            loss, flat, unravel, data, batch, drop if t >= from_step else -1, l2
        )
        flat = flat - lrs[t] * g
        out.append(flat)
    return jnp.stack(out), unravel


def loo(loss, params, data, schedule, lrs, l2, query, target):
    thetas, unravel = trajectory(loss, params, data, schedule, lrs, l2)
    thetas_k, _ = trajectory(loss, params, data, schedule, lrs, l2, drop=target)
    shift = thetas_k[-1] - thetas[-1]
    return query(unravel(thetas_k[-1])) - query(unravel(thetas[-1])), shift


@memoized
def _hessian(loss, flat, unravel, data, batch, drop, l2):
    return _batch_hessian(loss, flat, unravel, data, batch, drop, l2)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _example_grad(loss, flat, unravel, data, k):
    example = jax.tree.map(lambda a: a[k], data)
    return jax.grad(lambda f: loss(unravel(f), example))(flat)


def hara_sgd_ie(loss, params, data, schedule, lrs, l2, query, epochs=None):
    """Hara et al.'s adjoint recursion for every example (clean L2 convention).

    With `epochs` (an epoch id per step): `(n, num_epochs)`, each step's
    contribution added to its epoch's column.
    """
    thetas, unravel = trajectory(loss, params, data, schedule, lrs, l2)
    n = jax.tree.leaves(data)[0].shape[0]
    u = jax.grad(lambda f: query(unravel(f)))(thetas[-1])
    cols = np.zeros(len(schedule), int) if epochs is None else np.asarray(epochs)
    infl = np.zeros((n, cols.max() + 1))
    for t in reversed(range(len(schedule))):
        batch = np.asarray(schedule[t])
        size = int((batch >= 0).sum())
        for k in batch[batch >= 0]:
            g = _example_grad(loss, thetas[t], unravel, data, int(k))
            infl[k, cols[t]] += lrs[t] / size * float(jnp.dot(u, g))
        u = u - lrs[t] * _hessian(loss, thetas[t], unravel, data, batch, -1, l2) @ u
    return infl[:, 0] if epochs is None else infl


def acc_forward(
    loss,
    params,
    data,
    schedule,
    lrs,
    l2,
    query,
    target,
    window=None,
    subset=None,
    sources=None,
):
    """The paper's forward recursion for one target, dense Hessians.

    D <- (I - eta H_t^{-k}) D + [k in S_t] (eta / |S_t|) grad loss_k, where
    H_t^{-k} drops k's curvature at steps in `window` (all steps if None).
    With `subset` (a 0/1 vector over the flat parameters), D lives on those
    coordinates only: P (I - eta H) P and P grad loss_k, P = diag(subset).
    With `sources` (a bool per step), only those steps add k's gradient.
    """
    thetas, unravel = trajectory(loss, params, data, schedule, lrs, l2)
    d = jnp.zeros_like(thetas[0])
    p = jnp.ones_like(d) if subset is None else jnp.asarray(subset, d.dtype)
    for t, batch in enumerate(np.asarray(schedule)):
        present = target in batch
        use_cf = present and (window is None or window[t])
        drop = target if use_cf else -1
        h = _hessian(loss, thetas[t], unravel, data, batch, drop, l2)
        d = d - lrs[t] * p * (h @ d)
        if present and (sources is None or sources[t]):
            size = int((batch >= 0).sum())
            d = d + lrs[t] / size * p * _example_grad(
                loss, thetas[t], unravel, data, target
            )
    value = jnp.dot(jax.grad(lambda f: query(unravel(f)))(thetas[-1]), d)
    return value, d


def dvemb_forward(
    loss, params, data, schedule, lrs, l2, query, target, acc, projection=None,
    sources=None,
):  # fmt: skip
    """DVEmb (acc=False) or ACC-DVEmb (acc=True) for one target, dense d x d steps.

    D <- [(1 - eta l2) I - (eta/|S|) sum_{i in S (i != k if acc)} g_i g_i^T] D
         + [k in S] (eta/|S|) g_k,  g = P grad loss_i at params_t.
    """
    thetas, unravel = trajectory(loss, params, data, schedule, lrs, l2)
    p = np.eye(thetas.shape[1]) if projection is None else np.asarray(projection)
    d = np.zeros(p.shape[0])
    for t, batch in enumerate(np.asarray(schedule)):
        rows = [int(i) for i in batch if i >= 0]
        eta = lrs[t] / len(rows)
        grads = {
            i: p @ np.asarray(_example_grad(loss, thetas[t], unravel, data, i))
            for i in rows
        }
        jac = (1 - lrs[t] * l2) * np.eye(p.shape[0])
        for i in rows:
            if not (acc and i == target):
                jac = jac - eta * np.outer(grads[i], grads[i])
        d = jac @ d
        if target in rows and (sources is None or sources[t]):
            d = d + eta * grads[target]
    u = p @ np.asarray(jax.grad(lambda f: query(unravel(f)))(thetas[-1]))
    return float(u @ d), d


def acc_fast(loss, params, data, schedule, lrs, l2, query, contraction):
    """The scalar-contraction approximation of ACC-SGD-IE, written from its
    formula with dense Hessians: adjoints a_t, then for every example and every
    pair of its occurrences s < t

        I(k) = sum_t a_{t+1}^T u_k(t)
             + sum_{s < t} c(s + 1, t) (eta_t/|S_t| H_k(theta_t) a_{t+1})^T u_k(s),

    u_k(s) = eta_s/|S_s| grad loss_k(theta_s), c(s+1, t) = prod_{s<tau<t} rho_tau,
    rho_tau = <a_tau, a_{tau+1}> / |a_{tau+1}|^2 (1 for contraction="none")."""
    thetas, unravel = trajectory(loss, params, data, schedule, lrs, l2)
    schedule = np.asarray(schedule)
    T, n = len(schedule), jax.tree.leaves(data)[0].shape[0]
    a = [None] * (T + 1)
    a[T] = jax.grad(lambda f: query(unravel(f)))(thetas[-1])
    for t in reversed(range(T)):
        h = _hessian(loss, thetas[t], unravel, data, schedule[t], -1, l2)
        a[t] = a[t + 1] - lrs[t] * h @ a[t + 1]
    rho = [
        float(a[t] @ a[t + 1] / (a[t + 1] @ a[t + 1]))
        if contraction == "adjoint"
        else 1.0
        for t in range(T)
    ]
    example_hessian = jax.jit(
        lambda f, k: jax.hessian(
            lambda f: loss(unravel(f), jax.tree.map(lambda x: x[k], data))
        )(f)
    )
    infl = np.zeros(n)
    for k in range(n):
        steps = [t for t in range(T) if k in schedule[t]]
        eta = {t: lrs[t] / int((schedule[t] >= 0).sum()) for t in steps}
        u = {
            t: eta[t] * _example_grad(loss, thetas[t], unravel, data, k) for t in steps
        }
        for t in steps:
            infl[k] += float(a[t + 1] @ u[t])
            v = eta[t] * example_hessian(thetas[t], k) @ a[t + 1]
            for s in (s for s in steps if s < t):
                infl[k] += float(np.prod(rho[s + 1 : t])) * float(v @ u[s])
    return infl
