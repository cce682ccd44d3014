"""MNIST from the official IDX `.gz` files: full 10 classes or 1-vs-7."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from accjax._src.datasets import files
from accjax._src.datasets.pool import Pool

_MAGIC = {1: 2049, 3: 2051}  # number of dimensions -> IDX magic (ubyte data)
_PARTS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parses a gzip-compressed IDX file of unsigned bytes.

    Args:
      path: the `.gz` file.
      ndim: 3 for images `(n, rows, cols)`, 1 for labels `(n,)`.

    Raises:
      ValueError: if the gzip stream is broken, the magic number is not the one
        for `ndim` unsigned-byte dimensions, or the size disagrees with the header.
    """
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"mnist: `{path}` is not a complete gzip file ({err}). Delete it and "
            f"{files.fetch_hint('mnist')}."
        ) from err
    header = 4 + 4 * ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != _MAGIC[ndim]:
        raise ValueError(
            f"mnist: `{path}` has IDX magic number {magic}; expected {_MAGIC[ndim]} "
            f"(unsigned bytes, {ndim} dimensions). Is it the right file?"
        )
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(
            f"mnist: `{path}` holds {len(data)} bytes after decompression; its "
            f"header {dims} needs {expected}. The file is truncated or corrupt."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_part(part: str, data_dir) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Images `(n, 28, 28)` uint8, labels `(n,)` uint8 and file records."""
    image_name, label_name = _PARTS[part]
    image_path, image_rec = files.open_verified("mnist", image_name, data_dir)
    label_path, label_rec = files.open_verified("mnist", label_name, data_dir)
    images = read_idx(image_path, 3)
    labels = read_idx(label_path, 1)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise ValueError(
            f"mnist: {image_name} has shape {images.shape} but {label_name} has "
            f"{labels.shape[0]} labels; expected (n, 28, 28) and n labels."
        )
    if labels.max(initial=0) > 9:
        raise ValueError(f"mnist: {label_name} has a label > 9; the file is corrupt.")
    return images, labels, [image_rec, label_rec]


def load_pool(data_dir, *, binary: bool, part: str = "train") -> Pool:
    """The pool: the official 60,000-image training file (`part="test"`: the
    official 10,000-image test file).

    With `binary=True`, only digits 1 (label 0) and 7 (label 1), ones first then
    sevens, each in file order, as the reference `MnistModule` stacks them.
    """
    images, labels, records = read_part(part, data_dir)
    x = images.reshape(images.shape[0], -1)
    size = "60,000" if part == "train" else "10,000"
    info = {
        "source": f"MNIST, official IDX {part}ing file ({size} images)",
        "files": records,
        "image_shape": (28, 28, 1),
        "image_layout": "HWC",
        "subset": None,
    }
    if binary:
        ones, sevens = np.flatnonzero(labels == 1), np.flatnonzero(labels == 7)
        rows = np.concatenate([ones, sevens])
        y = np.concatenate([np.zeros(ones.size), np.ones(sevens.size)])
        info["class_names"] = ("digit 1", "digit 7")
        return Pool(x[rows], y.astype(np.int64), 255.0, 2, info)
    info["class_names"] = tuple(f"digit {d}" for d in range(10))
    return Pool(x, labels.astype(np.int64), 255.0, 10, info)
