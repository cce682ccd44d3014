"""`accjax demo`: exact retraining vs SGD-IE vs ACC-SGD-IE on bundled real data."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import accjax
from accjax._src import extras
from accjax._src.datasets.bundled import breast_cancer_pool
from accjax._src.estimators.named import estimate
from accjax._src.files import atomic_write, dump_json


class UsageError(ValueError):
    """A demo option out of range; the CLI reports it and exits with status 2."""


def breast_cancer_splits(n_train: int, n_val: int, seed: int, dtype):
    """scikit-learn's bundled breast-cancer data, split as the reference does."""
    pool = breast_cancer_pool().x.shape[0]
    if n_train < 2 or n_val < 1 or n_train + n_val > pool:
        raise UsageError(
            f"--n-train {n_train} and --n-val {n_val} must be >= 2 and >= 1 and sum "
            f"to at most {pool} (the breast-cancer data set's rows)."
        )
    splits = accjax.datasets.load(
        "breast_cancer", n_train=n_train, n_val=n_val, n_test=0, seed=seed
    )
    cast = lambda part: tuple(jnp.asarray(a, dtype) for a in part)
    return cast(splits.train), cast(splits.val)


def scatter_plot(path: Path, exact, estimates: dict, title: str) -> None:
    plt = extras.pyplot("the demo's plot")

    fig, axes = plt.subplots(1, len(estimates), figsize=(4.2 * len(estimates), 4.2))
    axes = np.atleast_1d(axes)
    lo, hi = float(np.min(exact)), float(np.max(exact))
    for ax, (name, values) in zip(axes, estimates.items(), strict=True):
        ax.scatter(exact, values, s=8, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("exact leave-one-out influence")
        ax.set_ylabel(f"{name} estimate")
        rmse = accjax.metrics.rmse(exact, values)
        tau = accjax.metrics.kendall(exact, values)
        ax.set_title(f"{name}: RMSE {rmse:.2g}, tau {tau:.3f}")
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


ESTIMATORS = ("exact", "sgd_ie", "acc_sgd_ie", "acc_nonlinear")


def run_demo(
    *,
    n_train=300,
    n_val=200,
    epochs=30,
    batch_size=50,
    lr=0.1,
    seed=0,
    model="mlp",
    l2=None,
    out="accjax-demo",
    x64=False,
    stream=None,
) -> dict:
    """Trains the reference model and compares the estimators; returns the report.

    `acc_nonlinear` is ACC-SGD-IE read out as f(params + D_k) - f(params)
    instead of the first-order <grad f, D_k>.
    """
    stream = sys.stdout if stream is None else stream
    if x64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if x64 else jnp.float32
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_data, val_data = breast_cancer_splits(n_train, n_val, seed, dtype)
    key, num_features = jax.random.PRNGKey(seed), train_data[0].shape[1]
    if model == "mlp":
        params, apply = accjax.models.mlp(key, num_features, (8, 8), dtype=dtype)
        l2 = 0.0 if l2 is None else l2
    elif model == "logreg":
        params, apply = accjax.models.logistic_regression(
            key, num_features, dtype=dtype
        )
        l2 = 0.01 if l2 is None else l2
    else:
        raise UsageError(f"--model must be 'mlp' or 'logreg'; got {model!r}.")
    loss = accjax.models.binary_loss(apply)
    problem = accjax.Problem(loss, params, train_data, l2=l2)
    optimizer = optax.sgd(lambda t: lr / jnp.sqrt(t + 1.0))
    run = accjax.train(problem, optimizer, batch_size=batch_size, epochs=epochs)
    query = accjax.mean_loss(loss, val_data)
    print(
        f"breast cancer (scikit-learn), {n_train} train / {n_val} val rows, {model}, "
        f"L2 {l2}, "
        f"{run.num_steps} SGD steps (batch {batch_size}, {epochs} epochs, lr {lr}/"
        f"sqrt(t+1)), {jnp.dtype(dtype).name}",
        file=stream,
    )
    results, seconds = {}, {}
    for name in ESTIMATORS:
        start = time.perf_counter()
        results[name] = estimate(name, run, query, progress=name)
        seconds[name] = time.perf_counter() - start
    exact = results.pop("exact")
    table = accjax.metrics.compare(exact, results, jaccard_at=(10, 30))
    for name in table:
        table[name] = {
            k: table[name][k] for k in ("rmse", "kendall", "jaccard@10", "jaccard@30")
        }
    print(accjax.metrics.format_table(table, **{"wall_s": seconds}), file=stream)
    print(
        f"exact leave-one-out retraining: {seconds['exact']:.1f} s. Wall times include "
        "JIT compilation; bench/api.py times the public calls without it.",
        file=stream,
    )
    report = {
        "setting": dict(
            data="breast_cancer",
            n_train=n_train,
            n_val=n_val,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            num_steps=run.num_steps,
            dtype=jnp.dtype(dtype).name,
            model=model,
            l2=l2,
            backend=jax.default_backend(),
        ),
        "metrics": table,
        "wall_s_including_compile": seconds,
        "influence": {
            "targets": np.asarray(exact.targets).tolist(),
            "exact": np.asarray(exact.values).tolist(),
            **{k: np.asarray(v.values).tolist() for k, v in results.items()},
        },
    }
    json_path, png_path = out / "demo.json", out / "demo.png"
    dump_json(json_path, report, indent=1)
    scatter_plot(
        png_path,
        np.asarray(exact.values),
        {k: np.asarray(v.values) for k, v in results.items()},
        f"breast cancer, {model}, {run.num_steps} steps ({jnp.dtype(dtype).name})",
    )
    print(f"wrote {json_path} and {png_path}", file=stream)
    return report
