"""The known data files: sizes, checksums, download locations; locate and verify.

A file is accepted only if its size and digest equal one of its known variants
(for example the official 20 Newsgroups tarball or the repacked copy in
shared/data). Verification runs once per (path, size, mtime) in a process.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from accjax._src.datasets import paths


class Variant(NamedTuple):
    """One accepted version of a file; None means "not checked"."""

    size: int | None
    sha256: str | None = None
    md5: str | None = None


class FileSpec(NamedTuple):
    """A data file: its name in the data set's folder, variants and sources."""

    dataset: str
    filename: str
    variants: tuple[Variant, ...]
    urls: tuple[str, ...]


_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
NEWS20_URLS = (
    "https://ndownloader.figshare.com/files/5975967",
    "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz",
)
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR_RECORD = 3073
CIFAR_BATCH_BYTES = 10000 * CIFAR_RECORD


def _mnist(filename: str, size: int, md5: str, sha256: str) -> FileSpec:
    urls = tuple(base + filename for base in _MNIST_MIRRORS)
    return FileSpec("mnist", filename, (Variant(size, sha256, md5),), urls)


def _cifar(filename: str, size: int, **digest: str) -> FileSpec:
    return FileSpec("cifar10", filename, (Variant(size, **digest),), (CIFAR_URL,))


SPECS: dict[tuple[str, str], FileSpec] = {
    (s.dataset, s.filename): s
    for s in (
        FileSpec(
            "adult",
            "adult-training.csv",
            (
                Variant(
                    3974305,
                    "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
                ),
            ),
            (_UCI + "adult.data",),
        ),
        FileSpec(
            "adult",
            "adult-test.csv",
            (
                Variant(
                    2003153,
                    "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
                ),
            ),
            (_UCI + "adult.test",),
        ),
        _mnist(
            "train-images-idx3-ubyte.gz",
            9912422,
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        _mnist(
            "train-labels-idx1-ubyte.gz",
            28881,
            "d53e105ee54ea40749a09fcbcd1e9432",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        _mnist(
            "t10k-images-idx3-ubyte.gz",
            1648877,
            "9fb629c4189551a2d022fa330f9573f3",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        _mnist(
            "t10k-labels-idx1-ubyte.gz",
            4542,
            "ec29112dd5afa0611ce80d1b7f02629c",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
        FileSpec(
            "news20",
            "20news-bydate.tar.gz",
            (
                # The repacked, deterministic tarball of shared/data.
                Variant(
                    14387951,
                    "f934583ecd65eae06e4d23af0fcb72ade56b76bad2279c0aed7d520aa6527b02",
                ),
                # The official archive (the digest scikit-learn checks).
                Variant(
                    None,
                    "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610",
                ),
            ),
            NEWS20_URLS,
        ),
        _cifar(
            "data_batch_1.bin",
            CIFAR_BATCH_BYTES,
            sha256="cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
        ),
        _cifar(
            "data_batch_2.bin",
            CIFAR_BATCH_BYTES,
            sha256="a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
        ),
        _cifar(
            "data_batch_3.bin",
            CIFAR_BATCH_BYTES,
            sha256="bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
        ),
        _cifar(
            "data_batch_4.bin",
            CIFAR_BATCH_BYTES,
            sha256="014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
        ),
        _cifar(
            "data_batch_5.bin",
            CIFAR_BATCH_BYTES,
            sha256="755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
        ),
        _cifar(
            "test_batch.bin",
            CIFAR_BATCH_BYTES,
            md5="803d5f7f4d78ea53de84dbe85f74fb6d",
        ),
        _cifar(
            "test_batch_first1000.bin",
            1000 * CIFAR_RECORD,
            sha256="8314c96d7cd65618193bab23acdd5d4c4af15bf6dd00a1781d55beedf3be1ef5",
        ),
    )
}

# (realpath, size, mtime_ns) -> digest record, for files that passed.
_VERIFIED: dict[tuple[str, int, int], dict] = {}


def fetch_hint(dataset: str) -> str:
    """How to obtain a data set's files, for error messages."""
    return f"run `accjax.datasets.fetch({dataset!r})` (needs network)"


def locate(dataset: str, filename: str, data_dir) -> Path:
    """The path of a known file; FileNotFoundError that says how to get it."""
    folder, origin = paths.dataset_folder(dataset, data_dir)
    path = folder / filename
    if path.is_file():
        return path
    spec = SPECS[(dataset, filename)]
    raise FileNotFoundError(
        f"{dataset}: file `{filename}` not found in {folder} (data directory from "
        f"{origin}). Download from: {spec.urls[0]}. To fix: "
        f"{fetch_hint(dataset)}, "
        f"or put the file in `{folder}`, or set ${paths.ENV_VAR} (or pass "
        f"`data_dir=`) to a directory with `{paths.FOLDERS[dataset]}/{filename}`."
    )


def _digests(path: Path, want_md5: bool) -> tuple[str, str | None]:
    sha, md5 = hashlib.sha256(), hashlib.md5() if want_md5 else None
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            if md5 is not None:
                md5.update(chunk)
    return sha.hexdigest(), None if md5 is None else md5.hexdigest()


def matches(spec: FileSpec, size: int, sha256: str, md5: str | None) -> bool:
    """Whether (size, digests) equal one of the spec's variants."""
    for v in spec.variants:
        if v.size is not None and v.size != size:
            continue
        if v.sha256 is not None and v.sha256 != sha256:
            continue
        if v.md5 is not None and v.md5 != md5:
            continue
        return True
    return False


def describe(spec: FileSpec) -> str:
    """The accepted variants, in words."""
    parts = []
    for v in spec.variants:
        bits = [f"{v.size} bytes"] if v.size is not None else []
        bits += [f"sha256 {v.sha256}"] if v.sha256 else []
        bits += [f"md5 {v.md5}"] if v.md5 else []
        parts.append(", ".join(bits))
    return " or ".join(parts)


def verify(path: Path, spec: FileSpec) -> dict:
    """Checks a file against its spec; returns `{"path", "bytes", "sha256"}`.

    Raises:
      ValueError: if the file is truncated or its digest is unknown.
    """
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return dict(_VERIFIED[key])
    sizes = {v.size for v in spec.variants}
    fix = (
        f"Delete it and {fetch_hint(spec.dataset)}, or copy a good file from "
        f"{spec.urls[0]}."
    )
    if None not in sizes and st.st_size not in sizes:
        raise ValueError(
            f"{spec.dataset}: `{path}` is truncated or corrupt: it has {st.st_size} "
            f"bytes; expected {describe(spec)}. {fix}"
        )
    want_md5 = any(v.md5 for v in spec.variants)
    sha256, md5 = _digests(path, want_md5)
    if not matches(spec, st.st_size, sha256, md5):
        raise ValueError(
            f"{spec.dataset}: `{path}` is corrupt or not the expected file: got "
            f"{st.st_size} bytes, sha256 {sha256}; expected {describe(spec)}. {fix}"
        )
    record = {"path": str(path), "bytes": st.st_size, "sha256": sha256}
    _VERIFIED[key] = record
    return dict(record)


def open_verified(dataset: str, filename: str, data_dir) -> tuple[Path, dict]:
    """Locates and verifies one known file."""
    path = locate(dataset, filename, data_dir)
    return path, verify(path, SPECS[(dataset, filename)])
