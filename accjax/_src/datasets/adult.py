"""UCI Adult with the reference preprocessing (the ACC repository's AdultModule).

The reference reads both CSVs with pandas and relies on pre-copy-on-write
semantics for two column-level in-place edits (merging 'Married-AF-spouse' and
filling missing countries). This is a plain-numpy replica of those semantics:
6 numeric columns plus 56 one-hot columns, 62 features.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from accjax._src.datasets import files
from accjax._src.datasets.pool import Pool

COLUMNS = (
    "Age", "Workclass", "fnlgwt", "Education", "Education num", "Marital Status",
    "Occupation", "Relationship", "Race", "Sex", "Capital Gain", "Capital Loss",
    "Hours/Week", "Native country", "Income",
)  # fmt: skip
NUMERIC = ("Age", "fnlgwt", "Education num", "Capital Gain", "Capital Loss",
           "Hours/Week")  # fmt: skip
CATEGORICAL = ("Workclass", "Education", "Marital Status", "Occupation",
               "Relationship", "Race", "Sex", "Native country")  # fmt: skip

_PRIMARY = {" 1st-4th", " 5th-6th", " 7th-8th", " 9th", " 10th", " 11th", " 12th"}
_COUNTRY_GROUPS = {
    "US": (" United-States", " Cuba", " 0"),
    "Western": (" England", " Germany", " Canada", " Italy", " France", " Greece",
                " Philippines"),
    "Poor": (" Mexico", " Puerto-Rico", " Honduras", " Jamaica", " Columbia",
             " Laos", " Portugal", " Haiti", " Dominican-Republic", " El-Salvador",
             " Guatemala", " Peru", " Trinadad&Tobago",
             " Outlying-US(Guam-USVI-etc)", " Nicaragua", " Vietnam",
             " Holand-Netherlands"),
    "Eastern": (" India", " Iran", " Cambodia", " Taiwan", " Japan", " Yugoslavia",
                " China", " Hong"),
    "Poland team": (" South", " Poland", " Ireland", " Hungary", " Scotland",
                    " Thailand", " Ecuador"),
}  # fmt: skip
_COUNTRY = {c: group for group, cs in _COUNTRY_GROUPS.items() for c in cs}


def read_rows(path, skip: int) -> list[list[str]]:
    """The rows of a headerless Adult CSV, blank lines dropped, 15 fields each."""
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    rows = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if lineno <= skip or not row:
            continue
        if len(row) != len(COLUMNS):
            raise ValueError(
                f"adult: `{path}` line {lineno} has {len(row)} fields; expected "
                f"{len(COLUMNS)}. The file is corrupt; delete it and "
                f"{files.fetch_hint('adult')}."
            )
        rows.append(row)
    return rows


def _clean_category(col: str, value: str) -> str | None:
    """The reference's per-column edits; None is a missing value (NaN)."""
    if value == " ?":
        value = None
    if col == "Education" and value in _PRIMARY:
        return " Primary"
    if col == "Marital Status" and value == " Married-AF-spouse":
        return " Married-civ-spouse"
    if col == "Native country":
        value = " 0" if value is None else value
        return _COUNTRY.get(value, value)
    return value


def preprocess(rows: list[list[str]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features `(n, 62)` float64, labels `(n,)` int64 and feature names.

    Column order as pandas leaves it: the numeric columns in file order, then per
    categorical column (in file order) one indicator per category, categories
    sorted as strings, prefixed `"<column>_"`. Missing categories are all-zero.
    """
    table = np.array(rows, dtype=str)
    column = {c: table[:, i] for i, c in enumerate(COLUMNS)}
    y = np.char.startswith(np.char.strip(column["Income"]), ">50K")
    numeric = np.stack([column[c].astype(np.float64) for c in NUMERIC], axis=1)
    fnlgwt = NUMERIC.index("fnlgwt")
    numeric[:, fnlgwt] = np.log1p(numeric[:, fnlgwt])
    blocks, names = [numeric], list(NUMERIC)
    for col in CATEGORICAL:
        raw, inverse = np.unique(column[col], return_inverse=True)
        cleaned = [_clean_category(col, v) for v in raw.tolist()]
        categories = sorted({v for v in cleaned if v is not None})
        position = [categories.index(v) if v is not None else -1 for v in cleaned]
        codes = np.asarray(position)[inverse.reshape(-1)]
        onehot = (codes[:, None] == np.arange(len(categories))).astype(np.float64)
        blocks.append(onehot)
        names += [f"{col}_{c}" for c in categories]
    return np.hstack(blocks), y.astype(np.int64), names


def load_pool(data_dir) -> Pool:
    """All 48,842 rows: `adult-training.csv` then `adult-test.csv`."""
    train_path, train_rec = files.open_verified("adult", "adult-training.csv", data_dir)
    test_path, test_rec = files.open_verified("adult", "adult-test.csv", data_dir)
    rows = read_rows(train_path, skip=0) + read_rows(test_path, skip=1)
    x, y, names = preprocess(rows)
    info = {
        "source": "UCI Adult, adult.data + adult.test (48,842 rows)",
        "files": [train_rec, test_rec],
        "class_names": ("<=50K", ">50K"),
        "feature_names": tuple(names),
        "subset": None,
    }
    return Pool(x, y, 1.0, 2, info)
