"""The optax update as the estimators differentiate it: sqrt'(0) taken as 0.

Adam-type optimizers divide by sqrt(v), v the running mean of squared
gradients. With optax's defaults (`eps_root=0`) an entry whose gradient has
been exactly zero at every step so far has v = 0, and the derivative of sqrt
there is infinite; its tangent (or cotangent) is 0, so the chain rule gives
0 x inf = nan. Such entries are common, not exotic: the rows of an embedding
table that no batch so far has looked up, the weights into a dead ReLU unit.

The rule: wherever the argument of a `sqrt` in the optimizer's update is
exactly 0, its derivative is taken as 0. It is the true derivative whenever
the entry's gradient is zero on a neighbourhood of the factual run (an
untouched embedding row has a zero gradient whatever the other parameters
are; a dead unit stays dead under a small perturbation): there v is
identically 0 in every nearby counterfactual run, and so is sqrt(v). With
exact arithmetic v = 0 also forces the tangent of v to 0 (v's tangent is a
sum of 2 g dg over past steps, all with g = 0), so the rule never hides a
non-zero perturbation. Everything else is differentiated as before: a real
divergence (a non-finite parameter, a sqrt of a negative number) still gives
non-finite values, which the estimators report with their step.

The rule is applied to the jaxpr of the update, so the user's optimizer is
used as it is (no `eps_root` to change, no retraining); the primal values are
the same operations, bit for bit.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
from jax.extend import core
from jax.extend.core import primitives


@jax.custom_jvp
def sqrt_zero_derivative(x):
    """`sqrt(x)`, whose derivative at x = 0 is 0 (elsewhere 1 / (2 sqrt(x)))."""
    return jax.lax.sqrt(x)


@sqrt_zero_derivative.defjvp
def _sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = jax.lax.sqrt(x)
    zero = x == 0
    scale = jnp.where(zero, 0, 0.5 / jnp.where(zero, 1, y)).astype(y.dtype)
    return y, scale * dx


# jit (named pjit_p before JAX 0.7) and closed calls are evaluated inline, so a
# sqrt inside them is found too.
_INLINED = tuple(
    p
    for p in (
        getattr(primitives, "jit_p", None),
        getattr(primitives, "pjit_p", None),
        getattr(primitives, "closed_call_p", None),
    )
    if p is not None
)


def _eval(jaxpr, consts, *args):
    """Evaluates `jaxpr` with every `sqrt` (also inside nested jits) replaced
    by `sqrt_zero_derivative`; other primitives, control flow included, are
    bound as they are."""
    env = {}

    def read(v):
        return v.val if isinstance(v, core.Literal) else env[v]

    def write(v, value):
        if not isinstance(v, core.DropVar):
            env[v] = value

    for v, value in zip(jaxpr.constvars, consts, strict=True):
        write(v, value)
    for v, value in zip(jaxpr.invars, args, strict=True):
        write(v, value)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if eqn.primitive is primitives.sqrt_p:
            outvals = [sqrt_zero_derivative(invals[0])]
        elif eqn.primitive in _INLINED and "jaxpr" in eqn.params:
            inner = eqn.params["jaxpr"]
            outvals = _eval(inner.jaxpr, inner.consts, *invals)
        else:
            params = eqn.primitive.get_bind_params(eqn.params)
            subfuns = []
            if isinstance(params, tuple):  # JAX < 0.7: (subfuns, params)
                subfuns, params = params
            ctx = getattr(eqn, "ctx", None)
            with ctx.manager if ctx is not None else contextlib.nullcontext():
                outvals = eqn.primitive.bind(*subfuns, *invals, **params)
            if not eqn.primitive.multiple_results:
                outvals = [outvals]
        for v, value in zip(eqn.outvars, outvals, strict=True):
            write(v, value)
    return [read(v) for v in jaxpr.outvars]


def with_zero_sqrt_derivative(fn):
    """`fn` (a function of pytrees of arrays) with sqrt'(0) taken as 0 inside."""

    def wrapped(*args):
        closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat = _eval(closed.jaxpr, closed.consts, *jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(shapes), flat)

    return wrapped


def optimizer_update(optimizer, grads, opt_state, params):
    """`optimizer.update(grads, opt_state, params)` under the rule above."""
    return with_zero_sqrt_derivative(optimizer.update)(grads, opt_state, params)
