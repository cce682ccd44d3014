"""The estimators by name: one place for the CLI, the experiment and cleansing."""

from __future__ import annotations

import jax

from accjax._src.estimators import common
from accjax._src.estimators.acc import acc_sgd_ie
from accjax._src.estimators.acc_fast import acc_sgd_ie_fast
from accjax._src.estimators.dvemb import acc_dvemb, dvemb
from accjax._src.estimators.influence_function import influence_function
from accjax._src.estimators.loo import loo_retrain
from accjax._src.estimators.sgd_ie import sgd_ie
from accjax._src.estimators.tracin import tracin
from accjax._src.problem import Influence, Run

NAMES = (
    "exact",
    "sgd_ie",
    "acc_sgd_ie",
    "acc_nonlinear",
    "acc_last_layer",
    "acc_sgd_ie_fast",
    "tracin",
    "tracin_cp",
    "dvemb",
    "acc_dvemb",
    "influence_function",
)
# The estimators that model plain SGD and take the run's learning rate.
NEED_LEARNING_RATE = ("dvemb", "acc_dvemb")
# DVEmb by name works in the full space up to this many parameters, else
# projects to it (its backward sweep holds a d x d matrix).
DVEMB_MAX_DIM = 2048


def last_layer(params):
    """A `params_subset` mask: the leaves under params' last top-level entry
    (the last layer of `models.mlp`, the "out" layer of `models.cnn`). A flat
    dict of arrays is taken as one layer and selected whole (e.g.
    `models.logistic_regression`)."""
    entries = jax.tree_util.tree_flatten_with_path(params)[0]
    last = entries[-1][0][0]
    flat = all(len(path) == 1 for path, _ in entries)  # one layer: {"w", "b"}
    return jax.tree.unflatten(
        jax.tree.structure(params), [flat or path[0] == last for path, _ in entries]
    )


def estimate(
    name: str, run: Run, query, *, learning_rate=None, progress=False
) -> Influence:
    """The estimator called `name` on every training example of `run`.

    "exact" is `loo_retrain`, "acc_nonlinear" is `acc_sgd_ie(readout=
    "nonlinear")`, "acc_last_layer" is `acc_sgd_ie` on `last_layer(params)`,
    "influence_function" uses damping 1e-3 with conjugate gradients,
    "tracin_cp" is `tracin(checkpoints="epochs")`, "dvemb" and "acc_dvemb" work
    in the full space up to `DVEMB_MAX_DIM` parameters and project to that
    dimension above it. `learning_rate` (float or optax schedule) is needed by
    the estimators in `NEED_LEARNING_RATE`.
    """
    if name == "exact":
        return loo_retrain(run, query, progress=progress)
    if name == "sgd_ie":
        return sgd_ie(run, query, progress=progress)
    if name == "acc_sgd_ie":
        return acc_sgd_ie(run, query, progress=progress)
    if name == "acc_nonlinear":
        return acc_sgd_ie(run, query, readout="nonlinear", progress=progress)
    if name == "acc_last_layer":
        subset = last_layer(run.problem.params)
        return acc_sgd_ie(run, query, params_subset=subset, progress=progress)
    if name in NEED_LEARNING_RATE and learning_rate is None:
        raise ValueError(
            f"estimator {name!r} needs `learning_rate` (the float or optax "
            "schedule the run was trained with)."
        )
    if name == "acc_sgd_ie_fast":
        return acc_sgd_ie_fast(run, query, progress=progress)
    if name in ("tracin", "tracin_cp"):
        checkpoints = "epochs" if name == "tracin_cp" else None
        return tracin(run, query, checkpoints=checkpoints, progress=progress)
    if name in ("dvemb", "acc_dvemb"):
        size = common.num_params(run.problem.params)
        fn = dvemb if name == "dvemb" else acc_dvemb
        return fn(
            run,
            query,
            learning_rate=learning_rate,
            projection_dim=None if size <= DVEMB_MAX_DIM else DVEMB_MAX_DIM,
            progress=progress,
        )
    if name == "influence_function":
        return influence_function(run, query, damping=1e-3, method="cg")
    raise ValueError(f"unknown estimator {name!r}; expected one of {NAMES}.")
