"""CIFAR-10 from the binary batches (`cifar-10-batches-bin`), whatever is present.

Pool: the training batches present (`data_batch_1.bin` ... `data_batch_5.bin`,
in order), then the test batch (`test_batch.bin`, else the 1,000-record
`test_batch_first1000.bin` of shared/data). Rows are the 3,072 bytes of a
record, channel-major (R plane, G plane, B plane, each 32x32 row-major).
"""

from __future__ import annotations

import numpy as np

from accjax._src.datasets import files, paths
from accjax._src.datasets.pool import Pool

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
               "horse", "ship", "truck")  # fmt: skip
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin", "test_batch_first1000.bin")


def read_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """Images `(n, 3072)` uint8 and labels `(n,)` uint8 of one binary batch.

    Raises:
      ValueError: if the size is not a multiple of 3,073 bytes or a label > 9.
    """
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0 or data.size % files.CIFAR_RECORD:
        raise ValueError(
            f"cifar10: `{path}` has {data.size} bytes, not a positive multiple of "
            f"{files.CIFAR_RECORD} (one label byte + 3072 pixels per record). The "
            f"file is truncated or corrupt."
        )
    records = data.reshape(-1, files.CIFAR_RECORD)
    if records[:, 0].max() > 9:
        raise ValueError(f"cifar10: `{path}` has a label > 9; the file is corrupt.")
    return records[:, 1:], records[:, 0]


def present(data_dir) -> tuple[list[str], str | None]:
    """The training batch files present, and the test batch file (or None)."""
    folder, _ = paths.dataset_folder("cifar10", data_dir)
    train = [name for name in TRAIN_FILES if (folder / name).is_file()]
    test = next((name for name in TEST_FILES if (folder / name).is_file()), None)
    return train, test


def load_pool(data_dir) -> Pool:
    """The training batches present, then the test batch present."""
    train, test = present(data_dir)
    if not train:
        files.locate("cifar10", TRAIN_FILES[0], data_dir)  # raises, with the fix
    images, labels, records, counts = [], [], [], {}
    for name in train + ([test] if test else []):
        path, record = files.open_verified("cifar10", name, data_dir)
        x, y = read_batch(path)
        images.append(x)
        labels.append(y)
        records.append(record)
        counts[name] = int(y.size)
    num_train = sum(counts[name] for name in train)
    missing = [name for name in TRAIN_FILES if name not in train]
    subset = None
    if missing or test != "test_batch.bin":
        subset = (
            f"subset of CIFAR-10: {num_train} of 50000 training images "
            f"(missing: {', '.join(missing) or 'none'}), "
            f"{counts.get(test, 0)} of 10000 test images"
        )
    info = {
        "source": "CIFAR-10 binary version (cifar-10-batches-bin)",
        "files": records,
        "records_per_file": counts,
        "class_names": CLASS_NAMES,
        "image_shape": (3, 32, 32),
        "image_layout": "CHW",
        "subset": subset,
    }
    y = np.concatenate(labels).astype(np.int64)
    return Pool(np.concatenate(images), y, 255.0, 10, info)
