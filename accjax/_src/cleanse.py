"""Retraining without groups of examples: data cleansing and LDS subsets.

Both retrain with `replay` (its own module), which replays a run once per row of
example weights, all rows vmapped in one `lax.scan` over the schedule.

Data cleansing (`cleanse`): rank by influence, remove the most harmful, retrain, test.

The protocol of Hara et al. (2019), which the ACC-SGD-IE paper reuses: rank the
training examples by their estimated influence on the validation loss (most
negative = most harmful first), remove the k first for each k, replay the same
schedule without them (weight 0 in every batch that holds them; the batch
denominator |S| and the L2 term unchanged, as in DESIGN.md section 2), and
measure the test error of each retrained model.

The linear datamodeling score (`subset_retrain`, then `metrics.lds`): retrain on
random subsets and compare the actual change of the query with the sum of the
removed examples' influences.

The first row of every `replay` batch built here removes nothing: it is the
baseline every other row is compared with, computed by the same kernels (its
distance to the run's own parameters is reported as `replay_error`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from accjax._src.estimators import common
from accjax._src.estimators.named import NAMES, estimate
from accjax._src.metrics import detection as detect
from accjax._src.problem import Influence, Run, as_query_tree, check_query
from accjax._src.replay import (
    evaluate,
    replay,
    start_step,
)

DEFAULT_REMOVE = (1, 3, 10, 30, 100)


def ranking(influence: Influence) -> np.ndarray:
    """Training indices from most harmful (most negative) to most helpful."""
    values = np.asarray(influence.values)
    if values.ndim != 1:
        raise ValueError(
            "cleansing ranks by a scalar query; got influence values of shape "
            f"{values.shape}."
        )
    return np.asarray(influence.targets)[np.argsort(values, kind="stable")]


def _check_tests(test, params) -> dict[str, Callable]:
    tests = dict(test) if isinstance(test, Mapping) else {"test": test}
    if not tests:
        raise ValueError("`test` is empty; pass f(params) -> scalar or a dict of them.")
    for name, fn in tests.items():
        if check_query(fn, params) != ():
            raise ValueError(f"`test[{name!r}](params)` must return a scalar.")
    return tests


def check_remove(remove, limit: int) -> tuple[int, ...]:
    ks = tuple(int(k) for k in remove)
    if not ks or any(k < 1 or k > limit for k in ks) or len(set(ks)) != len(ks):
        raise ValueError(
            f"`remove` must list distinct counts in [1, {limit}] (the number of "
            f"examples ranked); got {tuple(remove)!r}."
        )
    return tuple(sorted(ks))


def _influences(estimator, run, query, learning_rate, progress) -> dict:
    if isinstance(estimator, Influence):
        estimator = {"influence": estimator}
    if isinstance(estimator, str):
        estimator = [estimator]
    if not isinstance(estimator, Mapping):
        items = []
        for e in estimator:
            if not isinstance(e, str):
                raise TypeError(
                    "`estimator` given as a list must hold names; label "
                    "precomputed Influences with a dict {name: Influence}."
                )
            items.append((e, e))
        estimator = dict(items)
    out = {}
    for label, e in estimator.items():
        if isinstance(e, Influence):
            out[label] = e
        elif e in NAMES:
            out[label] = estimate(
                e,
                run,
                query,
                learning_rate=learning_rate,
                progress=label if progress else False,
            )
        else:
            raise ValueError(
                f"`estimator` {e!r} is neither an Influence nor one of {NAMES}."
            )
    return out


@dataclasses.dataclass(frozen=True)
class Cleansing:
    """What `cleanse` measured.

    Attributes:
      remove: the counts k, ascending.
      baseline: test metrics of the model retrained with nothing removed.
      results: ranking name -> metric name -> array `(draws, len(remove))`; one
        draw for an estimator's ranking, `random_draws` for "random".
      rankings: estimator name -> training indices, most harmful first.
      start_step: the step the retrainings restarted from (0 for "all").
      replay_error: max |params| difference between the no-removal replay and
        the run's own parameters (rounding only).
      detection: when `flipped` was given, ranking name -> `metrics.detection`.
    """

    remove: tuple[int, ...]
    baseline: dict
    results: dict
    rankings: dict
    start_step: int
    replay_error: float
    detection: dict | None = None

    def table(self) -> str:
        """One block per test metric: k down, rankings across (random: mean +- std)."""

        def block(title, header, rows):
            # every column as wide as its widest cell, two spaces apart
            cells = [[str(c) for c in row] for row in [header, *rows]]
            widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
            widths[0] = max(widths[0], 6)
            text = [title]
            for row in cells:
                padded = [f"{c:>{w}}" for c, w in zip(row, widths, strict=True)]
                text.append("  ".join(padded))
            return text + [""]

        lines = []
        names = list(self.results)
        for metric, base in self.baseline.items():
            rows = []
            for j, k in enumerate(self.remove):
                row = [k]
                for n in names:
                    v = self.results[n][metric][:, j]
                    row.append(
                        f"{v.mean():.4g} +- {v.std():.2g}"
                        if v.size > 1
                        else f"{v[0]:.4g}"
                    )
                rows.append(row)
            title = (
                f"{metric} after removing the k most harmful "
                f"(nothing removed: {base:.4g})"
            )
            lines += block(title, ["k", *names], rows)
        if self.detection:
            found = self.detection.values()
            rows = [[k] + [f"{d['recall'][str(k)]:.3f}" for d in found]
                    for k in self.remove]  # fmt: skip
            rows.append(["auc"] + [f"{d['auc']:.3f}" for d in found])
            title = "flipped labels found among the k most harmful (recall)"
            lines += block(title, ["k", *self.detection], rows)
        return "\n".join(lines).rstrip()

    def to_dict(self) -> dict:
        """JSON-ready: arrays as lists."""
        return {
            "remove": list(self.remove),
            "baseline": self.baseline,
            "results": {
                n: {m: v.tolist() for m, v in r.items()}
                for n, r in self.results.items()
            },
            "rankings": {n: r.tolist() for n, r in self.rankings.items()},
            "start_step": self.start_step,
            "replay_error": self.replay_error,
            "detection": self.detection,
        }


def cleanse(
    run: Run,
    query,
    *,
    test,
    estimator="acc_sgd_ie",
    remove=DEFAULT_REMOVE,
    retrain="all",
    random_draws: int = 5,
    seed: int = 0,
    flipped=None,
    learning_rate=None,
    chunk_size: int | None = None,
    progress=False,
) -> Cleansing:
    """Removes the most harmful training examples and retrains (data cleansing).

    For each ranking (each estimator's, and `random_draws` random orders) and
    each k in `remove`, replays the run without the k first examples of the
    ranking and evaluates `test` on the result. All retrainings of a call share
    one vmapped scan (split by `chunk_size`).

    Args:
      run: from `accjax.train`.
      query: the validation objective the influence is taken on, e.g.
        `accjax.mean_loss(loss, val_data)`.
      test: `f(params) -> scalar`, or a dict name -> such functions, e.g.
        `{"error": accjax.mean_loss(accjax.models.binary_error(apply), test),
        "loss": accjax.mean_loss(loss, test)}`.
      estimator: an estimator name (one of `accjax._src.estimators.named.NAMES`:
        "exact", "sgd_ie", "acc_sgd_ie", "acc_nonlinear", "acc_last_layer",
        "acc_sgd_ie_fast", "tracin", "tracin_cp", "dvemb", "acc_dvemb",
        "influence_function"; "dvemb" and "acc_dvemb" need `learning_rate`),
        an `Influence` already computed for `query` (labelled "influence"), a
        list of names, or a dict label -> name or Influence.
      remove: the counts k of removed examples.
      retrain: "all" (replay from the initial parameters), "last-epoch"
        (restart from the factual state at the start of the final epoch, see
        `last_epoch_start`), or the step index to restart from.
      random_draws: random rankings for the baseline (0 for none); draw d is
        `np.random.RandomState([seed, d]).permutation(n)`.
      seed: seed of the random rankings.
      flipped: optional indices of training examples known to be corrupted
        (e.g. `splits.info["flipped"]`): adds `metrics.detection` per ranking.
      learning_rate: the run's learning rate (float or schedule), for the
        estimators that model plain SGD ("dvemb", "acc_dvemb").
      chunk_size: retrainings vmapped together (memory ~ chunk_size x state).
      progress: as for the estimators.

    Returns:
      A `Cleansing` (`.table()` renders it, `.to_dict()` for JSON).
    """
    query = common.check_run(run, query)
    tests = _check_tests(test, run.problem.params)
    n = run.problem.num_examples
    if not isinstance(random_draws, int | np.integer) or random_draws < 0:
        raise ValueError(f"`random_draws` must be an int >= 0; got {random_draws!r}.")
    start = start_step(retrain, run)
    ks = check_remove(remove, n)
    influences = _influences(estimator, run, query, learning_rate, progress)
    rankings = {name: ranking(inf) for name, inf in influences.items()}
    ks = check_remove(ks, min(len(r) for r in rankings.values()))
    orders = dict(rankings)
    for d in range(random_draws):
        orders[f"random/{d}"] = np.random.RandomState([seed, d]).permutation(n)
    keep = [np.ones(n)]
    for order in orders.values():
        for k in ks:
            row = np.ones(n)
            row[order[:k]] = 0.0
            keep.append(row)
    zs = replay(
        run, np.stack(keep), retrain=start, chunk_size=chunk_size, progress=progress
    )
    scores = {
        name: np.asarray(evaluate(as_query_tree(fn), zs.params), np.float64)
        for name, fn in tests.items()
    }
    baseline = {name: float(v[0]) for name, v in scores.items()}
    results = {}
    for i, name in enumerate(orders):
        rows = slice(1 + i * len(ks), 1 + (i + 1) * len(ks))
        key = "random" if name.startswith("random/") else name
        for metric, v in scores.items():
            results.setdefault(key, {}).setdefault(metric, []).append(v[rows])
    results = {n_: {m: np.stack(v) for m, v in r.items()} for n_, r in results.items()}
    replay_error = max(
        float(jnp.max(jnp.abs(a[0] - b)))
        for a, b in zip(
            jax.tree.leaves(zs.params), jax.tree.leaves(run.params), strict=True
        )
    )
    detection = None
    if flipped is not None:
        detection = {
            name: detect(inf, flipped, at=ks, num_examples=n)
            for name, inf in influences.items()
        }
        detection["random"] = detect(None, flipped, at=ks, num_examples=n)
    return Cleansing(
        remove=ks,
        baseline=baseline,
        results=results,
        rankings=rankings,
        start_step=start,
        replay_error=replay_error,
        detection=detection,
    )


class Subsets(NamedTuple):
    """Retrainings on random subsets, the ground truth of `metrics.lds`.

    Attributes:
      removed: bool `(num_subsets, num_examples)`, True where an example was
        left out.
      values: `f(params trained without them) - f(params)`, `(num_subsets,)` or
        `(num_subsets, num_queries)`, the baseline being the no-removal replay.
    """

    removed: np.ndarray
    values: np.ndarray


def subset_retrain(
    run: Run,
    query,
    *,
    num_subsets: int = 50,
    fraction: float = 0.5,
    seed: int = 0,
    retrain="all",
    chunk_size: int | None = None,
    progress=False,
) -> Subsets:
    """Retrains on `num_subsets` random subsets keeping `fraction` of the examples.

    Subset j keeps `RandomState([seed, j]).permutation(n)[:round(fraction n)]`;
    the rest get weight 0 in their batches (same schedule, |S| unchanged).
    """
    query = common.check_run(run, query)
    n = run.problem.num_examples
    if not isinstance(num_subsets, int | np.integer) or num_subsets < 2:
        raise ValueError(f"`num_subsets` must be an int >= 2; got {num_subsets!r}.")
    kept = round(fraction * n) if isinstance(fraction, float | int) else -1
    if not 0 < kept < n:
        raise ValueError(
            f"`fraction` must keep between 1 and {n - 1} of the {n} examples; got "
            f"{fraction!r}."
        )
    removed = np.ones((num_subsets, n), bool)
    for j in range(num_subsets):
        removed[j, np.random.RandomState([seed, j]).permutation(n)[:kept]] = False
    keep = np.concatenate([np.ones((1, n)), (~removed).astype(np.float64)])
    zs = replay(
        run, keep, retrain=start_step(retrain, run), chunk_size=chunk_size,
        progress=progress,
    )  # fmt: skip
    f = np.asarray(evaluate(query, zs.params), np.float64)
    return Subsets(removed, f[1:] - f[:1])
