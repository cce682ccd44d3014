"""DVEmb (Wang et al., ICLR 2025) and its accumulative variant ACC-DVEmb.

Both replace each step's Jacobian I - eta_t (H_t + l2 I) of plain SGD by its
Gauss-Newton / empirical-Fisher form

    J_t = (1 - eta_t l2) I - (eta_t / |S_t|) sum_{i in S_t} g_i g_i^T,

g_i the per-example loss gradient at params_t, optionally in a random projection
g -> P g (P: d x |params|, entries N(0, 1/d), drawn from `seed`), and use the
first-order injection (eta_t / |S_t|) g_t(k) at each step that holds k. Then

    DVEmb_t(k) = J_{T-1} ... J_{t+1} (eta_t / |S_t|) g_t(k),

the data value embedding of k at step t, and influence(k) = sum over the steps
holding k of <P grad f(params_T), DVEmb_t(k)>: SGD-IE with the Fisher in place of
the Hessian. ACC-DVEmb drops k's own rank-one term from J_t at the steps that
hold k (the counterfactual's curvature), which needs a vector per target.

DVEmb is computed as in the paper, by one backward sweep that carries the
product of the later steps' J (d x d, shared by every example); ACC-DVEmb by a
forward sweep of one d-vector per target. Both hold the factual trajectory's
per-example gradients only one step at a time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from accjax._src import progress as progress_lib
from accjax._src.estimators import common
from accjax._src.problem import Influence, Run, example_grads
from accjax._src.schedule import check_per_epoch
from accjax._src.train import init_state, param_dtype, step


def _example_grads(problem, params, indices, t, projection):
    """Per-example loss gradients of a batch at step t, flat and projected:
    `(B, d)`. Padding rows are zero."""
    grads = example_grads(problem, params, indices, t)
    flat = jax.vmap(lambda leaves: ravel_pytree(leaves)[0])(grads)
    flat = jnp.where((indices >= 0)[:, None], flat, 0)
    return flat if projection is None else flat @ projection.T


def _query_grad(query, params, projection):
    """grad f(params_T), flat and projected: `(d,)` or `(Q, d)` for a vector query."""
    out_shape = jax.eval_shape(query, params).shape
    if out_shape:
        jac = jax.jacrev(query)(params)
        flat = jax.vmap(lambda leaf: ravel_pytree(leaf)[0])(jac)
    else:
        flat = ravel_pytree(jax.grad(query)(params))[0]
    return flat if projection is None else flat @ projection.T


def _batch_terms(
    problem, params, t, indices, inv, size, projection, learning_rate, dtype
):
    """What both sweeps need of step t: the batch's projected per-example
    gradients `(B, d)`, eta_t / |S_t|, 1 - eta_t l2, each slot's target position
    (-1 for none) and its scatter index (`size`, out of range, for none)."""
    g = _example_grads(problem, params, indices, t, projection)
    lr = common.learning_rate_at(learning_rate, t)
    eta = (lr / jnp.sum(indices >= 0)).astype(dtype)
    decay = (1 - lr * problem.l2).astype(dtype)
    slots = jnp.where(indices >= 0, inv[jnp.maximum(indices, 0)], -1)
    return g, eta, decay, slots, jnp.where(slots >= 0, slots, size)


def _read_out(emb, u):
    """Influence per target and group from embeddings `(K, G, d)`."""
    return jnp.einsum("kgd,d->kg" if u.ndim == 1 else "kgd,qd->kgq", emb, u)


@functools.partial(
    jax.jit,
    static_argnames=("optimizer", "learning_rate", "num_groups", "with_progress"),
)
def _dvemb_sweep(
    problem,
    optimizer,
    schedule,
    targets,
    projection,
    groups,
    *,
    query,
    learning_rate,
    num_groups,
    with_progress,
):
    """DVEmb by the backward sweep: embeddings `(K, G, d)` and influence."""
    num_steps = schedule.shape[0]
    dtype = param_dtype(problem.params)
    z0 = init_state(problem, optimizer)
    _, unravel = ravel_pytree(z0.params)
    ones = lambda indices: jnp.ones(indices.shape, dtype)

    def forward(z, xs):
        t, indices = xs
        if with_progress:
            progress_lib.tick(t + 1, 2 * num_steps)
        return step(problem, optimizer, z, indices, ones(indices), t), ravel_pytree(
            z.params
        )[0]

    steps = (jnp.arange(num_steps), schedule)
    z, thetas = jax.lax.scan(forward, z0, steps)
    inv = common.target_slots(targets, problem.num_examples)
    size = targets.shape[0]
    dim = thetas.shape[1] if projection is None else projection.shape[0]

    def backward(carry, xs):
        # a = J_{T-1} ... J_{t+1}: the propagator from after step t to the end
        a, emb = carry
        t, indices, theta, group = xs
        g, eta, decay, _, to = _batch_terms(
            problem, unravel(theta), t, indices, inv, size, projection,
            learning_rate, dtype,
        )  # fmt: skip
        emb = emb.at[to, group].add(eta * g @ a.T, mode="drop")
        a = decay * a - eta * (a @ g.T) @ g
        if with_progress:
            progress_lib.tick(2 * num_steps - t, 2 * num_steps)
        return (a, emb), None

    carry = (jnp.eye(dim, dtype=dtype), jnp.zeros((size, num_groups, dim), dtype))
    (_, emb), _ = jax.lax.scan(backward, carry, (*steps, thetas, groups), reverse=True)
    return emb, _read_out(emb, _query_grad(query, z.params, projection))


@functools.partial(
    jax.jit,
    static_argnames=("optimizer", "learning_rate", "num_groups", "with_progress"),
)
def _acc_dvemb_chunks(
    problem,
    optimizer,
    schedule,
    chunks,
    projection,
    groups,
    *,
    query,
    learning_rate,
    num_groups,
    with_progress,
):
    """ACC-DVEmb by the forward sweep, chunk after chunk: `(C, size, G, d)`."""
    num_chunks, size = chunks.shape
    num_steps = schedule.shape[0]
    dtype = param_dtype(problem.params)
    z0 = init_state(problem, optimizer)
    num_params = common.num_params(z0.params)
    dim = num_params if projection is None else projection.shape[0]

    def one_chunk(_, xs):
        c, row = xs
        inv = common.target_slots(row, problem.num_examples)

        def body(carry, xs):
            z, d = carry
            t, indices, group = xs
            g, eta, decay, slots, to = _batch_terms(
                problem, z.params, t, indices, inv, size, projection,
                learning_rate, dtype,
            )  # fmt: skip
            # the shared Fisher step, then k's own rank-one term given back
            shared = decay * d - eta * jnp.einsum(
                "kgb,bd->kgd", jnp.einsum("kgd,bd->kgb", d, g), g
            )
            own = d[jnp.maximum(slots, 0)]  # (B, G, dim)
            back = eta * jnp.einsum("bg,bd->bgd", jnp.einsum("bgd,bd->bg", own, g), g)
            d = shared.at[to].add(back, mode="drop")
            d = d.at[to, group].add(eta * g, mode="drop")
            z = step(problem, optimizer, z, indices, jnp.ones(indices.shape, dtype), t)
            if with_progress:
                progress_lib.tick(c * num_steps + t + 1, num_chunks * num_steps)
            return (z, d), None

        d0 = jnp.zeros((size, num_groups, dim), dtype)
        steps = (jnp.arange(num_steps), schedule, groups)
        (z, d), _ = jax.lax.scan(body, (z0, d0), steps)
        return None, (d, _read_out(d, _query_grad(query, z.params, projection)))

    _, out = jax.lax.scan(one_chunk, None, (jnp.arange(num_chunks), chunks))
    return out


def _prepare(run, query, learning_rate, targets, projection_dim, seed, per_epoch, name):
    query = common.check_run(run, query)
    targets = common.check_targets(targets, run.problem.num_examples)
    common.check_learning_rate(learning_rate)
    common.check_plain_sgd(run, learning_rate, name)
    flat, unravel = ravel_pytree(run.problem.params)
    projection = None
    if projection_dim is not None:
        if not isinstance(projection_dim, int | np.integer) or projection_dim < 1:
            raise ValueError(
                f"`projection_dim` must be an int >= 1 or None; got {projection_dim!r}."
            )
        key = jax.random.PRNGKey(seed)
        projection = jax.random.normal(
            key, (int(projection_dim), flat.shape[0]), flat.dtype
        ) / np.sqrt(projection_dim)
    groups = check_per_epoch(per_epoch, run.schedule)
    num_groups = 1 if groups is None else int(groups.max()) + 1
    if groups is None:
        groups = np.zeros(run.num_steps, np.int32)
    return query, targets, projection, unravel, jnp.asarray(groups), num_groups


def _influence(targets, emb, grouped, unravel, projection, per_epoch) -> Influence:
    """`values` summed over the groups; `param_shift` in the full space only."""
    common.check_finite(
        grouped,
        "DVEmb produced non-finite influence values; check that training "
        "stayed finite (the replayed trajectory) and the learning rate.",
    )
    shift = None if projection is not None else jax.vmap(unravel)(emb.sum(1))
    by_epoch = None if per_epoch is False or per_epoch is None else grouped
    return Influence(targets, grouped.sum(1), shift, per_epoch=by_epoch)


def dvemb(
    run: Run,
    query,
    *,
    learning_rate,
    targets=None,
    projection_dim: int | None = None,
    seed: int = 0,
    per_epoch=False,
    progress=False,
) -> Influence:
    """DVEmb: data value embeddings (Wang et al., ICLR 2025), summed over the run.

    influence(k) = sum over steps t holding k of <P grad f(params_T), DVEmb_t(k)>,
    DVEmb_t(k) = J_{T-1} ... J_{t+1} (eta_t / |S_t|) P g_t(k), where
    J_s = (1 - eta_s l2) I - (eta_s / |S_s|) sum_{i in S_s} P g_i (P g_i)^T is
    the step's Jacobian with the empirical Fisher for the Hessian: SGD-IE with
    Gauss-Newton curvature, k's own term kept at its occurrences. One backward
    sweep carries the d x d product of the later steps' J, shared by all
    examples (the paper's algorithm); the factual parameters of every step are
    kept for it (num_steps x |params|).

    Args:
      run: from `accjax.train` with plain SGD (`optax.sgd` without momentum);
        checked on its first steps.
      query: `f(params) -> scalar` or `(num_queries,)` vector.
      learning_rate: the run's step size: a float or an optax-style schedule
        `lr(step_index)`.
      targets: int array `(num_targets,)` of training indices; None means all.
      projection_dim: None for the full flat gradients (d = |params|), or d:
        every gradient is projected by P (d x |params|, entries N(0, 1/d) drawn
        from `seed`), which keeps inner products in expectation
        (Johnson-Lindenstrauss) and makes the d x d product affordable for big
        models.
      seed: the projection's seed.
      per_epoch: True for `Influence.per_epoch`, the embeddings of each epoch's
        occurrences of k read out apart; or an int array `(num_steps,)`
        grouping the steps your way.
      progress: True (or a label) for a progress bar on stderr, or a callable
        `(done, total)`.

    Returns:
      Influence with `values` `(num_targets,)` (or `(num_targets, num_queries)`),
      `param_shift` (the summed embeddings, in the full space only) and
      `per_epoch` if asked for.

    Cost: per step, B per-example gradients and O(B d^2) for the product;
    memory d^2 + num_steps x |params| + num_targets x num_groups x d.
    """
    query, targets, projection, unravel, groups, num_groups = _prepare(
        run, query, learning_rate, targets, projection_dim, seed, per_epoch, "dvemb"
    )
    with progress_lib.reporting(progress, "dvemb") as with_progress:
        emb, grouped = _dvemb_sweep(
            run.problem,
            run.optimizer,
            run.schedule,
            targets,
            projection,
            groups,
            query=query,
            learning_rate=learning_rate,
            num_groups=num_groups,
            with_progress=with_progress,
        )
        jax.block_until_ready(grouped)
    return _influence(targets, emb, grouped, unravel, projection, per_epoch)


def acc_dvemb(
    run: Run,
    query,
    *,
    learning_rate,
    targets=None,
    projection_dim: int | None = None,
    seed: int = 0,
    per_epoch=False,
    chunk_size: int | None = None,
    progress=False,
) -> Influence:
    """ACC-DVEmb: DVEmb with the counterfactual's curvature at k's occurrences.

    As `dvemb`, but at every step that holds k the Fisher step of k's
    perturbation leaves out k's own rank-one term:
    J_t^{-k} = J_t + (eta_t / |S_t|) P g_t(k) (P g_t(k))^T. The product is no
    longer shared, so each target carries its own d-vector D_k forward,

        D_k <- J_t D_k + [k in S_t] (eta_t / |S_t|) (P g_t(k) (P g_t(k))^T D_k
               + P g_t(k)),

    and influence(k) = <P grad f(params_T), D_k>. Arguments as `dvemb`, plus:

    Args:
      chunk_size: targets carried together (memory chunk_size x num_groups x
        d); None means all at once. Each chunk replays the run once.

    Returns:
      Influence as `dvemb`'s.

    Cost: per step and chunk, B per-example gradients and O(K B d) for the
    shared step.
    """
    query, targets, projection, unravel, groups, num_groups = _prepare(
        run, query, learning_rate, targets, projection_dim, seed, per_epoch, "acc_dvemb"
    )
    size = common.check_chunk_size(chunk_size, targets.shape[0])
    with progress_lib.reporting(progress, "acc_dvemb") as with_progress:
        emb, grouped = _acc_dvemb_chunks(
            run.problem,
            run.optimizer,
            run.schedule,
            common.chunk(targets, size),
            projection,
            groups,
            query=query,
            learning_rate=learning_rate,
            num_groups=num_groups,
            with_progress=with_progress,
        )
        jax.block_until_ready(grouped)
    num = targets.shape[0]
    emb, grouped = common.unchunk((emb, grouped), num)
    return _influence(targets, emb, grouped, unravel, projection, per_epoch)
