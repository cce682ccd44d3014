"""Benchmark data sets: loaders for the official file formats, and corruptions.

`load(name, n_train=..., n_val=..., n_test=..., seed=...)` draws the reference
experiments' splits; `load_text("news20", ...)` gives 20 Newsgroups as token
sequences; `fetch(name)` downloads the official files; data files are
found in `resolve_data_dir()` (the `data_dir` argument, else `$ACCJAX_DATA`,
else `~/.cache/accjax`). See docs/data.md.
"""

from accjax._src.datasets.fetch import fetch as fetch
from accjax._src.datasets.load import DATASETS as DATASETS
from accjax._src.datasets.load import Splits as Splits
from accjax._src.datasets.load import load as load
from accjax._src.datasets.paths import resolve_data_dir as resolve_data_dir
from accjax._src.datasets.text import load_text as load_text

__all__ = [
    "DATASETS",
    "Splits",
    "fetch",
    "load",
    "load_text",
    "resolve_data_dir",
]
