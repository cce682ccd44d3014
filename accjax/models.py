"""The reference experiments' models as plain `(params, apply)` pairs."""

from accjax._src.models import binary_cross_entropy as binary_cross_entropy
from accjax._src.models import binary_error as binary_error
from accjax._src.models import binary_loss as binary_loss
from accjax._src.models import logistic_regression as logistic_regression
from accjax._src.models import mlp as mlp

__all__ = [
    "binary_cross_entropy",
    "binary_error",
    "binary_loss",
    "logistic_regression",
    "mlp",
]
