"""`load_text`: 20 Newsgroups (all 20 classes) as padded token sequences.

The tokenizer is a word vocabulary: lower-cased runs of letters and digits,
the `vocab_size - 2` most frequent words of the training split (ties broken
alphabetically), id 0 for padding and id 1 for every other word. A word
vocabulary rather than a trained subword tokenizer (BPE) because it needs no
other package, is exactly reproducible from the training texts alone, and
keeps every token a readable word, which is what an attribution shown as text
snippets needs.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from accjax._src.datasets import corrupt, files, newsgroups
from accjax._src.datasets.load import Splits, check_count, file_state

PAD, UNKNOWN = 0, 1
_WORD = re.compile(r"[a-z0-9]+")
_TEXTS: dict[tuple, dict] = {}


def words(text: str) -> list[str]:
    """The words of a text: lower-cased runs of ASCII letters and digits."""
    return _WORD.findall(text.lower())


def build_vocabulary(texts, size: int) -> tuple[str, ...]:
    """`("<pad>", "<unk>")` and the `size - 2` most frequent words of `texts`."""
    counts = Counter(w for text in texts for w in words(text))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ("<pad>", "<unk>") + tuple(w for w, _ in ranked[: size - 2])


def encode(texts, vocabulary, max_len: int) -> np.ndarray:
    """int32 `(len(texts), max_len)`: each text's first `max_len` word ids,
    then padding; words outside `vocabulary` are `UNKNOWN`."""
    ids = {w: i for i, w in enumerate(vocabulary)}
    out = np.full((len(texts), max_len), PAD, np.int32)
    for row, text in zip(out, texts, strict=True):
        tokens = [ids.get(w, UNKNOWN) for w in words(text)[:max_len]]
        row[: len(tokens)] = tokens
    return out


def _news20_texts(data_dir) -> dict:
    """Every bydate post (headers, signatures and quotes stripped), parsed once
    per process and file state."""
    key = file_state("news20", data_dir)
    if key not in _TEXTS:
        path, record = files.open_verified("news20", newsgroups.ARCHIVE, data_dir)
        names, docs = newsgroups.read_archive(path, categories=None)
        classes = tuple(sorted({c for c, _ in names["train"]}))
        parts = {
            s: newsgroups.subset_texts(names, docs, s, classes)
            for s in newsgroups.SUBSETS
        }
        _TEXTS[key] = dict(parts=parts, classes=classes, record=record)
    return _TEXTS[key]


def _check_positive(what: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"`{what}` must be an int >= {least}; got {value!r}.")
    if value < least:
        raise ValueError(f"`{what}` must be an int >= {least}; got {value!r}.")
    return int(value)


def load_text(
    name: str = "news20",
    *,
    n_val: int = 1000,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    data_dir=None,
    vocab_size: int = 8000,
    max_len: int = 128,
    label_noise: float = 0.0,
    categories=None,
) -> Splits:
    """20 Newsgroups' official bydate posts as padded token sequences, all 20
    classes or `categories` (ids in the sorted order of the category names).

    Validation is `n_val` posts of the official training set
    (`RandomState(seed).permutation(11314)[:n_val]`), train the other training
    posts in file order (the first `n_train`), test the first `n_test` posts of
    the official test set. Headers, signatures and quoted lines are stripped
    as scikit-learn's `remove=("headers", "footers", "quotes")` does. The
    vocabulary (module docstring) is built from the training split only, after
    the validation posts are drawn, and is deterministic.

    Args:
      name: "news20".
      n_val, n_train, n_test: sizes as above (None: all).
      seed: the validation draw and the label flips.
      data_dir: the data directory (as for `load`).
      vocab_size: ids in all, padding and unknown included (>= 3).
      max_len: tokens per post: the first `max_len` words, then padding.
      label_noise: fraction of training labels flipped to another class drawn
        uniformly (`corrupt.flip_labels`, as `load` does).
      categories: None (all 20) or a sequence of category names to keep (class
        ids in their sorted order), e.g. `("comp.sys.ibm.pc.hardware",
        "comp.sys.mac.hardware")`; the split sizes are then counts of their posts.

    Returns:
      `Splits` whose parts are `(tokens int32 (n, max_len), labels int32 (n,))`;
      `info` has `vocabulary` (tuple of words by id), `texts` (the stripped
      posts of each part, in row order), `class_names`, `flipped` (sorted
      indices into train), `pool_indices` (rows of the official train and
      test sets), `truncated` (fraction of training posts longer than
      `max_len` words), `files`, and the arguments.
    """
    if name != "news20":
        raise ValueError(f"`name` must be 'news20'; got {name!r}.")
    vocab_size = _check_positive("vocab_size", vocab_size, 3)
    max_len = _check_positive("max_len", max_len, 1)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0; got {seed!r}.")
    if not 0 <= label_noise <= 1:
        raise ValueError(
            f"`label_noise` must be a fraction in [0, 1]; got {label_noise!r}."
        )
    texts = _news20_texts(data_dir)
    (train_texts, train_y), (test_texts, test_y) = (
        texts["parts"][s] for s in newsgroups.SUBSETS
    )
    classes = texts["classes"]
    if categories is not None:
        unknown = sorted(set(categories) - set(classes))
        if unknown or not categories:
            raise ValueError(
                f"`categories` must name some of {classes}; got {categories!r}."
            )
        classes = tuple(sorted(set(categories)))
        old = [texts["classes"].index(c) for c in classes]
        remap = np.full(len(texts["classes"]), -1)
        remap[old] = np.arange(len(classes))

        def keep(texts_, labels):
            rows = np.flatnonzero(np.isin(labels, old))
            return [texts_[i] for i in rows], remap[labels[rows]]

        train_texts, train_y = keep(train_texts, train_y)
        test_texts, test_y = keep(test_texts, test_y)
    available = len(train_texts)
    n_val = check_count("n_val", n_val, available - 1, allow_none=False)
    n_train = check_count("n_train", n_train, available - n_val, allow_none=True)
    n_test = check_count("n_test", n_test, len(test_texts), allow_none=True)
    if n_train < 1:
        raise ValueError(f"`n_train` must be >= 1; got {n_train}.")
    order = np.random.RandomState(seed).permutation(available)
    rows = {
        "train": np.sort(order[n_val:])[:n_train],
        "val": order[:n_val],
        "test": np.arange(n_test),
    }
    chosen = {
        part: [(train_texts if part != "test" else test_texts)[i] for i in rows[part]]
        for part in rows
    }
    labels = {
        part: (train_y if part != "test" else test_y)[rows[part]] for part in rows
    }
    num_classes = len(classes)
    labels["train"], flipped = corrupt.flip_labels(
        labels["train"], label_noise, int(seed), num_classes
    )
    vocabulary = build_vocabulary(chosen["train"], vocab_size)
    parts = [
        (encode(chosen[p], vocabulary, max_len), labels[p].astype(np.int32))
        for p in ("train", "val", "test")
    ]
    lengths = np.array([len(words(t)) for t in chosen["train"]])
    info = dict(
        name=name,
        source="20 Newsgroups bydate, all 20 categories, word tokens",
        files=[texts["record"]],
        class_names=classes,
        num_classes=num_classes,
        vocabulary=vocabulary,
        texts=chosen,
        pool_indices=rows,
        flipped=flipped,
        label_noise=float(label_noise),
        truncated=float(np.mean(lengths > max_len)),
        vocab_size=vocab_size,
        max_len=max_len,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        seed=int(seed),
    )
    return Splits(parts[0], parts[1], parts[2], info)
