"""20 Newsgroups (bydate), comp.sys.ibm.pc.hardware vs comp.sys.mac.hardware.

Replicates `sklearn.datasets.fetch_20newsgroups(subset=..., categories=...,
remove=('headers', 'footers', 'quotes'))` without its download step: documents
are read from the tarball with `tarfile`, put in the order `load_files` and
`fetch_20newsgroups` give them (see `subset_texts`), decoded as Latin-1 and
stripped. TF-IDF is fitted on
the train subset and applied to both; the pool is train rows then test rows.
"""

from __future__ import annotations

import re
import tarfile
import zlib

import numpy as np

from accjax._src import extras
from accjax._src.datasets import files
from accjax._src.datasets.pool import Pool

CATEGORIES = ("comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware")
ARCHIVE = "20news-bydate.tar.gz"
SUBSETS = ("train", "test")

# Copies of scikit-learn's `strip_newsgroup_*` helpers (a private module there);
# tests compare them with scikit-learn's when it has them.
_QUOTE_RE = re.compile(
    r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)"
)


def strip_header(text: str) -> str:
    """Everything after the first blank line."""
    return text.partition("\n\n")[2]


def strip_footer(text: str) -> str:
    """Drops the last block set apart by a blank or all-hyphen line."""
    lines = text.strip().split("\n")
    for line_num in range(len(lines) - 1, -1, -1):
        if lines[line_num].strip().strip("-") == "":
            break
    return "\n".join(lines[:line_num]) if line_num > 0 else text


def strip_quoting(text: str) -> str:
    """Drops quoted lines and lines that introduce a quote."""
    return "\n".join(line for line in text.split("\n") if not _QUOTE_RE.search(line))


def read_archive(
    path, categories=CATEGORIES
) -> tuple[dict[str, list[tuple[str, str]]], dict]:
    """Reads the tarball.

    Returns:
      `names`: subset -> every `(category, file name)` in the subset (all 20
      categories), and `docs`: `(subset, category, file name) -> bytes` for
      `categories` (default the two of the binary task; None: all).
    """
    names: dict[str, list[tuple[str, str]]] = {s: [] for s in SUBSETS}
    docs: dict[tuple[str, str, str], bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                parts = member.name.removeprefix("./").split("/")
                if not member.isfile() or len(parts) != 3:
                    continue
                subset = parts[0].removeprefix("20news-bydate-")
                if subset in names:
                    names[subset].append((parts[1], parts[2]))
                    if categories is None or parts[1] in categories:
                        key = (subset, parts[1], parts[2])
                        docs[key] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"news20: `{path}` is not a complete tar.gz archive ({err}). Delete it "
            f"and {files.fetch_hint('news20')}."
        ) from err
    for subset in SUBSETS:
        for category in CATEGORIES if categories is None else categories:
            if not any(c == category for c, _ in names[subset]):
                raise ValueError(
                    f"news20: `{path}` has no documents under "
                    f"20news-bydate-{subset}/{category}/; expected the bydate layout."
                )
    return names, docs


def subset_texts(
    names, docs, subset: str, categories=CATEGORIES
) -> tuple[list[str], np.ndarray]:
    """Stripped texts and labels (the index in `categories`) of one subset.

    In scikit-learn's order for the two categories: `load_files` lists all 20
    categories (folders and files sorted by name) and shuffles them with
    `RandomState(0)`; `fetch_20newsgroups` keeps the two categories in that
    order and shuffles again with `RandomState(42)`. Other `categories` are
    ordered by the same two shuffles.
    """
    listing = sorted(names[subset])
    order = np.arange(len(listing))
    np.random.RandomState(0).shuffle(order)
    kept = [listing[i] for i in order if listing[i][0] in categories]
    shuffle = np.arange(len(kept))
    np.random.RandomState(42).shuffle(shuffle)
    texts, labels = [], []
    for i in shuffle:
        category, base = kept[i]
        text = docs[(subset, category, base)].decode("latin1")
        texts.append(strip_quoting(strip_footer(strip_header(text))))
        labels.append(categories.index(category))
    return texts, np.asarray(labels, np.int64)


def load_pool(data_dir) -> Pool:
    """1,945 documents (1,168 train then 777 test) as dense TF-IDF rows."""
    path, record = files.open_verified("news20", ARCHIVE, data_dir)
    names, docs = read_archive(path)
    train_texts, train_y = subset_texts(names, docs, "train")
    test_texts, test_y = subset_texts(names, docs, "test")
    text = extras.require("sklearn.feature_extraction.text", "the news20 TF-IDF pool")
    vectorizer = text.TfidfVectorizer(stop_words="english", min_df=0.001, max_df=0.2)
    x_train = vectorizer.fit_transform(train_texts).toarray()
    x_test = vectorizer.transform(test_texts).toarray()
    info = {
        "source": (
            "20 Newsgroups bydate, comp.sys.ibm.pc.hardware (0) vs "
            "comp.sys.mac.hardware (1); TF-IDF fitted on the 1,168 train documents"
        ),
        "files": [record],
        "class_names": CATEGORIES,
        "feature_names": tuple(vectorizer.get_feature_names_out().tolist()),
        "subset_sizes": {"train": len(train_texts), "test": len(test_texts)},
        "subset": None,
    }
    x = np.vstack([x_train, x_test])
    return Pool(x, np.concatenate([train_y, test_y]), 1.0, 2, info)
