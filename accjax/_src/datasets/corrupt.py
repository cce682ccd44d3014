"""Seeded corruptions of the training split, drawn once inside `load`.

The reference scripts draw feature noise from NumPy's unseeded global generator,
separately in training and in each influence run (paper-notes 6.5); here it is
seeded, so every consumer of `load(..., seed=s)` sees the same noisy data.
"""

from __future__ import annotations

import numpy as np


def _feature_rng(seed: int) -> np.random.RandomState:
    # A stream apart from the label flips, which use RandomState(seed).
    return np.random.RandomState([seed, 1])


def gaussian_noise(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """`x + N(0, sigma^2)` elementwise, on raw float64 features."""
    if sigma == 0:
        return x
    return x + _feature_rng(seed).normal(0.0, sigma, size=x.shape)


def set_to_one(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """For every row, `int(sigma * num_features)` random features set to 1.

    The reference's text corruption (`apply_input_corruption_nlp`): the indices
    of each row are drawn without replacement.
    """
    num_features = x.shape[1]
    count = int(sigma * num_features)
    if count <= 0:
        return x
    rng = _feature_rng(seed)
    out = x.copy()
    for row in out:
        row[rng.choice(num_features, count, replace=False)] = 1.0
    return out


def flip_labels(
    y: np.ndarray, rate: float, seed: int, num_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Flips the labels of `int(rate * len(y))` rows.

    The rows are `RandomState(seed).choice(n, k, replace=False)`, the reference's
    `apply_label_noise` draw exactly. Binary labels become `1 - y`; with more
    classes, a flipped label becomes another class drawn uniformly:
    `(y + RandomState([seed, 2]).randint(1, num_classes, k)) % num_classes`,
    the offsets in the order of the drawn rows.

    Returns:
      The new labels and the sorted int64 indices of the flipped rows.
    """
    count = int(rate * y.shape[0])
    if count <= 0:
        return y, np.zeros(0, np.int64)
    flipped = np.random.RandomState(seed).choice(y.shape[0], count, replace=False)
    out = y.copy()
    if num_classes == 2:
        out[flipped] = 1 - out[flipped]
    else:
        offsets = np.random.RandomState([seed, 2]).randint(1, num_classes, count)
        out[flipped] = (out[flipped] + offsets) % num_classes
    return out, np.sort(flipped).astype(np.int64)
