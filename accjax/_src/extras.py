"""The optional dependencies: each names the extra that installs it.

The core install (`pip install accjax`) is what the estimators need: jax,
optax, numpy. flax (`accjax.models`' nnx helpers), scikit-learn (the data
sets) and matplotlib (the plots) come with `accjax[nnx]`, `accjax[data]`,
`accjax[plot]`, or all of them with `accjax[all]`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {"flax": "nnx", "sklearn": "data", "matplotlib": "plot"}


def require(module: str, what: str) -> ModuleType:
    """`import module`, or an ImportError that names `what` needs it and the
    extra that installs it."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = {"sklearn": "scikit-learn"}.get(top, top)
        raise ImportError(
            f"{what} needs {package}, which the core install of accjax leaves out: "
            f"pip install 'accjax[{EXTRAS[top]}]' (or 'accjax[all]')."
        ) from error


def pyplot(what: str) -> ModuleType:
    """matplotlib.pyplot with the file-only Agg backend."""
    require("matplotlib", what).use("Agg")
    return require("matplotlib.pyplot", what)
