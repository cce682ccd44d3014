"""acc_sgd_ie_fast in bounded memory: the count sketch of the carried vectors and
the plan that fits a memory budget.

Memory: the states the reverse sweep replays (all T, or T/c + c with
checkpoints every c steps) and n x |params| carried floats, or n x d in a count
sketch of dimension d (`projection_dim`): <u, X> is then estimated by
<S u, S X>, S a random signed hashing of the parameters into d buckets
(unbiased, error ~ |u| |X| / sqrt(d)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from accjax._src.estimators import common
from accjax._src.problem import Run
from accjax._src.train import init_state, param_dtype


def count_sketch(num_params: int, dim: int, seed: int):
    """A count sketch R^|params| -> R^dim: `sketch(x)` for `(..., |params|)`."""
    rng = np.random.RandomState(seed)
    buckets = jnp.asarray(rng.randint(0, dim, num_params), jnp.int32)
    signs = rng.choice(np.array([-1.0, 1.0]), num_params)

    def sketch(x):
        signed = (x * jnp.asarray(signs, x.dtype)[None]).T
        return jax.ops.segment_sum(signed, buckets, num_segments=dim).T

    return sketch


class Sketch:
    """The identity or a count sketch of the parameter vectors, and the contraction
    (static configuration of the sweep; hashed by value so jit reuses it)."""

    def __init__(self, num_params, projection_dim, seed, contraction):
        self.dim = num_params if projection_dim is None else projection_dim
        self.contraction = contraction
        self.key = (num_params, projection_dim, seed, contraction)
        self.fn = (
            (lambda x: x)
            if projection_dim is None
            else count_sketch(num_params, projection_dim, seed)
        )

    def __call__(self, x):
        return self.fn(x)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, Sketch) and self.key == other.key


def plan_memory(run: Run, projection_dim, storage, memory_budget):
    """`(projection_dim, segment)` for the sweep: the arguments checked, and for
    `memory_budget` (bytes) the largest sketch (none if the n x |params|
    carried floats fit half the budget) and the fewest replays whose stored
    states fit the rest."""
    n, num_steps = run.problem.num_examples, run.num_steps
    num_params = common.num_params(run.problem.params)
    itemsize = np.dtype(param_dtype(run.problem.params)).itemsize
    if projection_dim is not None and (
        isinstance(projection_dim, bool)
        or not isinstance(projection_dim, int | np.integer)
        or projection_dim < 1
    ):
        raise ValueError(
            f"`projection_dim` must be None or an int >= 1; got {projection_dim!r}."
        )
    if storage != "all" and (
        isinstance(storage, bool)
        or not isinstance(storage, int | np.integer)
        or not 1 <= storage <= num_steps
    ):
        raise ValueError(
            "`storage` must be 'all' or a segment length (int) in "
            f"[1, {num_steps}]; got {storage!r}."
        )
    segment = 1 if storage == "all" else int(storage)
    if memory_budget is None:
        return projection_dim, segment
    common.check_memory_budget(memory_budget)
    if projection_dim is None:
        dim = num_params
        while n * dim * itemsize > memory_budget // 2 and dim > 64:
            dim = 2 ** int(np.log2(dim - 1))
        projection_dim = None if dim == num_params else dim
    carried = n * (projection_dim or num_params) * itemsize
    state = common.nbytes(
        jax.eval_shape(lambda p: init_state(p, run.optimizer), run.problem)
    )
    rest = memory_budget - carried
    if storage == "all":
        best = max(1, int(np.sqrt(num_steps)))
        for c in (1, *range(2, best + 1)):
            if (-(-num_steps // c) + c) * state <= rest:
                return projection_dim, c
        need = (-(-num_steps // best) + best) * state + carried
        raise ValueError(
            f"`memory_budget` = {memory_budget} bytes is below what acc_sgd_ie_fast "
            f"keeps at the least: {need} bytes (states every {best} steps of a "
            f"{state}-byte state, {carried} bytes carried for {n} examples)."
        )
    return projection_dim, segment
