"""`accjax experiment`: estimators against exact retraining over a grid of settings.

A setting is (data set, model, condition, seed, epochs). For each, the model is
trained with the reference recipe, exact retraining gives the ground truth, and
every estimator is scored by RMSE, Kendall tau and two-tailed Jaccard@p. Rows are
written to the JSON after every setting (atomically), so an interrupted grid keeps
what it finished and `resume=True` skips it.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import accjax
from accjax._src import extras, plots
from accjax._src.estimators.named import NEED_LEARNING_RATE, estimate
from accjax._src.files import atomic_write, dump_json

CONDITIONS = ("clean", "feature", "label")
METRICS = (
    "rmse",
    "kendall",
    "jaccard@10",
    "jaccard@30",
    "jaccard@50",
    "jaccard@70",
    "lds",
)
ESTIMATORS = (
    "sgd_ie",
    "acc_sgd_ie",
    "acc_nonlinear",
    "acc_last_layer",
    "tracin",
    "tracin_cp",
    "dvemb",
    "acc_dvemb",
    "influence_function",
)
LDS_SUBSETS, LDS_FRACTION = 50, 0.5
KEY = ("dataset", "model", "condition", "seed", "epochs")


def cv_l2(x, y, seed) -> float:
    """The reference's L2 weight: 1 / (C n), C from 5-fold LogisticRegressionCV."""
    linear_model = extras.require("sklearn.linear_model", "the reference L2 weight")
    clf = linear_model.LogisticRegressionCV(
        cv=5, fit_intercept=False, random_state=seed
    )
    with warnings.catch_warnings():  # scikit-learn's notices of future defaults
        warnings.simplefilter("ignore", FutureWarning)
        clf.fit(np.asarray(x), np.asarray(y))
    return float(1.0 / (clf.C_[0] * len(y)))


def model_data(model: str, splits, part) -> tuple:
    """One split part `(x, y)` as the model takes it: float features in the
    working dtype, images `(n, H, W, C)` and int class ids for "cnn"."""
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    x, y = np.asarray(part[0]), np.asarray(part[1])
    if model != "cnn":
        return jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    if "image_shape" not in splits.info:
        raise ValueError(
            f"model 'cnn' needs an image data set; {splits.info['name']!r} has no "
            "image_shape."
        )
    x = x.reshape((-1, *splits.info["image_shape"]))
    if splits.info.get("image_layout") == "CHW":
        x = x.transpose(0, 2, 3, 1)
    return jnp.asarray(x, dtype), jnp.asarray(y, jnp.int32)


def mlp_learning_rate(t):
    """The reference MLP's step size, 0.1 / sqrt(t + 1)."""
    return 0.1 / jnp.sqrt(t + 1.0)


@functools.cache
def make_optimizer(name: str, lr):
    """One optax optimizer object per (name, lr): estimators take the optimizer
    as a static argument, so a grid that built a new one per setting compiled
    every estimator anew for each, and its compiled code piled up in memory."""
    if name == "adam":
        return optax.adam(1e-2)
    return optax.sgd(lr, momentum=0.9 if name == "momentum" else None)


def make_problem(model: str, splits, seed: int, optimizer: str = "sgd", l2=None):
    """The reference recipes: (problem, optimizer, learning rate, query).

    mlp: 8-8 ReLU, no L2, lr 0.1 / sqrt(t + 1). logreg: L2 from `cv_l2`, lr 0.1.
    cnn (image data sets, any number of classes): `accjax.models.cnn`, Hara et
    al.'s MNIST network, softmax cross-entropy, no L2, lr 0.05.
    `optimizer="adam"` swaps in optax.adam(1e-2) (optax's defaults otherwise),
    "momentum" optax.sgd(lr, momentum=0.9), for any model; `l2`
    overrides the L2 coefficient of any model.
    """
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    train = model_data(model, splits, splits.train)
    val = model_data(model, splits, splits.val)
    key = jax.random.PRNGKey(seed)
    if model == "mlp":
        params, apply = accjax.models.mlp(key, train[0].shape[1], (8, 8), dtype=dtype)
        lr = mlp_learning_rate
        l2 = 0.0 if l2 is None else l2
    elif model == "logreg":
        params, apply = accjax.models.logistic_regression(
            key, train[0].shape[1], dtype=dtype
        )
        lr = 0.1
        l2 = cv_l2(*splits.train, seed) if l2 is None else l2
        if lr * l2 > 2:
            warnings.warn(
                f"logreg: L2 = {l2:.3g} with lr {lr} makes plain SGD diverge (the L2 "
                f"term alone scales the parameters by {1 - lr * l2:.2f} per step); "
                "its influence values are meaningless. Pass --l2 to override.",
                stacklevel=2,
            )
    elif model == "cnn":
        params, apply = accjax.models.cnn(
            key, train[0].shape[1:], splits.info["num_classes"], dtype=dtype
        )
        lr = 0.05
        l2 = 0.0 if l2 is None else l2
    else:
        raise ValueError(f"model must be 'mlp', 'logreg' or 'cnn'; got {model!r}.")
    opt = make_optimizer(optimizer, lr)
    if model == "cnn":
        loss = accjax.models.multiclass_loss(apply)
    else:
        loss = accjax.models.binary_loss(apply)
    problem = accjax.Problem(loss, params, train, l2=l2)
    return problem, opt, lr, accjax.mean_loss(loss, val)


def run_setting(
    problem, optimizer, lr, query, *, epochs, batch_size, estimators, keep_values=False
) -> dict:
    """Trains, retrains exactly, scores every estimator; returns one row.

    LDS: `LDS_SUBSETS` retrainings each keeping `LDS_FRACTION` of the examples.
    """
    run = accjax.train(problem, optimizer, batch_size=batch_size, epochs=epochs)
    start = time.perf_counter()
    exact = estimate("exact", run, query, learning_rate=lr)
    jax.block_until_ready(exact.values)
    exact_seconds = time.perf_counter() - start
    subsets = accjax.subset_retrain(
        run, query, num_subsets=LDS_SUBSETS, fraction=LDS_FRACTION
    )
    row = {
        "num_steps": run.num_steps,
        "l2": float(problem.l2),
        "exact_std": float(np.std(exact.values)),
        "seconds": {"exact": exact_seconds},
    }
    values = {"exact": np.asarray(exact.values).tolist()}
    for name in estimators:
        start = time.perf_counter()
        est = estimate(name, run, query, learning_rate=lr)
        jax.block_until_ready(est.values)
        row["seconds"][name] = time.perf_counter() - start
        row[name] = {
            "rmse": accjax.metrics.rmse(exact, est),
            "kendall": accjax.metrics.kendall(exact, est),
            **{
                f"jaccard@{p}": accjax.metrics.jaccard(exact, est, p)
                for p in (10, 30, 50, 70)
            },
            "lds": accjax.metrics.lds(est, subsets),
        }
        values[name] = np.asarray(est.values).tolist()
    if keep_values:
        row["values"] = values
    return row


def summarize(rows, estimators) -> dict:
    """Mean and std over seeds per (dataset, model, condition, epochs), each
    estimator's relative change of the mean against SGD-IE's, and its median
    wall time over the seeds."""
    groups = {}
    for r in rows:
        key = "/".join(str(r[k]) for k in KEY if k != "seed")
        groups.setdefault(key, []).append(r)
    summary = {}
    for key, sel in sorted(groups.items()):
        cell = {"seeds": len(sel)}
        for name in estimators:
            cell[name] = {}
            for m in METRICS:
                vals = [r[name][m] for r in sel]
                mean = float(np.mean(vals))
                base = (
                    float(np.mean([r["sgd_ie"][m] for r in sel]))
                    if ("sgd_ie" in sel[0])
                    else None
                )
                cell[name][m] = {
                    "mean": mean,
                    "std": float(np.std(vals)),
                    "vs_sgd_ie": (mean - base) / abs(base) if base else None,
                }
            cell[name]["seconds"] = float(np.median([r["seconds"][name] for r in sel]))
        summary[key] = cell
    return summary


def write_csv(path, summary, estimators) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                [
                    "dataset",
                    "model",
                    "condition",
                    "epochs",
                    "seeds",
                    "estimator",
                    *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")],
                ]
            )
            for key, cell in summary.items():
                for name in estimators:
                    w.writerow(
                        [
                            *key.split("/"),
                            cell["seeds"],
                            name,
                            *[
                                cell[name][m][s]
                                for m in METRICS
                                for s in ("mean", "std")
                            ],
                        ]
                    )

    atomic_write(path, write)


def run_grid(
    *,
    datasets,
    models,
    conditions,
    epochs,
    seeds,
    sizes,
    batch_size=100,
    feature_noise=0.05,
    label_noise=0.1,
    estimators=ESTIMATORS[:2],
    optimizer="sgd",
    l2=None,
    data_dir=None,
    out="accjax-experiment",
    resume=False,
    stream=None,
) -> dict:
    """Runs the grid; writes grid.json, summary.csv, metrics.png and scatter.png.

    `sizes` is (n_train, n_val, n_test). Progress (settings done / total, time
    left) goes to `stream` (stderr).
    """
    stream = sys.stderr if stream is None else stream
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}; got {c!r}.")
    sgd_only = [e for e in estimators if e in NEED_LEARNING_RATE]
    if optimizer != "sgd" and sgd_only:
        raise ValueError(
            f"estimators {sgd_only} model plain SGD; drop them with "
            f"optimizer={optimizer!r}."
        )
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "grid.json")
    rows = []
    if resume and os.path.exists(path):
        with open(path) as f:
            rows = json.load(f)["rows"]
    done = {tuple(r[k] for k in KEY) for r in rows}
    settings = [
        (d, m, c, s, e)
        for d in datasets
        for c in conditions
        for s in range(seeds)
        for m in models
        for e in epochs
    ]
    start, ran = time.perf_counter(), 0
    cache = {}
    for i, key in enumerate(settings, 1):
        if key in done:
            continue
        data, model, cond, seed, e = key
        if (data, model, cond, seed) not in cache:
            n_train, n_val, n_test = sizes
            splits = accjax.datasets.load(
                data,
                n_train=n_train,
                n_val=n_val,
                n_test=n_test,
                seed=seed,
                data_dir=data_dir,
                feature_noise=feature_noise if cond == "feature" else 0.0,
                label_noise=label_noise if cond == "label" else 0.0,
            )
            cache = {
                (data, model, cond, seed): make_problem(
                    model, splits, seed, optimizer, l2
                )
            }
        row = run_setting(
            *cache[(data, model, cond, seed)],
            epochs=e,
            batch_size=batch_size,
            estimators=estimators,
            keep_values=(seed == 0 and e == max(epochs)),
        )
        row.update(dict(zip(KEY, key, strict=True)))
        rows.append(row)
        ran += 1
        dump_json(path, {"rows": rows})
        elapsed = time.perf_counter() - start
        left = elapsed / ran * (len(settings) - i)
        print(
            f"[{i}/{len(settings)}] {data} {model} {cond} seed={seed} epochs={e} "
            f"{elapsed:.0f}s elapsed, ~{left:.0f}s left",
            file=stream,
            flush=True,
        )
    summary = summarize(rows, estimators)
    report = {
        "setting": dict(
            datasets=datasets,
            models=models,
            conditions=conditions,
            epochs=epochs,
            seeds=seeds,
            sizes=list(sizes),
            batch_size=batch_size,
            feature_noise=feature_noise,
            label_noise=label_noise,
            optimizer=optimizer,
            l2=l2,
            estimators=list(estimators),
            dtype="float64" if jax.config.jax_enable_x64 else "float32",
        ),
        "rows": rows,
        "summary": summary,
    }
    dump_json(path, report, indent=1)
    write_csv(os.path.join(out, "summary.csv"), summary, estimators)
    plots.metrics_figure(os.path.join(out, "metrics.png"), summary, estimators, epochs)
    kept = [r for r in rows if "values" in r]
    if kept:
        r = kept[0]
        plots.scatter_figure(
            os.path.join(out, "scatter.png"), r, "/".join(str(r[k]) for k in KEY)
        )
    return report
