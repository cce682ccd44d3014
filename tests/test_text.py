"""`datasets.load_text`: 20 Newsgroups as token sequences, on a fake archive in
the official bydate layout (all 20 categories) and on the real one."""

import re
from collections import Counter

import numpy as np
import pytest

import accjax.datasets as ds
from accjax._src.datasets import newsgroups
from tests import fake_data
from tests.test_datasets import fake, fake_dir  # noqa: F401 (fixtures)


def _stripped(raw: bytes) -> str:
    text = raw.decode("latin1")
    return newsgroups.strip_quoting(
        newsgroups.strip_footer(newsgroups.strip_header(text))
    )


def test_fake_archive_sizes_labels_and_tokens(fake, fake_dir):  # noqa: F811
    splits = ds.load_text(data_dir=fake_dir, n_val=5, vocab_size=60, max_len=12)
    docs = fake.news20["docs"]
    num_train = sum(1 for s, _, _ in docs if s == "train")
    num_test = sum(1 for s, _, _ in docs if s == "test")
    (x, _), (xv, _), (xt, yt) = splits.train, splits.val, splits.test
    assert x.shape == (num_train - 5, 12) and xv.shape == (5, 12)
    assert xt.shape == (num_test, 12) and x.dtype == np.int32
    assert splits.info["class_names"] == tuple(sorted(fake_data.NEWS20_CATEGORIES))
    vocabulary = splits.info["vocabulary"]
    assert len(vocabulary) == 60 and vocabulary[:2] == ("<pad>", "<unk>")
    # the vocabulary: the 58 most frequent words of the training texts only
    train_texts = splits.info["texts"]["train"]
    counts = Counter(
        w for t in train_texts for w in re.findall(r"[a-z0-9]+", t.lower())
    )
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    assert vocabulary[2:] == tuple(ranked[:58])
    # every row: its text's first 12 words as ids (1 outside the vocabulary)
    ids = {w: i for i, w in enumerate(vocabulary)}
    parts = ("train", "val", "test")
    for part, (tokens, labels) in zip(parts, splits[:3], strict=True):
        for row, text, label in zip(
            tokens, splits.info["texts"][part], labels, strict=True
        ):
            want = [ids.get(w, 1) for w in re.findall(r"[a-z0-9]+", text.lower())]
            want = (want + [0] * 12)[:12]
            np.testing.assert_array_equal(row, want)
            assert 0 <= label < 20
    # texts and labels are those of the archive, stripped (a CRLF post strips
    # to "", as in scikit-learn, so a text may belong to several categories)
    by_text = {}
    for (subset, category, _), raw in docs.items():
        by_text.setdefault((subset, _stripped(raw)), set()).add(category)
    classes = splits.info["class_names"]
    for text, label in zip(splits.info["texts"]["test"], yt, strict=True):
        assert classes[label] in by_text[("test", text)]


def test_fake_archive_label_noise_and_determinism(fake_dir):  # noqa: F811
    clean = ds.load_text(data_dir=fake_dir, n_val=4, vocab_size=40, max_len=8)
    noisy = ds.load_text(
        data_dir=fake_dir, n_val=4, vocab_size=40, max_len=8, label_noise=0.2
    )
    again = ds.load_text(
        data_dir=fake_dir, n_val=4, vocab_size=40, max_len=8, label_noise=0.2
    )
    flipped = noisy.info["flipped"]
    n = clean.train[1].shape[0]
    assert flipped.size == int(0.2 * n)
    changed = np.flatnonzero(noisy.train[1] != clean.train[1])
    np.testing.assert_array_equal(changed, flipped)  # always to another class
    np.testing.assert_array_equal(noisy.train[0], clean.train[0])
    for a, b in zip(noisy[:3], again[:3], strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_fake_archive_categories(fake_dir):  # noqa: F811
    """Two categories: their test posts, in the same order, relabelled 0 / 1."""
    pair = ("comp.sys.mac.hardware", "comp.sys.ibm.pc.hardware")
    every = ds.load_text(data_dir=fake_dir, n_val=4, max_len=8, vocab_size=30)
    two = ds.load_text(
        data_dir=fake_dir, n_val=4, max_len=8, vocab_size=30, categories=pair
    )
    assert two.info["class_names"] == tuple(sorted(pair))
    names = every.info["class_names"]
    kept = [
        (text, names[label])
        for text, label in zip(every.info["texts"]["test"], every.test[1], strict=True)
        if names[label] in pair
    ]
    got = [
        (text, two.info["class_names"][label])
        for text, label in zip(two.info["texts"]["test"], two.test[1], strict=True)
    ]
    assert got == kept and set(two.train[1].tolist()) == {0, 1}
    with pytest.raises(ValueError, match="`categories`"):
        ds.load_text(data_dir=fake_dir, categories=("sci.nothing",))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="mnist"), "`name`"),
        (dict(vocab_size=2), "`vocab_size`"),
        (dict(max_len=0), "`max_len`"),
        (dict(label_noise=1.5), "`label_noise`"),
        (dict(n_val=10**6), "`n_val`"),
    ],
)
def test_bad_arguments_are_named(fake_dir, kwargs, match):  # noqa: F811
    with pytest.raises(ValueError, match=match):
        ds.load_text(data_dir=fake_dir, **kwargs)


def test_real_archive(real_data_dir):
    splits = ds.load_text(data_dir=real_data_dir, n_val=1000, max_len=128)
    assert splits.train[0].shape == (10314, 128)
    assert splits.val[0].shape == (1000, 128) and splits.test[0].shape == (7532, 128)
    assert splits.info["num_classes"] == 20
    assert np.bincount(splits.test[1]).sum() == 7532
    assert len(set(splits.info["vocabulary"])) == 8000
    assert np.all(np.bincount(splits.train[1], minlength=20) > 300)
