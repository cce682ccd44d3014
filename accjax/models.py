"""The reference experiments' models as plain `(params, apply)` pairs, and flax
nnx modules through `from_nnx`."""

from typing import TYPE_CHECKING

from accjax._src.models import binary_cross_entropy as binary_cross_entropy
from accjax._src.models import binary_error as binary_error
from accjax._src.models import binary_loss as binary_loss
from accjax._src.models import cnn as cnn
from accjax._src.models import logistic_regression as logistic_regression
from accjax._src.models import mlp as mlp
from accjax._src.models import multiclass_error as multiclass_error
from accjax._src.models import multiclass_loss as multiclass_loss
from accjax._src.models import random_crop as random_crop
from accjax._src.models import random_crop_flip as random_crop_flip
from accjax._src.models import softmax_cross_entropy as softmax_cross_entropy

if TYPE_CHECKING:
    from accjax._src.nnx_models import CifarCNN as CifarCNN
    from accjax._src.nnx_models import NnxModel as NnxModel
    from accjax._src.nnx_models import from_nnx as from_nnx
    from accjax._src.transformer import TextTransformer as TextTransformer

# The flax nnx helpers, imported on first use: flax is the `accjax[nnx]` extra.
_NNX = {
    "CifarCNN": "accjax._src.nnx_models",
    "NnxModel": "accjax._src.nnx_models",
    "from_nnx": "accjax._src.nnx_models",
    "TextTransformer": "accjax._src.transformer",
}


def __getattr__(name: str):
    if name in _NNX:
        from accjax._src import extras

        extras.require("flax", f"accjax.models.{name}")
        import importlib

        return getattr(importlib.import_module(_NNX[name]), name)
    raise AttributeError(f"module 'accjax.models' has no attribute {name!r}")


__all__ = [
    "CifarCNN",
    "NnxModel",
    "TextTransformer",
    "binary_cross_entropy",
    "binary_error",
    "binary_loss",
    "cnn",
    "from_nnx",
    "logistic_regression",
    "mlp",
    "multiclass_error",
    "multiclass_loss",
    "random_crop",
    "random_crop_flip",
    "softmax_cross_entropy",
]
