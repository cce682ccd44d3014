"""The reference split of a pool into train/val/test, and standardisation."""

from __future__ import annotations

import numbers

import numpy as np

from accjax._src import extras


def train_test_split(*args, **kwargs):
    """scikit-learn's `train_test_split` (the reference scripts' draw)."""
    model_selection = extras.require("sklearn.model_selection", "the reference split")
    return model_selection.train_test_split(*args, **kwargs)


def check_sizes(name: str, pool_size: int, n_train, n_val, n_test) -> None:
    """Raises ValueError unless the sizes are ints that fit in the pool."""
    for arg, value, low in (("n_train", n_train, 1), ("n_val", n_val, 0),
                            ("n_test", n_test, 0)):  # fmt: skip
        if (
            not isinstance(value, numbers.Integral)
            or isinstance(value, bool)
            or value < low
        ):
            raise ValueError(
                f"`{arg}` must be an int >= {low} (a number of rows, not a "
                f"fraction); got {value!r}."
            )
    total = n_train + n_val + n_test
    if total > pool_size:
        raise ValueError(
            f"n_train + n_val + n_test = {n_train} + {n_val} + {n_test} = {total} "
            f"exceeds the {name!r} pool of {pool_size} rows. Ask for at most "
            f"{pool_size} rows in all."
        )


def split_indices(
    pool_size: int, n_train: int, n_val: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool indices of the train, val and test rows.

    As the reference: `train_test_split(..., train_size=n_train,
    test_size=n_val + n_test, random_state=seed)`, then the remainder split into
    `n_val` and `n_test` rows with `random_state=seed + 1` (not stratified; the
    permutation does not depend on the data, so splitting indices is the same as
    splitting `(x, y)`). Zero-sized parts, which scikit-learn refuses, are
    handled without it.
    """
    rows = np.arange(pool_size)
    rest_size = n_val + n_test
    if rest_size == 0:
        if n_train == pool_size:
            train = np.random.RandomState(seed).permutation(pool_size)
        else:
            train = train_test_split(rows, train_size=n_train, random_state=seed)[0]
        empty = np.zeros(0, np.int64)
        return train, empty, empty
    train, rest = train_test_split(
        rows, train_size=n_train, test_size=rest_size, random_state=seed
    )
    if n_val == 0 or n_test == 0:
        return (train, rest, rest[:0]) if n_test == 0 else (train, rest[:0], rest)
    val, test = train_test_split(
        rest, train_size=n_val, test_size=n_test, random_state=seed + 1
    )
    return train, val, test


def standardize_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and population std of `x_train`; constant columns get 1.

    The same statistics as scikit-learn's `StandardScaler` fitted on `x_train`.
    """
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    scale[np.ptp(x_train, axis=0) == 0] = 1.0
    return mean, scale
