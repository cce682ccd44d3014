"""Tests for accjax.datasets.

Most tests run everywhere, on small files in each data set's official format
that tests/fake_data.py writes: the parsers, the checksum layer, `fetch` and
`accjax data fetch`, the corruptions and the error paths. The fake files'
sizes and sha256 are registered as accepted variants of `files.SPECS` for the
test that uses them (the `fake_dir` fixture), and parsed values are compared
with what was written.

The tests about the real benchmark files (pool counts, the reference pipeline
on the real pools, checksums and pinned values, a fetch round trip of real
bytes) take conftest.py's `real_data_dir`: $ACCJAX_DATA, else ../shared/data
next to the repository. Without either they are skipped, and with
ACCJAX_REQUIRE_DATA=1 (CI) they fail. The sets bundled with scikit-learn
(breast_cancer, digits) need no files.
"""

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import accjax.datasets as ds
from accjax._src import cli
from accjax._src.datasets import adult, cifar, files, mnist, newsgroups, paths
from accjax._src.datasets import fetch as fetch_module
from accjax._src.datasets import load as load_module
from tests import fake_data

# Pool sizes, class counts and feature counts of the real files, from the data
# READMEs.
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
BUNDLED = ("breast_cancer", "digits")
FILE_SETS = [name for name in POOLS if name not in BUNDLED]
NATIVE = [
    "Native country_Eastern", "Native country_Poland team",
    "Native country_Poor", "Native country_US", "Native country_Western",
]  # fmt: skip


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """The fake files of all four data sets, written once for the module."""
    return fake_data.write_all(tmp_path_factory.mktemp("fake-data"))


def _accept(monkeypatch, root):
    """Registers the files under `root` as accepted variants of their spec."""
    for key, (size, sha256) in fake_data.file_variants(root).items():
        spec = files.SPECS[key]
        variant = files.Variant(size, sha256)
        if variant not in spec.variants:
            monkeypatch.setitem(
                files.SPECS, key, spec._replace(variants=spec.variants + (variant,))
            )


@pytest.fixture
def fake_dir(fake, monkeypatch):
    """The fake data directory, its files accepted by the checksum layer."""
    _accept(monkeypatch, fake.root)
    return fake.root


@pytest.fixture(scope="module")
def news20_sklearn(fake, tmp_path_factory):
    """scikit-learn's own pipeline on the fake tarball: the independent oracle.

    `fetch_20newsgroups` (its download replaced by a copy of the fake tarball:
    it extracts it, reads it with `load_files`, selects and shuffles), then
    TfidfVectorizer fitted on train, as the loader's docstring says.
    """
    from sklearn.datasets import _twenty_newsgroups as skl
    from sklearn.datasets import fetch_20newsgroups

    home = tmp_path_factory.mktemp("sklearn-home")

    def serve(remote, dirname=None, **kwargs):
        dest = os.path.join(dirname, remote.filename)
        shutil.copyfile(fake.news20["path"], dest)
        return dest

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(skl, "_fetch_remote", serve)
        got = {
            subset: fetch_20newsgroups(
                data_home=str(home),
                subset=subset,
                categories=list(newsgroups.CATEGORIES),
                remove=("headers", "footers", "quotes"),
            )
            for subset in ("train", "test")
        }
    vectorizer = TfidfVectorizer(stop_words="english", min_df=0.001, max_df=0.2)
    x_train = vectorizer.fit_transform(got["train"].data).toarray()
    x_test = vectorizer.transform(got["test"].data).toarray()
    return SimpleNamespace(
        texts={s: g.data for s, g in got.items()},
        y={s: g.target for s, g in got.items()},
        x=np.vstack([x_train, x_test]),
        feature_names=tuple(vectorizer.get_feature_names_out().tolist()),
    )


def _load(data_dir, name, n=(100, 50, 50), **kw):
    return ds.load(name, n_train=n[0], n_val=n[1], n_test=n[2], data_dir=data_dir, **kw)


def _raw(part, info):
    """Undoes the standardisation (float64)."""
    return part[0].astype(np.float64) * info["scale"] + info["mean"]


def _copy_folder(data_dir, tmp_path, folder):
    dest = tmp_path / folder
    shutil.copytree(Path(data_dir) / folder, dest)
    for path in dest.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return dest


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


# ------------------------------------------------------- API, pools, splits


def test_public_api():
    assert sorted(ds.__all__) == [
        "DATASETS", "Splits", "fetch", "load", "load_text", "resolve_data_dir",
    ]  # fmt: skip
    assert set(ds.DATASETS) == set(POOLS)


def _check_splits(s, pool_size, class_counts, num_features, n):
    info = s.info
    assert info["pool_size"] == pool_size
    assert info["pool_class_counts"] == class_counts
    assert info["num_features"] == num_features
    assert info["num_classes"] == len(class_counts)
    for (x, y), size in zip(s[:3], n, strict=True):
        assert x.shape == (size, num_features) and x.dtype == np.float32
        assert y.shape == (size,)
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
    assert np.unique(every).size == sum(n) and every.max() < pool_size
    assert info["flipped"].size == 0 and info["corrupted"] == ()
    for record in info["files"]:
        assert Path(record["path"]).is_file() and len(record["sha256"]) == 64


@pytest.mark.parametrize("name", list(POOLS))
def test_pool_counts_and_split(request, name):
    # The real files (skipped without them); the bundled sets run everywhere.
    data_dir = None if name in BUNDLED else request.getfixturevalue("real_data_dir")
    _check_splits(_load(data_dir, name), *POOLS[name], (100, 50, 50))


def _fake_pool_facts(fake, oracle, name):
    """Pool size, class counts and feature count of the fake files."""
    if name == "adult":
        y = fake.adult["labels"]
        return y.size, np.bincount(y, minlength=2).tolist(), 62
    if name == "news20":
        y = np.concatenate([oracle.y["train"], oracle.y["test"]])
        return y.size, np.bincount(y).tolist(), len(oracle.feature_names)
    if name in ("mnist", "mnist10"):
        y = fake.mnist["train"][1]
        if name == "mnist":
            counts = [int((y == 1).sum()), int((y == 7).sum())]
            return sum(counts), counts, 784
        return y.size, np.bincount(y, minlength=10).tolist(), 784
    y = np.concatenate([fake.cifar[n][1] for n in fake_data.CIFAR_ALL])
    return y.size, np.bincount(y, minlength=10).tolist(), 3072


@pytest.mark.parametrize("name", FILE_SETS)
def test_pool_counts_and_split_on_fake_files(fake, fake_dir, news20_sklearn, name):
    n = (20, 10, 10)
    facts = _fake_pool_facts(fake, news20_sklearn, name)
    _check_splits(_load(fake_dir, name, n), *facts, n)


REFERENCE_CASES = [
    ("real", "adult", 120), ("real", "mnist", 120), ("real", "news20", 120),
    ("bundled", "digits", 120),
    ("fake", "adult", 20), ("fake", "mnist", 18), ("fake", "news20", 30),
]  # fmt: skip


@pytest.mark.parametrize(
    "source, name, n",
    REFERENCE_CASES,
    ids=[name if src != "fake" else f"fake-{name}" for src, name, _ in REFERENCE_CASES],
)
def test_matches_reference_pipeline(request, source, name, n):
    # The reference `DataModule.fetch` run on our pool: scikit-learn's split,
    # the seeded label flip, StandardScaler.
    data_dir = {
        "real": lambda: request.getfixturevalue("real_data_dir"),
        "fake": lambda: request.getfixturevalue("fake_dir"),
        "bundled": lambda: None,
    }[source]()
    seed = 5
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


# ------------------------------------------- parsed values = what was written


def test_mnist_files_parse_to_what_was_written(fake, fake_dir):
    for part in ("train", "test"):
        images, labels, records = mnist.read_part(part, fake_dir)
        want_images, want_labels = fake.mnist[part]
        assert images.shape == (want_labels.size, 28, 28)
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)
        assert [Path(r["path"]).name for r in records] == list(
            fake_data.MNIST_FILES[part]
        )
        for record in records:
            data = Path(record["path"]).read_bytes()
            assert record["bytes"] == len(data)
            assert record["sha256"] == hashlib.sha256(data).hexdigest()
    images, labels = fake.mnist["train"]
    # Binary: digit 1 -> 0 then digit 7 -> 1, each in file order.
    ones, sevens = images[labels == 1], images[labels == 7]
    want_x = np.concatenate([ones, sevens]).reshape(-1, 784)
    pool = load_module.load_pool("mnist", fake_dir)
    np.testing.assert_array_equal(pool.x, want_x)
    np.testing.assert_array_equal(pool.y, [0] * len(ones) + [1] * len(sevens))
    assert pool.x_divisor == 255.0 and pool.num_classes == 2
    assert pool.info["image_shape"] == (28, 28, 1)
    pool10 = load_module.load_pool("mnist10", fake_dir)
    np.testing.assert_array_equal(pool10.x, images.reshape(-1, 784))
    np.testing.assert_array_equal(pool10.y, labels)
    assert pool10.num_classes == 10
    # Through `load`: the drawn rows' pixels, scaled to [0, 1], and labels.
    s = _load(fake_dir, "mnist", (20, 10, 10))
    for part, rows in zip(s[:3], s.info["pool_indices"].values(), strict=True):
        np.testing.assert_allclose(_raw(part, s.info), want_x[rows] / 255, atol=1e-5)
        np.testing.assert_array_equal(part[1], rows >= len(ones))


def test_cifar_batches_parse_to_what_was_written(fake, fake_dir):
    folder = Path(fake_dir) / paths.FOLDERS["cifar10"]
    for name, (images, labels, _) in fake.cifar.items():
        x, y = cifar.read_batch(folder / name)
        np.testing.assert_array_equal(x, images)
        np.testing.assert_array_equal(y, labels)
    pool = load_module.load_pool("cifar10", fake_dir)
    order = fake_data.CIFAR_ALL  # training batches 1..5, then the test batch
    np.testing.assert_array_equal(
        pool.x, np.concatenate([fake.cifar[n][0] for n in order])
    )
    np.testing.assert_array_equal(
        pool.y, np.concatenate([fake.cifar[n][1] for n in order])
    )
    assert pool.info["subset"] is None  # the full set of files
    assert pool.info["records_per_file"] == {n: 10 for n in order}
    assert pool.info["image_shape"] == (3, 32, 32)
    assert pool.info["image_layout"] == "CHW"
    assert [Path(r["path"]).name for r in pool.info["files"]] == list(order)
    # Channel-major: byte 1 + 1024 c + 32 r + col of record k is pixel (c, r, col).
    data = fake.cifar["data_batch_2.bin"][2]
    image = pool.x[10 + 3].reshape(3, 32, 32)
    for c, r, col in [(0, 0, 0), (0, 5, 7), (1, 0, 0), (2, 31, 31), (1, 17, 2)]:
        assert image[c, r, col] == data[3 * 3073 + 1 + 1024 * c + 32 * r + col]
    assert pool.y[13] == data[3 * 3073]


def test_cifar_subset_of_batches(tmp_path, monkeypatch):
    # The layout of shared/data: two training batches and a partial test batch.
    written = fake_data.write_cifar(
        tmp_path, ("data_batch_1.bin", "data_batch_2.bin", "test_batch_first1000.bin"),
        records=20, seed=1,
    )  # fmt: skip
    _accept(monkeypatch, tmp_path)
    info = _load(tmp_path, "cifar10", (10, 5, 5)).info
    assert "subset" in info["subset"] and "data_batch_3.bin" in info["subset"]
    assert "40 of 50000" in info["subset"] and "20 of 10000" in info["subset"]
    assert info["records_per_file"]["test_batch_first1000.bin"] == 20
    assert info["pool_size"] == 60 and info["image_shape"] == (3, 32, 32)
    pool = load_module.load_pool("cifar10", tmp_path)
    np.testing.assert_array_equal(
        pool.y, np.concatenate([w[1] for w in written.values()])
    )


def test_adult_preprocessing_matches_what_was_written(fake, fake_dir):
    rows = fake.adult["rows"]
    folder = Path(fake_dir) / "adult"
    # The test file's first line is skipped; the blank last lines are dropped.
    assert len(adult.read_rows(folder / "adult-test.csv", skip=1)) == 25
    assert len(adult.read_rows(folder / "adult-training.csv", skip=0)) == 50
    pool = load_module.load_pool("adult", fake_dir)
    names = fake_data.adult_feature_names()
    assert pool.info["feature_names"] == tuple(names) and len(names) == 62
    assert pool.x.shape == (75, 62)
    # Labels, '>50K' and '>50K.' both 1.
    np.testing.assert_array_equal(pool.y, fake.adult["labels"])
    assert pool.y.sum() == 25
    numeric = np.array([[float(r[c]) for c in fake_data.ADULT_NUMERIC] for r in rows])
    numeric[:, 1] = np.log1p(numeric[:, 1])  # fnlgwt
    np.testing.assert_allclose(pool.x[:, :6], numeric, rtol=1e-15)
    # One-hot: exactly the indicator of each value's category after the merges;
    # a missing value (' ?' workclass or occupation) sets none.
    assert set(np.unique(pool.x[:, 6:])) == {0.0, 1.0}
    for i, row in enumerate(rows):
        hot = {
            f"{column}_{table[row[column]]}"
            for column, table in fake_data.ADULT_CATEGORIES.items()
            if table[row[column]] is not None
        }
        assert {names[j] for j in 6 + np.flatnonzero(pool.x[i, 6:])} == hot
    assert any(r["Workclass"] == " ?" for r in rows)
    assert any(r["Native country"] == " ?" for r in rows)
    assert any(r["Marital Status"] == " Married-AF-spouse" for r in rows)
    # The same merges as the real files: 6 marital groups, 5 country groups.
    marital = [f for f in names if f.startswith("Marital")]
    assert len(marital) == 6 and "Marital Status_ Married-AF-spouse" not in names
    assert [f for f in names if f.startswith("Native")] == NATIVE
    assert "Education_ Primary" in names and "Education_ 11th" not in names


def test_news20_matches_scikit_learn_on_fake_archive(fake, fake_dir, news20_sklearn):
    path = Path(fake_dir) / "20newsgroups" / newsgroups.ARCHIVE
    names, docs = newsgroups.read_archive(path)
    written = fake.news20["docs"]
    for subset in newsgroups.SUBSETS:
        assert sorted(names[subset]) == sorted(
            (c, n) for s, c, n in written if s == subset
        )
    assert docs == {k: v for k, v in written.items() if k[1] in newsgroups.CATEGORIES}
    oracle = news20_sklearn
    for subset in newsgroups.SUBSETS:
        texts, labels = newsgroups.subset_texts(names, docs, subset)
        assert texts == oracle.texts[subset]  # the same documents, same order
        np.testing.assert_array_equal(labels, oracle.y[subset])
        assert labels.tolist() != sorted(labels.tolist())  # shuffled
        # The order depends on every category listed, not just the two used.
        fewer = {s: [e for e in v if e[0] != "alt.atheism"] for s, v in names.items()}
        assert newsgroups.subset_texts(fewer, docs, subset)[0] != texts
    pool = load_module.load_pool("news20", fake_dir)
    np.testing.assert_allclose(pool.x, oracle.x, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(
        pool.y, np.concatenate([oracle.y["train"], oracle.y["test"]])
    )
    assert pool.info["feature_names"] == oracle.feature_names
    assert pool.info["subset_sizes"] == {"train": 70, "test": 38}
    assert any("\xe9" in t for t in oracle.texts["train"])  # Latin-1 decoded


def test_news20_matches_scikit_learn_order(real_data_dir):
    # Pinned from a run of sklearn 1.9.1's fetch_20newsgroups + TfidfVectorizer
    # on the same archive (equal arrays): the documents' order and features.
    pool = load_module.load_pool("news20", real_data_dir)
    assert pool.y[:12].tolist() == [0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    assert pool.y[1168:1180].tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0]
    np.testing.assert_allclose(pool.x[:3].sum(1), [8.13183052, 8.43842644,
                                                   1.47368599])  # fmt: skip
    assert pool.info["subset_sizes"] == {"train": 1168, "test": 777}
    assert pool.info["feature_names"][:3] == ("00", "000", "01")


def test_strip_helpers_match_scikit_learn(fake):
    # scikit-learn is a dependency; if this private module moves, fail loudly.
    from sklearn.datasets import _twenty_newsgroups as skl

    text = (
        "From: a@b\nSubject: x\n\nIn article <1@c> d writes:\n> quoted\n"
        "| also\nbody line\n\n--\nsig\n"
    )
    texts = [text] + [d.decode("latin1") for d in fake.news20["docs"].values()]
    for text in texts:
        assert newsgroups.strip_header(text) == skl.strip_newsgroup_header(text)
        assert newsgroups.strip_footer(text) == skl.strip_newsgroup_footer(text)
        assert newsgroups.strip_quoting(text) == skl.strip_newsgroup_quoting(text)


# ------------------------------------------------------------ the real files


def test_raw_files_match_readmes(real_data_dir):
    images, labels, _ = mnist.read_part("test", real_data_dir)
    assert images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    folder = Path(real_data_dir) / "cifar10" / "cifar-10-batches-bin"
    firsts = {
        "data_batch_1.bin": [6, 9, 9, 4, 1, 1, 2, 7, 8, 3],
        "data_batch_2.bin": [1, 6, 6, 8, 8, 3, 4, 6, 0, 6],
        "test_batch_first1000.bin": [3, 8, 8, 0, 6, 6, 1, 6, 3, 1],
    }
    for name, first in firsts.items():
        assert cifar.read_batch(folder / name)[1][:10].tolist() == first
    info = _load(real_data_dir, "cifar10").info
    assert "subset" in info["subset"] and "data_batch_3.bin" in info["subset"]
    assert info["records_per_file"]["test_batch_first1000.bin"] == 1000
    assert info["image_shape"] == (3, 32, 32)
    adult_info = _load(real_data_dir, "adult").info
    assert len(adult_info["feature_names"]) == 62
    # pre-copy-on-write pandas semantics: 'Married-AF-spouse' merged (6 groups),
    # missing countries counted as US.
    marital = [f for f in adult_info["feature_names"] if f.startswith("Marital")]
    assert len(marital) == 6
    assert [f for f in adult_info["feature_names"] if f.startswith("Native")] == NATIVE
    # The fake files hold every category: their columns are the real ones.
    assert list(adult_info["feature_names"]) == fake_data.adult_feature_names()


def test_real_files_pass_their_checksums(real_data_dir, monkeypatch):
    # Every known file present passes its size + digest check, hashed anew.
    monkeypatch.setattr(files, "_VERIFIED", {})
    checked = []
    for (dataset, filename), spec in files.SPECS.items():
        path = Path(real_data_dir) / paths.FOLDERS[dataset] / filename
        if dataset == "cifar10" and not path.is_file():
            continue  # shared/data holds a subset of the batches
        record = files.verify(path, spec)
        sizes = {v.size for v in spec.variants}
        assert record["bytes"] in sizes or None in sizes
        checked.append(filename)
    assert "data_batch_1.bin" in checked and len(checked) >= 8
    path = Path(real_data_dir) / "mnist" / "t10k-labels-idx1-ubyte.gz"
    assert files.verify(path, files.SPECS[("mnist", path.name)])["bytes"] == 4542


# -------------------------------------------------------- corruption, errors


def test_corruption_is_seeded_and_train_only(fake_dir):
    n = (30, 10, 10)
    clean = _load(fake_dir, "mnist", n, seed=2)
    noisy = _load(fake_dir, "mnist", n, seed=2, feature_noise=0.1, label_noise=0.2)
    again = _load(fake_dir, "mnist", n, seed=2, feature_noise=0.1, label_noise=0.2)
    for a, b in zip(noisy[:3], again[:3], strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert noisy.info["corrupted"] == ("train features", "train labels")
    flipped = noisy.info["flipped"]
    assert flipped.size == 6 and np.unique(flipped).size == 6
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
    other = _load(fake_dir, "mnist", n, seed=3, label_noise=0.2)
    assert not np.array_equal(other.info["flipped"], flipped)


def test_news20_feature_noise_sets_ones(fake_dir):
    s = _load(fake_dir, "news20", (50, 20, 20), feature_noise=0.01)
    vocab = s.info["num_features"]
    assert int(0.01 * vocab) >= 1
    raw = _raw(s.train, s.info)
    ones = np.isclose(raw, 1.0, atol=1e-4).sum(1)
    assert np.all(ones >= int(0.01 * vocab))
    with pytest.raises(ValueError, match="feature_noise"):
        _load(fake_dir, "news20", (50, 20, 20), feature_noise=1.5)


def test_bad_arguments(fake_dir):
    with pytest.raises(ValueError, match=r"n_train \+ n_val \+ n_test.*569 rows"):
        _load(None, "breast_cancer", (400, 100, 100))
    with pytest.raises(ValueError, match="`n_train` must be an int"):
        _load(None, "digits", (0.5, 10, 10))
    with pytest.raises(ValueError, match="`n_val` must be an int"):
        _load(None, "digits", (10, -1, 10))
    with pytest.raises(ValueError, match="`name` must be one of"):
        _load(None, "imagenet")
    with pytest.raises(ValueError, match="split='official'. is defined for"):
        ds.load("digits", n_val=10, split="official")
    with pytest.raises(ValueError, match="`split` must be"):
        _load(None, "digits", split="train")
    with pytest.raises(TypeError, match="missing n_train"):
        ds.load("digits", n_val=10, n_test=10)
    with pytest.raises(ValueError, match=r"`n_val` must be an int in \[0, 99\]"):
        ds.load("mnist10", n_val=100, split="official", data_dir=fake_dir)
    with pytest.raises(ValueError, match="`n_test` must be an int in"):
        ds.load("mnist10", n_val=10, n_test=31, split="official", data_dir=fake_dir)
    with pytest.raises(ValueError, match="images=True. needs an image data set"):
        _load(None, "breast_cancer", images=True)
    with pytest.raises(ValueError, match="label_noise"):
        _load(None, "digits", label_noise=1.5)
    with pytest.raises(ValueError, match="seed"):
        _load(None, "digits", seed=-1)


def test_zero_sized_parts_and_full_pool():
    s = _load(None, "digits", (361, 0, 0))
    assert s.train[0].shape == (361, 64) and s.val[0].shape == (0, 64)
    assert np.unique(s.info["pool_indices"]["train"]).size == 361
    s = _load(None, "digits", (100, 0, 30))
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


def test_truncated_or_corrupt_files_raise(fake, tmp_path, monkeypatch):
    _accept(monkeypatch, fake.root)
    folder = _copy_folder(fake.root, tmp_path, "adult")
    path = folder / "adult-test.csv"
    data = path.read_bytes()
    cut = len(data) // 2
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match=f"truncated or corrupt.*{cut} bytes"):
        ds.load("adult", n_train=10, n_val=10, n_test=10, data_dir=tmp_path)
    path.write_bytes(data[:-5] + b"XXXXX")  # same size, other bytes
    with pytest.raises(ValueError, match="corrupt or not the expected file"):
        ds.load("adult", n_train=10, n_val=10, n_test=10, data_dir=tmp_path)
    path.write_bytes(data)  # the good bytes again: accepted
    s = ds.load("adult", n_train=10, n_val=10, n_test=10, data_dir=tmp_path)
    assert s.info["pool_size"] == 75


def test_parsers_reject_broken_files(fake, tmp_path, monkeypatch):
    # Below the checksum layer: each parser refuses a damaged file on its own.
    images = fake.root / "mnist" / "train-images-idx3-ubyte.gz"
    src = fake.root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    cut = tmp_path / "cut.gz"
    cut.write_bytes(images.read_bytes()[:2000])
    with pytest.raises(ValueError, match="not a complete gzip"):
        mnist.read_idx(cut, 3)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(gzip.decompress(src.read_bytes())[:20]))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        mnist.read_idx(short, 1)
    with pytest.raises(ValueError, match="magic number 2049; expected 2051"):
        mnist.read_idx(src, 3)
    batch = tmp_path / "batch.bin"
    batch.write_bytes(b"\x01" * 3072)
    with pytest.raises(ValueError, match="multiple of 3073"):
        cifar.read_batch(batch)
    batch.write_bytes(b"\x0a" + b"\x01" * 3072)
    with pytest.raises(ValueError, match="label > 9"):
        cifar.read_batch(batch)
    tar = tmp_path / "news.tar.gz"
    tar.write_bytes(fake.news20["path"].read_bytes()[:10_000])
    with pytest.raises(ValueError, match="not a complete tar.gz"):
        newsgroups.read_archive(tar)
    no_mac = {
        f"20news-bydate-{s}/{c}/{n}": d
        for (s, c, n), d in fake.news20["docs"].items()
        if c != "comp.sys.mac.hardware"
    }
    tar.write_bytes(fake_data.tar_gz(no_mac))
    where = "no documents under 20news-bydate-train/comp.sys.mac.hardware/"
    with pytest.raises(ValueError, match=where):
        newsgroups.read_archive(tar)
    csv = tmp_path / "adult.csv"
    csv.write_text("39, State-gov, 77516, Bachelors, 13\n")
    with pytest.raises(ValueError, match="line 1 has 5 fields; expected 15"):
        adult.read_rows(csv, skip=0)
    # MNIST files that pass their checksum but disagree with each other.
    root = tmp_path / "data"
    folder = root / "mnist"
    folder.mkdir(parents=True)
    names = fake_data.MNIST_FILES["test"]

    def write(images, labels):
        for name, array in zip(names, (images, labels), strict=True):
            (folder / name).write_bytes(gzip.compress(fake_data.idx_bytes(array)))
        _accept(monkeypatch, root)

    write(np.zeros((3, 28, 28)), np.array([1, 12, 7]))
    with pytest.raises(ValueError, match="has a label > 9"):
        mnist.read_part("test", root)
    write(np.zeros((3, 28, 28)), np.array([1, 7]))
    with pytest.raises(ValueError, match=r"shape \(3, 28, 28\) but .* has 2 labels"):
        mnist.read_part("test", root)


def test_verification_is_cached(fake, tmp_path, monkeypatch):
    _accept(monkeypatch, fake.root)
    folder = _copy_folder(fake.root, tmp_path, "mnist")
    path = folder / "t10k-labels-idx1-ubyte.gz"
    spec = files.SPECS[("mnist", path.name)]
    assert files.verify(path, spec)["bytes"] == len(path.read_bytes())

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


# --------------------------------------------------------------------- fetch


def _fetch_adult_round_trip(src_root, tmp_path, monkeypatch, pool_size):
    src = Path(src_root) / "adult"
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
    for path in got:
        assert path.read_bytes() == (src / path.name).read_bytes()
    s = ds.load("adult", n_train=10, n_val=10, n_test=10, data_dir=tmp_path)
    assert s.info["pool_size"] == pool_size
    ds.fetch("adult", data_dir=tmp_path)  # present and good: no download
    assert len(calls) == 2
    assert ds.fetch("digits", data_dir=tmp_path) == []


def test_fetch_writes_verified_files(fake, tmp_path, monkeypatch):
    _accept(monkeypatch, fake.root)
    _fetch_adult_round_trip(fake.root, tmp_path, monkeypatch, 75)


def test_fetch_real_files_round_trip(real_data_dir, tmp_path, monkeypatch):
    _fetch_adult_round_trip(real_data_dir, tmp_path, monkeypatch, 48842)


def test_fetch_checksum_mismatch_leaves_nothing(fake, tmp_path, monkeypatch):
    _accept(monkeypatch, fake.root)
    # The first file fetched, with the size of its fake variant: a digest check.
    good = (fake.root / "mnist" / "train-images-idx3-ubyte.gz").read_bytes()
    bad = good[:-1] + bytes([good[-1] ^ 1])
    calls = _serve(monkeypatch, lambda url: bad)
    with pytest.raises(OSError, match="could not download a good") as err:
        ds.fetch("mnist", data_dir=tmp_path)
    assert "sha256" in str(err.value) and "ossci-datasets" in str(err.value)
    assert "is corrupt or not the expected file" in str(err.value)
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


def _serve_cifar(monkeypatch, members):
    """Serves a fake official archive of `members`; its md5 is the expected one."""
    payload = fake_data.cifar_archive(members)
    monkeypatch.setattr(files, "CIFAR_ARCHIVE_MD5", hashlib.md5(payload).hexdigest())
    return _serve(monkeypatch, lambda url: payload)


def test_fetch_cifar_extracts_verified_members(fake, tmp_path, monkeypatch):
    # A stand-in for the official archive (all six batches, the meta file and
    # readme), its md5 replacing the official one.
    _accept(monkeypatch, fake.root)
    members = {name: fake.cifar[name][2] for name in fake_data.CIFAR_ALL}
    calls = _serve_cifar(monkeypatch, members)
    root = tmp_path / "data"
    got = ds.fetch("cifar10", data_dir=root)
    assert [p.name for p in got] == list(fetch_module.CIFAR_MEMBERS)
    assert [p.name for p in got] == list(fake_data.CIFAR_ALL)
    for path in got:
        assert path.read_bytes() == members[path.name]
    folder = got[0].parent
    assert sorted(os.listdir(folder)) == sorted(fake_data.CIFAR_ALL)  # batches only
    assert os.listdir(root / "cifar10") == ["cifar-10-batches-bin"]  # no archive
    info = ds.load("cifar10", n_train=10, n_val=5, n_test=5, data_dir=root).info
    assert info["pool_size"] == 60 and info["subset"] is None
    ds.fetch("cifar10", data_dir=root)  # all present and good: no download
    assert len(calls) == 1
    # A member that fails its checksum: nothing is renamed into place.
    (folder / "data_batch_3.bin").unlink()
    broken = bytearray(members["data_batch_5.bin"])
    broken[100] ^= 1
    _serve_cifar(monkeypatch, {**members, "data_batch_5.bin": bytes(broken)})
    with pytest.raises(OSError, match="could not be extracted"):
        ds.fetch("cifar10", data_dir=root)
    left = sorted(set(fake_data.CIFAR_ALL) - {"data_batch_3.bin"})
    assert sorted(os.listdir(folder)) == left
    assert (folder / "data_batch_5.bin").read_bytes() == members["data_batch_5.bin"]
    # A member missing from the archive: the same.
    _serve_cifar(
        monkeypatch, {k: v for k, v in members.items() if k != "test_batch.bin"}
    )
    with pytest.raises(OSError, match="could not be extracted"):
        ds.fetch("cifar10", data_dir=root)
    assert sorted(os.listdir(folder)) == left


def test_fetch_cifar_real_batch(real_data_dir, tmp_path, monkeypatch):
    # A stand-in for the official archive that holds one real batch; its md5
    # replaces the official one for this test.
    batch = (
        Path(real_data_dir) / "cifar10" / "cifar-10-batches-bin" / "data_batch_1.bin"
    )
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


def test_cli_data_fetch(fake, tmp_path, monkeypatch, capsys):
    # `accjax data fetch NAME --data-dir DIR`: prints the verified paths.
    _accept(monkeypatch, fake.root)
    src = fake.root / "mnist"
    calls = _serve(monkeypatch, lambda url: (src / url.rsplit("/", 1)[1]).read_bytes())
    assert cli.main(["data", "fetch", "mnist", "--data-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    names = [name for part in fake_data.MNIST_FILES.values() for name in part]
    assert sorted(printed) == sorted(str(tmp_path / "mnist" / n) for n in names)
    assert len(calls) == 4 and all("ossci-datasets" in url for url in calls)
    for name in names:
        assert (tmp_path / "mnist" / name).read_bytes() == (src / name).read_bytes()
    _serve(monkeypatch, lambda url: b"not the file")
    assert cli.main(["data", "fetch", "adult", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "accjax data fetch: error: could not download a good" in err
    assert not (tmp_path / "adult" / "adult-training.csv").exists()


def test_official_mnist_split_is_the_official_files(fake, fake_dir):
    s = ds.load("mnist10", n_val=10, seed=4, split="official", data_dir=fake_dir)
    train_images, train_labels = fake.mnist["train"]
    test_images, test_labels = fake.mnist["test"]
    val_rows = np.random.RandomState(4).permutation(100)[:10]
    train_rows = np.setdiff1d(np.arange(100), val_rows)  # the rest, in file order
    for part, images, labels in [
        (s.train, train_images[train_rows], train_labels[train_rows]),
        (s.val, train_images[val_rows], train_labels[val_rows]),
        (s.test, test_images, test_labels),
    ]:
        np.testing.assert_array_equal(part[1], labels)
        np.testing.assert_allclose(
            _raw(part, s.info), images.reshape(len(labels), -1) / 255.0, atol=1e-5
        )
    assert s.info["split"] == "official" and s.info["n_train"] == 90
    # sizes and image shape on request; binary: the ones then the sevens of t10k
    s = ds.load("mnist", n_val=5, n_train=20, n_test=8, split="official",
                data_dir=fake_dir, images=True)  # fmt: skip
    assert s.train[0].shape == (20, 28, 28, 1) and s.test[0].shape == (8, 28, 28, 1)
    ones = np.flatnonzero(test_labels == 1)
    np.testing.assert_allclose(
        s.test[0][:6, :, :, 0] * s.info["scale"].reshape(28, 28)
        + s.info["mean"].reshape(28, 28),
        test_images[ones] / 255.0,
        atol=1e-5,
    )
    np.testing.assert_array_equal(s.test[1], [0] * 6 + [1] * 2)


def test_official_cifar_split_and_hwc_images(fake, fake_dir):
    s = ds.load("cifar10", n_val=5, split="official", data_dir=fake_dir, images=True)
    train = np.concatenate([fake.cifar[n][0] for n in fake_data.CIFAR_TRAIN])
    test_images, test_labels, _ = fake.cifar["test_batch.bin"]
    assert s.train[0].shape == (45, 32, 32, 3) and s.test[0].shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(s.test[1], test_labels)
    raw = s.test[0] * s.info["scale"].reshape(3, 32, 32).transpose(1, 2, 0) + s.info[
        "mean"
    ].reshape(3, 32, 32).transpose(1, 2, 0)
    # HWC pixel (r, col, c) is the record's byte 1024 c + 32 r + col
    for r, col, c in [(0, 0, 0), (5, 7, 0), (31, 31, 2), (17, 2, 1)]:
        np.testing.assert_allclose(
            raw[3, r, col, c],
            test_images[3, 1024 * c + 32 * r + col] / 255.0,
            atol=1e-5,
        )
    val_rows = np.random.RandomState(0).permutation(50)[:5]
    np.testing.assert_allclose(
        _raw((s.val[0].transpose(0, 3, 1, 2).reshape(5, -1),), s.info),
        train[val_rows] / 255.0,
        atol=1e-5,
    )


def test_multiclass_label_noise_draws_another_class(fake_dir):
    clean = ds.load("mnist10", n_val=10, split="official", data_dir=fake_dir)
    noisy = ds.load("mnist10", n_val=10, split="official", data_dir=fake_dir,
                    label_noise=0.3)  # fmt: skip
    flipped = noisy.info["flipped"]
    want = np.sort(np.random.RandomState(0).choice(90, 27, replace=False))
    np.testing.assert_array_equal(flipped, want)
    rows = np.random.RandomState(0).choice(90, 27, replace=False)
    offsets = np.random.RandomState([0, 2]).randint(1, 10, 27)
    expect = clean.train[1].copy()
    expect[rows] = (expect[rows] + offsets) % 10
    np.testing.assert_array_equal(noisy.train[1], expect)
    assert np.all(noisy.train[1][flipped] != clean.train[1][flipped])
    keep = np.setdiff1d(np.arange(90), flipped)
    np.testing.assert_array_equal(noisy.train[1][keep], clean.train[1][keep])
    np.testing.assert_array_equal(noisy.val[1], clean.val[1])


def test_official_mnist_split_of_the_real_files(real_data_dir):
    s = ds.load("mnist10", n_val=10000, split="official", data_dir=real_data_dir)
    assert [len(part[1]) for part in (s.train, s.val, s.test)] == [50000, 10000, 10000]
    # the official test set's published class counts
    np.testing.assert_array_equal(
        np.bincount(s.test[1]), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    counts = np.bincount(np.concatenate([s.train[1], s.val[1]]))
    np.testing.assert_array_equal(
        counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
