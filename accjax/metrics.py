"""Agreement of influence estimates with a ground truth."""

from accjax._src.metrics import compare as compare
from accjax._src.metrics import detection as detection
from accjax._src.metrics import format_table as format_table
from accjax._src.metrics import jaccard as jaccard
from accjax._src.metrics import kendall as kendall
from accjax._src.metrics import lds as lds
from accjax._src.metrics import pearson as pearson
from accjax._src.metrics import rmse as rmse
from accjax._src.metrics import spearman as spearman

__all__ = [
    "compare",
    "detection",
    "format_table",
    "jaccard",
    "kendall",
    "lds",
    "pearson",
    "rmse",
    "spearman",
]
