"""Small real data sets bundled with scikit-learn: the offline defaults."""

from __future__ import annotations

import numpy as np

from accjax._src import extras
from accjax._src.datasets.pool import Pool


def breast_cancer_pool() -> Pool:
    """Wisconsin diagnostic breast cancer: 569 rows, 30 features.

    Labels as scikit-learn gives them: 0 malignant, 1 benign.
    """
    sklearn = extras.require("sklearn", "the bundled data sets")
    datasets = extras.require("sklearn.datasets", "the bundled data sets")
    data = datasets.load_breast_cancer()
    info = {
        "source": f"sklearn.datasets.load_breast_cancer (scikit-learn "
        f"{sklearn.__version__})",
        "files": [],
        "class_names": tuple(data.target_names.tolist()),
        "feature_names": tuple(data.feature_names.tolist()),
        "subset": None,
    }
    return Pool(data.data.astype(np.float64), data.target.astype(np.int64), 1.0, 2,
                info)  # fmt: skip


def digits_pool() -> Pool:
    """scikit-learn's 8x8 digits, 1 (label 0) vs 7 (label 1): 361 rows.

    Ones first, then sevens, each in file order (as the MNIST pool). Pixels are
    0..16 and are divided by 16 so raw features lie in [0, 1], as MNIST's do.
    """
    sklearn = extras.require("sklearn", "the bundled data sets")
    datasets = extras.require("sklearn.datasets", "the bundled data sets")
    data = datasets.load_digits()
    ones = np.flatnonzero(data.target == 1)
    sevens = np.flatnonzero(data.target == 7)
    rows = np.concatenate([ones, sevens])
    y = np.concatenate([np.zeros(ones.size), np.ones(sevens.size)])
    info = {
        "source": f"sklearn.datasets.load_digits, digits 1 and 7 (scikit-learn "
        f"{sklearn.__version__})",
        "files": [],
        "class_names": ("digit 1", "digit 7"),
        "image_shape": (8, 8, 1),
        "image_layout": "HWC",
        "subset": None,
    }
    return Pool(data.data[rows].astype(np.float64), y.astype(np.int64), 16.0, 2, info)
