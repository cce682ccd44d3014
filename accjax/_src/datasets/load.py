"""`load`: a data set's reference train/val/test splits, standardised."""

from __future__ import annotations

import copy
import numbers
import os
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import numpy as np

from accjax._src.datasets import (
    adult,
    bundled,
    cifar,
    corrupt,
    mnist,
    newsgroups,
    paths,
)
from accjax._src.datasets import (
    split as _split,
)
from accjax._src.datasets.pool import Pool, raw_features


class Splits(NamedTuple):
    """A data set split for one seed.

    Attributes:
      train: `(x, y)`; x float32 `(n_train, num_features)`, y float32 0/1
        (binary) or int32 class ids (multi-class).
      val: `(x, y)` with `n_val` rows.
      test: `(x, y)` with `n_test` rows.
      info: metadata (see `load`).
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    info: dict


class _Dataset(NamedTuple):
    pool_fn: Callable[[object], Pool]  # data_dir -> Pool
    noise_kind: str  # "gaussian" or "set_to_one"
    folder: str | None  # key of `paths.FOLDERS`; None for bundled data


_DATASETS: dict[str, _Dataset] = {
    "adult": _Dataset(adult.load_pool, "gaussian", "adult"),
    "news20": _Dataset(newsgroups.load_pool, "set_to_one", "news20"),
    "mnist": _Dataset(partial(mnist.load_pool, binary=True), "gaussian", "mnist"),
    "mnist10": _Dataset(partial(mnist.load_pool, binary=False), "gaussian", "mnist"),
    "cifar10": _Dataset(cifar.load_pool, "gaussian", "cifar10"),
    "breast_cancer": _Dataset(lambda _: bundled.breast_cancer_pool(), "gaussian", None),
    "digits": _Dataset(lambda _: bundled.digits_pool(), "gaussian", None),
}
DATASETS: tuple[str, ...] = tuple(_DATASETS)

# Parsed pools, keyed by name and the (path, size, mtime) of every input file, so
# that loading many seeds parses once and a changed file is parsed again.
_POOLS: dict[tuple, Pool] = {}


def file_state(name: str, data_dir) -> tuple:
    if _DATASETS[name].folder is None:
        return ()
    folder, _ = paths.dataset_folder(_DATASETS[name].folder, data_dir)
    if not folder.is_dir():
        return (str(folder),)
    state = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            st = entry.stat()
            state.append((entry.name, st.st_size, st.st_mtime_ns))
    return (os.path.realpath(folder), tuple(state))


def load_pool(name: str, data_dir=None) -> Pool:
    """All rows of data set `name`, parsed once per process and file state."""
    check_name(name)
    return _cached(
        (name, file_state(name, data_dir)), _DATASETS[name].pool_fn, data_dir
    )


def _cached(key: tuple, build, data_dir) -> Pool:
    """`build(data_dir)`, parsed once per key and made read-only."""
    if key not in _POOLS:
        pool = build(data_dir)
        pool.x.flags.writeable = False  # shared by every later `load`
        pool.y.flags.writeable = False
        _POOLS[key] = pool
    return _POOLS[key]


def check_name(name) -> None:
    """Raises ValueError for an unknown data set name."""
    if name not in _DATASETS:
        raise ValueError(
            f"`name` must be one of {', '.join(map(repr, DATASETS))}; got {name!r}."
        )


def _check_options(name, pool, seed, feature_noise, label_noise) -> None:
    if not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32 - 1:
        raise ValueError(f"`seed` must be an int in [0, 2**32 - 2]; got {seed!r}.")
    limit = 1.0 if _DATASETS[name].noise_kind == "set_to_one" else np.inf
    if not isinstance(feature_noise, numbers.Real) or not (0 <= feature_noise <= limit):
        raise ValueError(
            f"`feature_noise` must be a number >= 0"
            f"{' and <= 1 (a fraction of the vocabulary)' if limit == 1 else ''} "
            f"for {name!r}; got {feature_noise!r}."
        )
    if not isinstance(label_noise, numbers.Real) or not 0 <= label_noise <= 1:
        raise ValueError(
            f"`label_noise` must be a fraction in [0, 1]; got {label_noise!r}."
        )


OFFICIAL = ("mnist", "mnist10", "cifar10")


def _official_pools(name: str, data_dir) -> tuple[Pool, Pool]:
    """The official training set and the official test set, as two pools."""
    if name == "cifar10":
        pool = load_pool(name, data_dir)
        counts = pool.info["records_per_file"]
        num_train = sum(v for k, v in counts.items() if k.startswith("data_batch"))
        return tuple(
            Pool(
                pool.x[rows], pool.y[rows], pool.x_divisor, pool.num_classes, pool.info
            )
            for rows in (slice(0, num_train), slice(num_train, None))
        )
    key = (name, "official-test", file_state(name, data_dir))
    test_fn = partial(mnist.load_pool, binary=name == "mnist", part="test")
    return load_pool(name, data_dir), _cached(key, test_fn, data_dir)


def check_count(what: str, value, available: int, *, allow_none: bool) -> int:
    if value is None and allow_none:
        return available
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or not (0 <= value <= available)
    ):
        raise ValueError(
            f"`{what}` must be an int in [0, {available}]"
            f"{' or None (all)' if allow_none else ''}; got {value!r}."
        )
    return int(value)


def _official_rows(name, train_pool, test_pool, n_train, n_val, n_test, seed):
    """Rows of the official training set for train and val, and of the test set:
    val = the first n_val of RandomState(seed).permutation(n_official_train),
    train = the rest in file order (the first n_train of them), test = the first
    n_test of the official test set in file order."""
    available = train_pool.y.shape[0]
    n_val = check_count("n_val", n_val, available - 1, allow_none=False)
    n_train = check_count("n_train", n_train, available - n_val, allow_none=True)
    n_test = check_count("n_test", n_test, test_pool.y.shape[0], allow_none=True)
    if n_train < 1:
        raise ValueError(f"`n_train` must be >= 1 for {name!r}; got {n_train}.")
    order = np.random.RandomState(seed).permutation(available)
    val = order[:n_val]
    train = np.sort(order[n_val:])[:n_train]
    return train, val, np.arange(n_test), (n_train, n_val, n_test)


def _as_images(x: np.ndarray, info: dict) -> np.ndarray:
    """`(n, num_features)` rows as HWC images `(n, height, width, channels)`."""
    shape = info.get("image_shape")
    if shape is None:
        raise ValueError(
            f"`images=True` needs an image data set (mnist, mnist10, cifar10); "
            f"{info['name']!r} has no image shape."
        )
    x = x.reshape((x.shape[0], *shape))
    return x.transpose(0, 2, 3, 1) if info.get("image_layout") == "CHW" else x


def _corrupt_train(name, x, y, seed, feature_noise, label_noise, num_classes):
    if feature_noise > 0:
        if _DATASETS[name].noise_kind == "set_to_one":
            x = corrupt.set_to_one(x, feature_noise, seed)
        else:
            x = corrupt.gaussian_noise(x, feature_noise, seed)
    flipped = np.zeros(0, np.int64)
    if label_noise > 0:
        y, flipped = corrupt.flip_labels(y, label_noise, seed, num_classes)
    return x, y, flipped


def load(
    name: str,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    feature_noise: float = 0.0,
    label_noise: float = 0.0,
    split: str = "reference",
    images: bool = False,
) -> Splits:
    """A data set's train/val/test splits, as the reference experiments draw them.

    The pool (every row of the data set, see `docs/data.md`) is split with
    `train_test_split(train_size=n_train, test_size=n_val + n_test,
    random_state=seed)` and the remainder with `random_state=seed + 1`. The
    corruptions are then applied to the training rows only, drawn once from
    `seed`. Last, every part is standardised with the mean and std of the
    (corrupted) training features; constant columns are divided by 1.

    Args:
      name: one of `adult`, `news20` (ibm-pc vs mac), `mnist` (digit 1 -> 0,
        digit 7 -> 1), `mnist10`, `cifar10`, `breast_cancer`, `digits` (1 vs 7).
        The last two are bundled with scikit-learn and need no files.
      n_train: number of training rows (>= 1); with `split="official"`, None
        means every official training row not drawn for validation.
      n_val: number of validation rows (>= 0).
      n_test: number of test rows (>= 0); with `split="official"`, None means
        the whole official test set.
      seed: the split seed, also the seed of the corruptions.
      data_dir: the data directory; None means `$ACCJAX_DATA`, else the
        per-user cache (`resolve_data_dir`).
      feature_noise: sigma of Gaussian noise `N(0, sigma^2)` added to the raw
        training features (pixels in [0, 1]); for `news20`, the fraction of the
        vocabulary set to 1 in every training document.
      label_noise: fraction r of training labels flipped, `int(r * n_train)`
        rows chosen with `np.random.RandomState(seed)`; a binary label becomes
        1 - y, a multi-class one another class drawn uniformly (seeded with
        `RandomState([seed, 2])`).
      split: "reference" (the reference scripts' draw from the pool, above) or
        "official" (mnist, mnist10, cifar10): val = `n_val` rows of the official
        training set, `RandomState(seed).permutation(...)[:n_val]`; train = the
        other official training rows in file order (the first `n_train`); test
        = the first `n_test` rows of the official test set. `pool_indices` then
        index the official training set (train, val) and test set (test). The
        CIFAR-10 split is only as complete as the files present (`subset`).
      images: True for images `(n, height, width, channels)` (HWC; CIFAR-10's
        CHW records are transposed) instead of flat rows; image sets only.

    Returns:
      `Splits` with float32 features. `info` holds `name`, `num_features`,
      `num_classes`, `class_names`, `pool_size`, `pool_indices` (rows of the
      pool in each part), `files` (path, bytes, sha256 of each file read),
      `source`, `subset` (a note, or None for a full data set),
      `feature_noise`, `label_noise`, `corrupted` (what was changed) and
      `flipped` (sorted indices into the train split of the flipped labels),
      `mean`/`scale` of the standardisation, and per data set extras
      (`feature_names`, `image_shape`, `image_layout`).

    Raises:
      FileNotFoundError: if a data file is missing (the message names the file,
        the directory searched and where to download it).
      ValueError: for an unknown name, sizes that do not fit the pool, bad noise
        levels, label noise on a multi-class set, or a corrupt file.
    """
    check_name(name)
    if split not in ("reference", "official"):
        raise ValueError(f"`split` must be 'reference' or 'official'; got {split!r}.")
    if split == "official" and name not in OFFICIAL:
        raise ValueError(
            f"`split='official'` is defined for {', '.join(OFFICIAL)}; got {name!r} "
            "(use split='reference')."
        )
    if split == "official":
        pool, test_pool = _official_pools(name, data_dir)
        _check_options(name, pool, seed, feature_noise, label_noise)
        rows = _official_rows(name, pool, test_pool, n_train, n_val, n_test, int(seed))
        *rows, (n_train, n_val, n_test) = rows
        pools = (pool, pool, test_pool)
        pool_size = pool.y.shape[0] + test_pool.y.shape[0]
    else:
        sizes = dict(n_train=n_train, n_val=n_val, n_test=n_test)
        missing = [k for k, v in sizes.items() if v is None]
        if missing:
            raise TypeError(
                f"load({name!r}) with split='reference' needs n_train, n_val and "
                f"n_test; missing {', '.join(missing)}."
            )
        pool = load_pool(name, data_dir)
        pool_size = pool.y.shape[0]
        _split.check_sizes(name, pool_size, n_train, n_val, n_test)
        _check_options(name, pool, seed, feature_noise, label_noise)
        rows = _split.split_indices(pool_size, n_train, n_val, n_test, int(seed))
        pools = (pool, pool, pool)
    x_train, y_train, flipped = _corrupt_train(
        name, raw_features(pool, rows[0]), pool.y[rows[0]], int(seed),
        feature_noise, label_noise, pool.num_classes,
    )  # fmt: skip
    mean, scale = _split.standardize_stats(x_train)
    y_dtype = np.float32 if pool.num_classes == 2 else np.int32
    raws = [(x_train, y_train)] + [
        (raw_features(p, r), p.y[r]) for p, r in zip(pools[1:], rows[1:], strict=True)
    ]
    parts = [
        (((x - mean) / scale).astype(np.float32), y.astype(y_dtype)) for x, y in raws
    ]
    if images:
        parts = [(_as_images(x, dict(pool.info, name=name)), y) for x, y in parts]
    corrupted = ("train features",) if feature_noise > 0 else ()
    corrupted += ("train labels",) if flipped.size else ()
    info = copy.deepcopy(pool.info)
    info.update(
        name=name,
        num_features=int(pool.x.shape[1]),
        num_classes=pool.num_classes,
        pool_size=pool_size,
        pool_class_counts=np.bincount(pool.y, minlength=pool.num_classes).tolist(),
        pool_indices=dict(zip(("train", "val", "test"), rows, strict=True)),
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        seed=int(seed),
        split=split,
        feature_noise=float(feature_noise),
        feature_noise_kind=_DATASETS[name].noise_kind,
        label_noise=float(label_noise),
        corrupted=corrupted,
        flipped=flipped,
        mean=mean,
        scale=scale,
    )
    return Splits(parts[0], parts[1], parts[2], info)
