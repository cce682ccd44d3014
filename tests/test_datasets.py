"""Tests for accjax.datasets on the real data files (../shared/data).

The data directory comes from $ACCJAX_DATA (the Makefile sets it), else
`../shared/data` next to the repository. Without either the tests fail: they
never skip silently.
"""

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import accjax.datasets as ds
from accjax._src.datasets import cifar, files, mnist, newsgroups
from accjax._src.datasets import fetch as fetch_module
from accjax._src.datasets import load as load_module

REPO = Path(__file__).resolve().parents[1]

# Pool sizes, class counts and feature counts, from the data READMEs.
POOLS = {
    "adult": (48842, [24720 + 12435, 7841 + 3846], 62),
    "news20": (1945, [590 + 392, 578 + 385], 4752),
    "mnist": (13007, [6742, 6265], 784),
    "mnist10": (
        60000,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        784,
    ),
    "cifar10": (
        21000,
        [
            1005 + 984 + 103,
            974 + 1007 + 89,
            1032 + 1010 + 100,
            1016 + 995 + 103,
            999 + 1010 + 90,
            937 + 988 + 86,
            1030 + 1008 + 112,
            1001 + 1026 + 102,
            1025 + 987 + 106,
            981 + 985 + 109,
        ],
        3072,
    ),  # fmt: skip
    "breast_cancer": (569, [212, 357], 30),
    "digits": (361, [182, 179], 64),
}
BINARY = ["adult", "news20", "mnist", "breast_cancer", "digits"]


@pytest.fixture(scope="module")
def data_dir() -> str:
    env = os.environ.get("ACCJAX_DATA")
    if env:
        return env
    fallback = REPO.parent / "shared" / "data"
    if fallback.is_dir():
        return str(fallback)
    pytest.fail(
        "No data directory: set ACCJAX_DATA to the folder holding adult/, mnist/, "
        f"20newsgroups/ and cifar10/ (or create {fallback}). `make test` sets it."
    )


def _load(data_dir, name, n=(100, 50, 50), **kw):
    return ds.load(name, n_train=n[0], n_val=n[1], n_test=n[2], data_dir=data_dir, **kw)


def _raw(part, info):
    """Undoes the standardisation (float64)."""
    return part[0].astype(np.float64) * info["scale"] + info["mean"]


def test_public_api():
    assert sorted(ds.__all__) == [
        "DATASETS", "Splits", "fetch", "load", "resolve_data_dir",
    ]  # fmt: skip
    assert set(ds.DATASETS) == set(POOLS)


@pytest.mark.parametrize("name", list(POOLS))
def test_pool_counts_and_split(data_dir, name):
    pool_size, class_counts, num_features = POOLS[name]
    s = _load(data_dir, name)
    info = s.info
    assert info["pool_size"] == pool_size
    assert info["pool_class_counts"] == class_counts
    assert info["num_features"] == num_features
    assert info["num_classes"] == len(class_counts)
    for (x, y), n in zip(s[:3], (100, 50, 50), strict=True):
        assert x.shape == (n, num_features) and x.dtype == np.float32
        assert y.shape == (n,)
        if len(class_counts) == 2:
            assert y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
        else:
            assert y.dtype == np.int32 and y.min() >= 0 and y.max() < 10
    x = s.train[0].astype(np.float64)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
    std = x.std(0)
    assert np.all((np.abs(std - 1) < 1e-4) | (std < 1e-6))
    rows = info["pool_indices"]
    every = np.concatenate([rows["train"], rows["val"], rows["test"]])
    assert np.unique(every).size == 200 and every.max() < pool_size
    assert info["flipped"].size == 0 and info["corrupted"] == ()
    for record in info["files"]:
        assert Path(record["path"]).is_file() and len(record["sha256"]) == 64


@pytest.mark.parametrize("name", ["adult", "mnist", "news20", "digits"])
def test_matches_reference_pipeline(data_dir, name):
    # The reference `DataModule.fetch` run on our pool: scikit-learn's split,
    # the seeded label flip, StandardScaler.
    seed, n = 5, 120
    s = _load(data_dir, name, (n, n, n), seed=seed, label_noise=0.1)
    pool = load_module.load_pool(name, data_dir)
    x, y = pool.x.astype(np.float64) / pool.x_divisor, pool.y
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, train_size=n, test_size=2 * n, random_state=seed
    )
    x_va, x_te, y_va, y_te = train_test_split(
        x_va, y_va, train_size=n, test_size=n, random_state=seed + 1
    )
    np.random.seed(seed)
    flip = np.random.choice(n, int(n * 0.1), replace=False)
    y_tr = y_tr.copy()
    y_tr[flip] = 1 - y_tr[flip]
    scaler = StandardScaler().fit(x_tr)
    for (xs, ys), xr, yr in zip(
        s[:3], (x_tr, x_va, x_te), (y_tr, y_va, y_te), strict=True
    ):
        np.testing.assert_allclose(xs, scaler.transform(xr), rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(ys, yr)
    np.testing.assert_array_equal(s.info["flipped"], np.sort(flip))


def test_news20_matches_scikit_learn_order(data_dir):
    # Pinned from a run of sklearn 1.9.1's fetch_20newsgroups + TfidfVectorizer
    # on the same archive (equal arrays): the documents' order and features.
    pool = load_module.load_pool("news20", data_dir)
    assert pool.y[:12].tolist() == [0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    assert pool.y[1168:1180].tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0]
    np.testing.assert_allclose(pool.x[:3].sum(1), [8.13183052, 8.43842644,
                                                   1.47368599])  # fmt: skip
    assert pool.info["subset_sizes"] == {"train": 1168, "test": 777}
    assert pool.info["feature_names"][:3] == ("00", "000", "01")


def test_strip_helpers_match_scikit_learn():
    # scikit-learn is a dependency; if this private module moves, fail loudly.
    from sklearn.datasets import _twenty_newsgroups as skl

    text = (
        "From: a@b\nSubject: x\n\nIn article <1@c> d writes:\n> quoted\n"
        "| also\nbody line\n\n--\nsig\n"
    )
    assert newsgroups.strip_header(text) == skl.strip_newsgroup_header(text)
    assert newsgroups.strip_footer(text) == skl.strip_newsgroup_footer(text)
    assert newsgroups.strip_quoting(text) == skl.strip_newsgroup_quoting(text)


def test_raw_files_match_readmes(data_dir):
    images, labels, _ = mnist.read_part("test", data_dir)
    assert images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    folder = Path(data_dir) / "cifar10" / "cifar-10-batches-bin"
    firsts = {
        "data_batch_1.bin": [6, 9, 9, 4, 1, 1, 2, 7, 8, 3],
        "data_batch_2.bin": [1, 6, 6, 8, 8, 3, 4, 6, 0, 6],
        "test_batch_first1000.bin": [3, 8, 8, 0, 6, 6, 1, 6, 3, 1],
    }
    for name, first in firsts.items():
        assert cifar.read_batch(folder / name)[1][:10].tolist() == first
    info = _load(data_dir, "cifar10").info
    assert "subset" in info["subset"] and "data_batch_3.bin" in info["subset"]
    assert info["records_per_file"]["test_batch_first1000.bin"] == 1000
    assert info["image_shape"] == (3, 32, 32)
    adult = _load(data_dir, "adult").info
    assert len(adult["feature_names"]) == 62
    # pre-copy-on-write pandas semantics: 'Married-AF-spouse' merged (6 groups),
    # missing countries counted as US.
    marital = [f for f in adult["feature_names"] if f.startswith("Marital")]
    assert len(marital) == 6
    assert [f for f in adult["feature_names"] if f.startswith("Native")] == [
        "Native country_Eastern", "Native country_Poland team",
        "Native country_Poor", "Native country_US", "Native country_Western",
    ]  # fmt: skip


def test_corruption_is_seeded_and_train_only(data_dir):
    clean = _load(data_dir, "mnist", (300, 100, 100), seed=2)
    noisy = _load(
        data_dir, "mnist", (300, 100, 100), seed=2, feature_noise=0.1,
        label_noise=0.2,
    )  # fmt: skip
    again = _load(
        data_dir, "mnist", (300, 100, 100), seed=2, feature_noise=0.1,
        label_noise=0.2,
    )  # fmt: skip
    for a, b in zip(noisy[:3], again[:3], strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert noisy.info["corrupted"] == ("train features", "train labels")
    flipped = noisy.info["flipped"]
    assert flipped.size == 60 and np.unique(flipped).size == 60
    changed = np.flatnonzero(noisy.train[1] != clean.train[1])
    np.testing.assert_array_equal(changed, flipped)
    np.testing.assert_array_equal(noisy.train[1][flipped], 1 - clean.train[1][flipped])
    for part in ("val", "test"):
        np.testing.assert_array_equal(getattr(noisy, part)[1], getattr(clean, part)[1])
        np.testing.assert_allclose(
            _raw(getattr(noisy, part), noisy.info),
            _raw(getattr(clean, part), clean.info),
            atol=1e-4,
        )
    delta = _raw(noisy.train, noisy.info) - _raw(clean.train, clean.info)
    assert abs(delta.std() - 0.1) < 0.005 and abs(delta.mean()) < 0.005
    other = _load(data_dir, "mnist", (300, 100, 100), seed=3, label_noise=0.2)
    assert not np.array_equal(other.info["flipped"], flipped)


def test_news20_feature_noise_sets_ones(data_dir):
    s = _load(data_dir, "news20", (50, 20, 20), feature_noise=0.01)
    vocab = s.info["num_features"]
    raw = _raw(s.train, s.info)
    ones = np.isclose(raw, 1.0, atol=1e-4).sum(1)
    assert np.all(ones >= int(0.01 * vocab))
    with pytest.raises(ValueError, match="feature_noise"):
        _load(data_dir, "news20", feature_noise=1.5)


def test_bad_arguments(data_dir):
    with pytest.raises(ValueError, match=r"n_train \+ n_val \+ n_test.*569 rows"):
        _load(data_dir, "breast_cancer", (400, 100, 100))
    with pytest.raises(ValueError, match="`n_train` must be an int"):
        _load(data_dir, "digits", (0.5, 10, 10))
    with pytest.raises(ValueError, match="`n_val` must be an int"):
        _load(data_dir, "digits", (10, -1, 10))
    with pytest.raises(ValueError, match="`name` must be one of"):
        _load(data_dir, "imagenet")
    with pytest.raises(ValueError, match="binary"):
        _load(data_dir, "mnist10", label_noise=0.1)
    with pytest.raises(ValueError, match="label_noise"):
        _load(data_dir, "digits", label_noise=1.5)
    with pytest.raises(ValueError, match="seed"):
        _load(data_dir, "digits", seed=-1)


def test_zero_sized_parts_and_full_pool(data_dir):
    s = _load(data_dir, "digits", (361, 0, 0))
    assert s.train[0].shape == (361, 64) and s.val[0].shape == (0, 64)
    assert np.unique(s.info["pool_indices"]["train"]).size == 361
    s = _load(data_dir, "digits", (100, 0, 30))
    assert s.val[0].shape == (0, 64) and s.test[0].shape == (30, 64)


def test_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCJAX_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        ds.load("adult", n_train=10, n_val=10, n_test=10)
    message = str(err.value)
    for part in ("adult-training.csv", str(tmp_path / "adult"), "ACCJAX_DATA",
                 "https://archive.ics.uci.edu", "fetch('adult')"):  # fmt: skip
        assert part in message
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        ds.load("cifar10", n_train=10, n_val=10, n_test=10, data_dir=tmp_path)


def _copy_folder(data_dir, tmp_path, folder):
    dest = tmp_path / folder
    shutil.copytree(Path(data_dir) / folder, dest)
    for path in dest.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return dest


def test_truncated_or_corrupt_files_raise(data_dir, tmp_path):
    folder = _copy_folder(data_dir, tmp_path, "adult")
    path = folder / "adult-test.csv"
    data = path.read_bytes()
    path.write_bytes(data[:1000])
    with pytest.raises(ValueError, match="truncated or corrupt.*1000 bytes"):
        ds.load("adult", n_train=10, n_val=10, n_test=10, data_dir=tmp_path)
    path.write_bytes(data[:-5] + b"XXXXX")  # same size, other bytes
    with pytest.raises(ValueError, match="corrupt or not the expected file"):
        ds.load("adult", n_train=10, n_val=10, n_test=10, data_dir=tmp_path)


def test_parsers_reject_broken_files(data_dir, tmp_path):
    # Below the checksum layer: each parser refuses a damaged file on its own.
    src = Path(data_dir) / "mnist" / "t10k-labels-idx1-ubyte.gz"
    cut = tmp_path / "cut.gz"
    cut.write_bytes(src.read_bytes()[:2000])
    with pytest.raises(ValueError, match="not a complete gzip"):
        mnist.read_idx(cut, 1)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(gzip.decompress(src.read_bytes())[:5000]))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        mnist.read_idx(short, 1)
    with pytest.raises(ValueError, match="magic number 2049; expected 2051"):
        mnist.read_idx(src, 3)
    batch = tmp_path / "batch.bin"
    batch.write_bytes(b"\x01" * 3072)
    with pytest.raises(ValueError, match="multiple of 3073"):
        cifar.read_batch(batch)
    tar = tmp_path / "news.tar.gz"
    tar.write_bytes((Path(data_dir) / "20newsgroups" / newsgroups.ARCHIVE)
                    .read_bytes()[:100_000])  # fmt: skip
    with pytest.raises(ValueError, match="not a complete tar.gz"):
        newsgroups.read_archive(tar)


def test_verification_is_cached(data_dir, tmp_path, monkeypatch):
    folder = _copy_folder(data_dir, tmp_path, "mnist")
    path = folder / "t10k-labels-idx1-ubyte.gz"
    spec = files.SPECS[("mnist", path.name)]
    assert files.verify(path, spec)["bytes"] == 4542

    def no_hashing(*args):
        raise AssertionError("hashed again")

    monkeypatch.setattr(files, "_digests", no_hashing)
    files.verify(path, spec)  # cached: no hashing
    os.utime(path, ns=(1, 1))  # a new mtime: verified again
    with pytest.raises(AssertionError, match="hashed again"):
        files.verify(path, spec)


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ACCJAX_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert ds.resolve_data_dir() == tmp_path / "home" / ".cache" / "accjax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.resolve_data_dir() == tmp_path / "xdg" / "accjax"
    monkeypatch.setenv("ACCJAX_DATA", str(tmp_path / "env"))
    assert ds.resolve_data_dir() == tmp_path / "env"
    assert ds.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert ds.resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    # The loaders read from the resolved directory.
    with pytest.raises(
        FileNotFoundError, match=re.escape(str(tmp_path / "env" / "mnist"))
    ):
        ds.load("mnist", n_train=1, n_val=1, n_test=1)
    with pytest.raises(
        FileNotFoundError, match=re.escape(str(tmp_path / "arg" / "mnist"))
    ):
        ds.load("mnist", n_train=1, n_val=1, n_test=1, data_dir=tmp_path / "arg")


def _serve(monkeypatch, sources):
    """Replaces the download with copies of local files (or raised errors)."""
    calls = []

    def download(url, dest):
        calls.append(url)
        source = sources(url)
        if isinstance(source, Exception):
            raise source
        Path(dest).write_bytes(source)

    monkeypatch.setattr(fetch_module, "_download", download)
    return calls


def test_fetch_writes_verified_files(data_dir, tmp_path, monkeypatch):
    src = Path(data_dir) / "adult"
    by_url = {
        "adult.data": (src / "adult-training.csv").read_bytes(),
        "adult.test": (src / "adult-test.csv").read_bytes(),
    }
    calls = _serve(monkeypatch, lambda url: by_url[url.rsplit("/", 1)[1]])
    got = ds.fetch("adult", data_dir=tmp_path)
    assert sorted(p.name for p in got) == ["adult-test.csv", "adult-training.csv"]
    assert len(calls) == 2 and sorted(os.listdir(tmp_path / "adult")) == sorted(
        p.name for p in got
    )
    s = ds.load("adult", n_train=10, n_val=10, n_test=10, data_dir=tmp_path)
    assert s.info["pool_size"] == 48842
    ds.fetch("adult", data_dir=tmp_path)  # present and good: no download
    assert len(calls) == 2
    assert ds.fetch("digits", data_dir=tmp_path) == []


def test_fetch_checksum_mismatch_leaves_nothing(data_dir, tmp_path, monkeypatch):
    good = (Path(data_dir) / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    bad = good[:-1] + bytes([good[-1] ^ 1])
    calls = _serve(monkeypatch, lambda url: bad)
    with pytest.raises(OSError, match="could not download a good") as err:
        ds.fetch("mnist", data_dir=tmp_path)
    assert "sha256" in str(err.value) and "ossci-datasets" in str(err.value)
    assert len(calls) == 3  # every mirror tried
    assert os.listdir(tmp_path / "mnist") == []  # no partial or bad file


def test_fetch_network_errors(tmp_path, monkeypatch):
    _serve(monkeypatch, lambda url: urllib.error.URLError("no network"))
    with pytest.raises(OSError, match="no network") as err:
        ds.fetch("news20", data_dir=tmp_path)
    assert "figshare" in str(err.value) and "qwone" in str(err.value)
    assert os.listdir(tmp_path / "20newsgroups") == []
    _serve(monkeypatch, lambda url: b"not an archive")
    with pytest.raises(OSError, match="md5"):
        ds.fetch("cifar10", data_dir=tmp_path)
    assert not any(p.is_file() for p in (tmp_path / "cifar10").rglob("*"))
    with pytest.raises(ValueError, match="`name` must be one of"):
        ds.fetch("imagenet", data_dir=tmp_path)


def test_fetch_cifar_extracts_verified_members(data_dir, tmp_path, monkeypatch):
    # A stand-in for the official archive that holds one real batch; its md5
    # replaces the official one for this test.
    batch = Path(data_dir) / "cifar10" / "cifar-10-batches-bin" / "data_batch_1.bin"
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(batch, arcname="cifar-10-batches-bin/data_batch_1.bin")
    payload = archive.read_bytes()
    monkeypatch.setattr(files, "CIFAR_ARCHIVE_MD5", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(fetch_module, "CIFAR_MEMBERS", ("data_batch_1.bin",))
    _serve(monkeypatch, lambda url: payload)
    root = tmp_path / "data"
    (path,) = ds.fetch("cifar10", data_dir=root)
    assert path.read_bytes() == batch.read_bytes()
    assert sorted(os.listdir(path.parent)) == ["data_batch_1.bin"]
    assert os.listdir(root / "cifar10") == ["cifar-10-batches-bin"]  # no archive
    info = ds.load("cifar10", n_train=10, n_val=5, n_test=5, data_dir=root).info
    assert info["pool_size"] == 10000 and "10000 of 50000" in info["subset"]
    # A member that fails its checksum: nothing is renamed into place.
    monkeypatch.setattr(fetch_module, "CIFAR_MEMBERS", ("data_batch_2.bin",))
    with pytest.raises(OSError, match="could not be extracted"):
        ds.fetch("cifar10", data_dir=root)
    assert sorted(os.listdir(path.parent)) == ["data_batch_1.bin"]
