"""Small stand-ins for the benchmark files, in each data set's official format.

Every writer puts its files in a data directory `root` with the layout of
`accjax._src.datasets.paths.FOLDERS` (`root/mnist/...`, `root/adult/...`,
`root/20newsgroups/...`, `root/cifar10/cifar-10-batches-bin/...`) and returns
what it wrote: the pixel values, labels, rows and documents. Tests compare the
parsed arrays with those values; the encodings here are written from the format
descriptions (IDX headers, CIFAR records, the UCI CSV lines, the bydate tarball),
not with the library's parsers, so they are an independent oracle.

The files are not the real ones, so their sizes and sha256 are not in
`files.SPECS`; `file_variants(root)` gives them, for a test to register as
accepted variants.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from accjax._src.datasets.paths import FOLDERS

# --------------------------------------------------------------------- MNIST

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: 0, 0, type 0x08, ndim, dims (big-endian)."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim])
    for dim in array.shape:
        header += int(dim).to_bytes(4, "big")
    return header + array.tobytes()


def mnist_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random 28x28 digits: a 4-pixel zero border (constant columns), as MNIST."""
    images = np.zeros((labels.size, 28, 28), np.uint8)
    images[:, 4:24, 4:24] = rng.integers(0, 256, (labels.size, 20, 20))
    images[:, 14, 14] = labels * 25  # depends on the label: not all rows alike
    return images


def write_mnist(root, *, seed: int = 0) -> dict:
    """The 4 IDX `.gz` files: 100 training images (30 ones, 25 sevens), 30 test.

    Returns:
      `{"train": (images, labels), "test": (images, labels), "paths": [...]}`,
      images uint8 `(n, 28, 28)`, labels uint8 `(n,)`, in file order.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDERS["mnist"]
    folder.mkdir(parents=True, exist_ok=True)
    others = [0, 2, 3, 4, 5, 6, 8, 9]
    train = np.array([1] * 30 + [7] * 25 + others * 5 + [0] * 5, np.uint8)
    test = np.array([1] * 6 + [7] * 6 + others * 2 + [3, 9], np.uint8)
    out = {"paths": []}
    for part, labels in (("train", train), ("test", test)):
        labels = rng.permutation(labels)
        images = mnist_images(labels, rng)
        out[part] = (images, labels)
        for name, array in zip(MNIST_FILES[part], (images, labels), strict=True):
            path = folder / name
            path.write_bytes(gzip.compress(idx_bytes(array), mtime=0))
            out["paths"].append(path)
    return out


# ------------------------------------------------------------------ CIFAR-10

CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_ALL = (*CIFAR_TRAIN, "test_batch.bin")


def cifar_batch(labels: np.ndarray, images: np.ndarray) -> bytes:
    """Records of <1 label byte><1024 R><1024 G><1024 B>, no header."""
    return b"".join(
        bytes([int(label)]) + np.asarray(image, np.uint8).tobytes()
        for label, image in zip(labels, images, strict=True)
    )


def write_cifar(root, names=CIFAR_ALL, *, records: int = 10, seed: int = 0) -> dict:
    """Binary batches in `cifar10/cifar-10-batches-bin/`, `records` each.

    Each batch holds every class once per 10 records, in a shuffled order.

    Returns:
      name -> `(images uint8 (n, 3072), labels uint8 (n,), file bytes)`.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDERS["cifar10"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batches.meta.txt").write_text(
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n"
    )
    out = {}
    for name in names:
        labels = rng.permutation(np.arange(records) % 10).astype(np.uint8)
        images = rng.integers(0, 256, (records, 3072), dtype=np.uint8)
        images[:, 0] = 7  # a constant column
        data = cifar_batch(labels, images)
        (folder / name).write_bytes(data)
        out[name] = (images, labels, data)
    return out


def cifar_archive(members: dict[str, bytes]) -> bytes:
    """A `cifar-10-binary.tar.gz` as the official one is laid out.

    `cifar-10-batches-bin/` with the given batch files, `batches.meta.txt` and
    `readme.html`.
    """
    members = {
        "batches.meta.txt": b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\n"
        b"horse\nship\ntruck\n\n",
        **members,
        "readme.html": b"<meta HTTP-EQUIV='REFRESH' content='0; url=...'>\n",
    }
    return tar_gz({f"cifar-10-batches-bin/{k}": v for k, v in members.items()})


# --------------------------------------------------------------------- Adult

ADULT_NUMERIC = ("Age", "fnlgwt", "Education num", "Capital Gain", "Capital Loss",
                 "Hours/Week")  # fmt: skip
_COUNTRIES = {
    "US": " United-States Cuba ?",
    "Western": " England Germany Canada Italy France Greece Philippines",
    "Poor": " Mexico Puerto-Rico Honduras Jamaica Columbia Laos Portugal Haiti "
    "Dominican-Republic El-Salvador Guatemala Peru Trinadad&Tobago "
    "Outlying-US(Guam-USVI-etc) Nicaragua Vietnam Holand-Netherlands",
    "Eastern": " India Iran Cambodia Taiwan Japan Yugoslavia China Hong",
    "Poland team": " South Poland Ireland Hungary Scotland Thailand Ecuador",
}
_PRIMARY = " 1st-4th 5th-6th 7th-8th 9th 10th 11th 12th"


def _same(values: str) -> dict:
    return {" " + v: " " + v for v in values.split()}


# Every category of the UCI files (with its leading space, as in the CSV) and
# the category it counts as after the reference preprocessing: None is a
# missing value (no indicator set); 'Married-AF-spouse' joins
# 'Married-civ-spouse', the primary grades join ' Primary', and the countries
# form 5 groups, a missing country (' ?') counting as US.
ADULT_CATEGORIES = {
    "Workclass": {
        " ?": None,
        **_same(
            "Federal-gov Local-gov Never-worked Private Self-emp-inc "
            "Self-emp-not-inc State-gov Without-pay"
        ),
    },  # fmt: skip
    "Education": {
        **{" " + v: " Primary" for v in _PRIMARY.split()},
        **_same(
            "Assoc-acdm Assoc-voc Bachelors Doctorate HS-grad Masters "
            "Preschool Prof-school Some-college"
        ),
    },  # fmt: skip
    "Marital Status": {
        " Married-AF-spouse": " Married-civ-spouse",
        **_same(
            "Divorced Married-civ-spouse Married-spouse-absent Never-married "
            "Separated Widowed"
        ),
    },  # fmt: skip
    "Occupation": {
        " ?": None,
        **_same(
            "Adm-clerical Armed-Forces Craft-repair Exec-managerial "
            "Farming-fishing Handlers-cleaners Machine-op-inspct "
            "Other-service Priv-house-serv Prof-specialty Protective-serv "
            "Sales Tech-support Transport-moving"
        ),
    },  # fmt: skip
    "Relationship": _same(
        "Husband Not-in-family Other-relative Own-child Unmarried Wife"
    ),
    "Race": _same("Amer-Indian-Eskimo Asian-Pac-Islander Black Other White"),
    "Sex": _same("Female Male"),
    "Native country": {
        " " + c: group for group, cs in _COUNTRIES.items() for c in cs.split()
    },
}
ADULT_COLUMNS = ("Age", "Workclass", "fnlgwt", "Education", "Education num",
                 "Marital Status", "Occupation", "Relationship", "Race", "Sex",
                 "Capital Gain", "Capital Loss", "Hours/Week", "Native country",
                 "Income")  # fmt: skip


def adult_feature_names() -> list[str]:
    """The expected columns: numeric ones, then `<column>_<category>` sorted."""
    names = list(ADULT_NUMERIC)
    for column, table in ADULT_CATEGORIES.items():
        kept = sorted({v for v in table.values() if v is not None})
        names += [f"{column}_{v}" for v in kept]
    return names


def write_adult(root, *, n_train: int = 50, n_test: int = 25, seed: int = 0) -> dict:
    """`adult-training.csv` and `adult-test.csv` as UCI writes them.

    Lines `39, State-gov, 77516, ...`: fields after the first start with a
    space; the test file starts with a line to skip and its labels end in '.';
    both end with a blank line. Every category of every column occurs.

    Returns:
      `{"rows": [dict column -> raw field (no leading space stripped)], "train":
      n_train, "test": n_test, "labels": int array (1 for >50K)}`, train rows
      first.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    picks = {
        column: np.array(list(table))[rng.permutation(n) % len(table)]
        for column, table in ADULT_CATEGORIES.items()
    }
    numeric = {
        "Age": rng.integers(17, 91, n),
        "fnlgwt": rng.integers(12285, 1484706, n),
        "Education num": rng.integers(1, 17, n),
        "Capital Gain": rng.choice([0, 0, 0, 2174, 15024, 99999], n),
        "Capital Loss": rng.choice([0, 0, 0, 1902, 4356], n),
        "Hours/Week": rng.integers(1, 100, n),
    }
    labels = rng.permutation(np.arange(n) % 3 == 0).astype(np.int64)
    rows = []
    for i in range(n):
        row = {c: str(picks[c][i]) for c in ADULT_CATEGORIES}
        row.update({c: f" {numeric[c][i]}" for c in ADULT_NUMERIC})
        row["Age"] = row["Age"].lstrip()
        row["Income"] = " >50K" if labels[i] else " <=50K"
        rows.append(row)
    folder = Path(root) / FOLDERS["adult"]
    folder.mkdir(parents=True, exist_ok=True)

    def lines(part, dot):
        return [",".join(r[c] for c in ADULT_COLUMNS) + dot + "\n" for r in part]

    (folder / "adult-training.csv").write_text(
        "".join(lines(rows[:n_train], "")) + "\n", newline=""
    )
    (folder / "adult-test.csv").write_text(
        "|1x3 Cross validator\n" + "".join(lines(rows[n_train:], ".")) + "\n",
        newline="",
    )
    return {"rows": rows, "train": n_train, "test": n_test, "labels": labels}


# ------------------------------------------------------------ 20 Newsgroups

NEWS20_CATEGORIES = (
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware", "comp.windows.x",
    "misc.forsale", "rec.autos", "rec.motorcycles", "rec.sport.baseball",
    "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med", "sci.space",
    "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
    "talk.politics.misc", "talk.religion.misc",
)  # fmt: skip
NEWS20_USED = ("comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware")
# Documents per (subset, category) for the two used categories; 2 train and 1
# test document for each of the other 18.
NEWS20_COUNTS = {
    ("train", "comp.sys.ibm.pc.hardware"): 36,
    ("train", "comp.sys.mac.hardware"): 34,
    ("test", "comp.sys.ibm.pc.hardware"): 20,
    ("test", "comp.sys.mac.hardware"): 18,
}


def _news_text(rng, vocab, number: int) -> str:
    """A Usenet post: headers, maybe a quote, a body, maybe a signature."""

    def words(k):
        return " ".join(rng.choice(vocab, k))

    user = f"user{number}"
    lines = [
        f"From: {user}@host{number % 7}.edu ({words(2)})",
        f"Subject: Re: {words(3)}",
        f"Organization: {words(2)} University",
        f"Lines: {number % 40 + 5}",
        "",
    ]
    if number % 3 == 0:
        lines += [f"In article <{number}@news.edu> other@x.edu writes:",
                  f"> {words(6)}", f"> {words(5)}", ""]  # fmt: skip
    for _ in range(int(rng.integers(2, 6))):
        lines.append(words(int(rng.integers(5, 12))))
    if number % 4 == 0:
        lines += ["", "--", f"{words(3)} | {user}@sig.edu"]
    if number % 5 == 0:
        lines.insert(-1, "caf\xe9 na\xefve r\xe9sum\xe9 \xfcber")  # Latin-1 bytes
    text = "\n".join(lines) + "\n"
    if number % 11 == 0:
        text = text.replace("\n", "\r\n")  # a few CRLF documents, as in the real
    return text


def write_news20(root, *, seed: int = 0) -> dict:
    """`20newsgroups/20news-bydate.tar.gz` in the bydate layout, 20 categories.

    Members `20news-bydate-{train,test}/<category>/<number>` (folders listed
    too), Latin-1 posts with headers; file numbers of 4 to 6 digits, so name
    order differs from numeric order.

    Returns:
      `{"docs": (subset, category, file name) -> bytes, "path": the tarball}`.
    """
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = sorted({"".join(rng.choice(letters, int(rng.integers(3, 9))))
                    for _ in range(420)})  # fmt: skip
    vocab += ["486", "1993", "scsi", "ide"]
    numbers = iter(rng.permutation(np.arange(1000, 200000))[:400].tolist())
    docs = {}
    for subset in ("train", "test"):
        for category in NEWS20_CATEGORIES:
            count = NEWS20_COUNTS.get((subset, category), 2 if subset == "train" else 1)
            # each category leans on its own part of the vocabulary
            start = NEWS20_CATEGORIES.index(category) * 12
            own = vocab[start : start + 200]
            for _ in range(count):
                number = next(numbers)
                text = _news_text(rng, own, number)
                docs[(subset, category, str(number))] = text.encode("latin1")
    members = {}  # train then test, each sorted by name (as the real tarball)
    for (subset, category, name), data in sorted(
        docs.items(), key=lambda item: (item[0][0] != "train", item[0])
    ):
        members[f"20news-bydate-{subset}/{category}/{name}"] = data
    folder = Path(root) / FOLDERS["news20"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "20news-bydate.tar.gz"
    path.write_bytes(tar_gz(members))
    return {"docs": docs, "path": path}


# -------------------------------------------------------------------- common


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A deterministic tar.gz: parent folders first, then each file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        seen = set()
        for name, data in members.items():
            parts = name.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in seen:
                    seen.add(folder)
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 946684800
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 946684800
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)


def write_all(root) -> SimpleNamespace:
    """All four data sets in `root`; the attributes are the writers' returns."""
    root = Path(root)
    return SimpleNamespace(
        root=root,
        mnist=write_mnist(root),
        cifar=write_cifar(root),
        adult=write_adult(root),
        news20=write_news20(root),
    )


def file_variants(root) -> dict[tuple[str, str], tuple[int, str]]:
    """`(data set, file name) -> (size, sha256)` of each data file under `root`."""
    out = {}
    for dataset, folder in FOLDERS.items():
        for path in sorted((Path(root) / folder).glob("*")):
            if path.is_file() and path.suffix != ".txt":
                data = path.read_bytes()
                out[(dataset, path.name)] = (
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                )
    return out
