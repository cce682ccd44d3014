"""Agreement between influence estimates and a ground truth (host-side NumPy).

The conventions follow the reference experiments: RMSE and Kendall's tau-b over
all targets; the two-tailed Jaccard@p compares the sets of the p/2 % most
negative plus the p/2 % most positive targets.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.stats

from accjax._src.problem import Influence


def _pair(truth, estimate) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(getattr(truth, "values", truth), dtype=np.float64)
    b = np.asarray(getattr(estimate, "values", estimate), dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            "metrics compare two 1-D arrays of the same length (one value per "
            f"target); got shapes {a.shape} and {b.shape}. For a vector query "
            "pick one column, e.g. influence.values[:, q]."
        )
    return a, b


def rmse(truth, estimate) -> float:
    """Root mean squared error over all targets."""
    a, b = _pair(truth, estimate)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def kendall(truth, estimate) -> float:
    """Kendall's tau-b rank correlation."""
    a, b = _pair(truth, estimate)
    return float(scipy.stats.kendalltau(a, b).statistic)


def spearman(truth, estimate) -> float:
    """Spearman's rank correlation."""
    a, b = _pair(truth, estimate)
    return float(scipy.stats.spearmanr(a, b).statistic)


def pearson(truth, estimate) -> float:
    """Pearson's linear correlation."""
    a, b = _pair(truth, estimate)
    return float(scipy.stats.pearsonr(a, b).statistic)


def tails(values, percent: float) -> np.ndarray:
    """Positions of the two tails: c//2 lowest and c//2 highest, c = int(n p / 100)."""
    values = np.asarray(values)
    if not 0 < percent <= 100:
        raise ValueError(f"`percent` must lie in (0, 100]; got {percent!r}.")
    half = int(values.size * percent / 100) // 2
    order = np.argsort(values, kind="stable")
    return np.union1d(order[:half], order[values.size - half :])


def jaccard(truth, estimate, percent: float = 10) -> float:
    """Two-tailed Jaccard@p of the p/2 % most negative and p/2 % most positive."""
    a, b = _pair(truth, estimate)
    ta, tb = tails(a, percent), tails(b, percent)
    union = np.union1d(ta, tb).size
    return float(np.intersect1d(ta, tb).size / union) if union else 1.0


def compare(
    truth, estimates: Mapping[str, Influence], *, jaccard_at=(10, 30)
) -> dict[str, dict[str, float]]:
    """One row per estimator: RMSE, Kendall, Spearman, Pearson, Jaccard@p.

    Args:
      truth: an Influence (e.g. from `loo_retrain`) or its values.
      estimates: name -> Influence over the same targets, in the same order.
      jaccard_at: the percentages p of the Jaccard columns.

    Returns:
      `{name: {"rmse": ..., "kendall": ..., ..., "jaccard@10": ...}}`.
    """
    table = {}
    for name, est in estimates.items():
        if hasattr(truth, "targets") and hasattr(est, "targets"):
            if not np.array_equal(np.asarray(truth.targets), np.asarray(est.targets)):
                raise ValueError(
                    f"estimate {name!r} covers other targets than the truth; "
                    "compute both with the same `targets`."
                )
        row = {
            "rmse": rmse(truth, est),
            "kendall": kendall(truth, est),
            "spearman": spearman(truth, est),
            "pearson": pearson(truth, est),
        }
        row.update({f"jaccard@{p}": jaccard(truth, est, p) for p in jaccard_at})
        table[name] = row
    return table


def format_table(table: Mapping[str, Mapping[str, float]], **extra_columns) -> str:
    """Renders `compare`'s output (plus optional columns) as an aligned text table."""
    names = list(table)
    columns = list(next(iter(table.values())).keys()) if table else []
    columns += list(extra_columns)
    lines = ["estimator".ljust(12) + "".join(c.rjust(12) for c in columns)]
    for name in names:
        row = dict(table[name])
        row.update({c: extra_columns[c][name] for c in extra_columns})
        lines.append(name.ljust(12) + "".join(f"{row[c]:12.4g}" for c in columns))
    return "\n".join(lines)


def detection(
    influence, flipped, *, at=(10, 30, 100), num_examples=None, largest_first=False
) -> dict:
    """How well a ranking finds known-corrupted training examples.

    The ranking is `influence`'s targets from most negative (most harmful) to
    most positive, or with `largest_first` from largest to smallest (for
    self-influence, `tracin(run, "self", ...)`: the most self-influential
    first); `flipped` holds the training indices known to be corrupted.

    Args:
      influence: an `Influence`, or None for the expectation under a uniformly
        random ranking of `num_examples` examples.
      flipped: int array of corrupted training indices.
      at: the counts k of examples inspected.
      num_examples: needed when `influence` is None.

    Returns:
      `{"precision": {"k": ...}, "recall": {"k": ...}, "auc": ...}` and
      `"num_flipped"`: precision@k (corrupted among the first k / k),
      recall@k (corrupted among the first k / all corrupted) and the area under
      the recall curve
      over k = 1..N (N ranked examples), which is (N + 1) / (2 N) for a random
      ranking and 1 - (|F| - 1) / (2 N) for a perfect one.
    """
    flipped = np.unique(np.asarray(flipped, dtype=np.int64))
    if flipped.size == 0:
        raise ValueError("`flipped` is empty; detection needs corrupted indices.")
    if influence is None:
        if num_examples is None:
            raise ValueError("pass `num_examples` for the random baseline.")
        total, frac = int(num_examples), flipped.size / int(num_examples)
        precision = {str(k): frac for k in at}
        recall = {str(k): min(k, total) / total for k in at}
        auc = (total + 1) / (2 * total)
    else:
        values = np.asarray(influence.values)
        if values.ndim != 1:
            raise ValueError(
                f"detection needs scalar influence values; got shape {values.shape}."
            )
        if not isinstance(largest_first, bool):
            raise TypeError(f"`largest_first` must be a bool; got {largest_first!r}.")
        ranked = np.argsort(-values if largest_first else values, kind="stable")
        order = np.asarray(influence.targets)[ranked]
        found = np.cumsum(np.isin(order, flipped))
        total = order.size
        precision = {str(k): float(found[min(k, total) - 1] / k) for k in at}
        recall = {str(k): float(found[min(k, total) - 1] / flipped.size) for k in at}
        auc = float(np.mean(found / flipped.size))
    return {
        "precision": precision,
        "recall": recall,
        "auc": float(auc),
        "num_flipped": int(flipped.size),
    }


def lds(influence, subsets) -> float:
    """Linear datamodeling score: does the sum of influences predict group removal?

    For every subset j of `subsets` (from `accjax.subset_retrain`), the predicted
    change of f is the sum of `influence.values` over the examples j removed; the
    score is Spearman's correlation of predicted and actual changes over the
    subsets, averaged over the query's components for a vector query.

    Args:
      influence: an `Influence` over every training example (any order).
      subsets: `Subsets(removed (M, n) bool, values (M,) or (M, Q))`.
    """
    removed = np.asarray(subsets.removed, bool)
    actual = np.asarray(subsets.values, np.float64)
    n = removed.shape[1]
    targets = np.asarray(influence.targets)
    if targets.size != n or not np.array_equal(np.sort(targets), np.arange(n)):
        raise ValueError(
            f"LDS needs the influence of every training example (n = {n}); got "
            f"{targets.size} targets."
        )
    values = np.zeros((n,) + np.shape(influence.values)[1:])
    values[targets] = np.asarray(influence.values, np.float64)
    if values.shape[1:] != actual.shape[1:]:
        raise ValueError(
            f"influence values per example have shape {values.shape[1:]}, the "
            f"subsets' values {actual.shape[1:]}: use the same query."
        )
    predicted = removed.astype(np.float64) @ values
    if actual.ndim == 1:
        return float(scipy.stats.spearmanr(predicted, actual).statistic)
    return float(
        np.mean(
            [
                scipy.stats.spearmanr(predicted[:, q], actual[:, q]).statistic
                for q in range(actual.shape[1])
            ]
        )
    )
