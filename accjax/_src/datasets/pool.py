"""`Pool`: all rows of a data set before splitting, as the loaders return them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Pool(NamedTuple):
    """Every row a data set's splits are drawn from.

    Attributes:
      x: `(pool_size, num_features)` raw features; uint8 pixels or float64.
        The raw feature value is `x / x_divisor` (pixels in [0, 1]).
      y: int64 `(pool_size,)` class ids in `range(num_classes)`.
      x_divisor: 255.0 for pixel data, else 1.0.
      num_classes: 2 for the binary tasks.
      info: metadata: `source`, `files` (path, bytes, sha256), `class_names`,
        optional `feature_names`, `image_shape`, `subset`.
    """

    x: np.ndarray
    y: np.ndarray
    x_divisor: float
    num_classes: int
    info: dict


def raw_features(pool: Pool, rows: np.ndarray) -> np.ndarray:
    """float64 raw features of `rows` (pixels scaled to [0, 1])."""
    x = pool.x[rows].astype(np.float64)
    if pool.x_divisor != 1.0:
        x /= pool.x_divisor
    return x
