"""Accuracy of SGD-IE and ACC-SGD-IE against exact retraining, over training length.

    python bench/accuracy.py --out bench-out/accuracy.json

On scikit-learn's bundled breast-cancer data (offline), for the reference MLP and for
L2 logistic regression, over several epochs and seeds, in float64 so that exact
retraining is a trustworthy ground truth. Reports RMSE, Kendall tau and Jaccard@10 of
SGD-IE, ACC-SGD-IE (linear read-out) and ACC-SGD-IE (non-linear read-out), and writes
JSON plus a plot of RMSE against epochs (mean and spread over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import accjax  # noqa: E402

ESTIMATORS = {
    "sgd_ie": (accjax.sgd_ie, {}),
    "acc_sgd_ie": (accjax.acc_sgd_ie, {}),
    "acc_nonlinear": (accjax.acc_sgd_ie, {"readout": "nonlinear"}),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["mlp", "logreg"])
    p.add_argument("--epochs", type=int, nargs="*", default=[2, 10, 20, 40])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default="sgd",
        help="sgd: the reference recipes; adam: optax.adam(1e-2, eps_root=1e-8)",
    )
    p.add_argument("--out", default="bench-out/accuracy.json")
    return p.parse_args(argv)


def one_setting(model, epochs, seed, args):
    splits = accjax.datasets.load(
        "breast_cancer", n_train=args.n_train, n_val=args.n_val, n_test=0, seed=seed
    )
    train, val = (
        tuple(jnp.asarray(a, jnp.float64) for a in part)
        for part in (splits.train, splits.val)
    )
    key = jax.random.PRNGKey(seed)
    if model == "mlp":  # the reference DNN: no L2, lr 0.1 / sqrt(t + 1)
        params, apply = accjax.models.mlp(key, 30, (8, 8), dtype=jnp.float64)
        l2, optimizer = 0.0, optax.sgd(lambda t: 0.1 / jnp.sqrt(t + 1.0))
    else:  # the reference logistic regression: constant lr
        params, apply = accjax.models.logistic_regression(key, 30, dtype=jnp.float64)
        l2, optimizer = 0.01, optax.sgd(0.1)
    if args.optimizer == "adam":
        optimizer = optax.adam(1e-2, eps_root=1e-8)
    loss = accjax.models.binary_loss(apply)
    problem = accjax.Problem(loss, params, train, l2=l2)
    run = accjax.train(problem, optimizer, batch_size=args.batch_size, epochs=epochs)
    query = accjax.mean_loss(loss, val)
    exact = accjax.loo_retrain(run, query)
    row = {
        "model": model,
        "epochs": epochs,
        "seed": seed,
        "l2": l2,
        "num_steps": run.num_steps,
        "exact_std": float(np.std(exact.values)),
    }
    for name, (estimator, options) in ESTIMATORS.items():
        est = estimator(run, query, **options)
        row[name] = {
            "rmse": accjax.metrics.rmse(exact, est),
            "kendall": accjax.metrics.kendall(exact, est),
            "jaccard@10": accjax.metrics.jaccard(exact, est, 10),
        }
    return row


def summarize(rows, models, epochs):
    summary = {}
    for model in models:
        for e in epochs:
            sel = [r for r in rows if r["model"] == model and r["epochs"] == e]
            summary[f"{model}/{e}"] = {
                name: {
                    metric: [
                        float(np.mean([r[name][metric] for r in sel])),
                        float(np.std([r[name][metric] for r in sel])),
                    ]
                    for metric in ("rmse", "kendall", "jaccard@10")
                }
                for name in ESTIMATORS
            }
    return summary


def plot(path, summary, models, epochs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4))
    for ax, model in zip(np.atleast_1d(axes), models, strict=True):
        for name in ESTIMATORS:
            mean = np.array([summary[f"{model}/{e}"][name]["rmse"][0] for e in epochs])
            std = np.array([summary[f"{model}/{e}"][name]["rmse"][1] for e in epochs])
            ax.plot(epochs, mean, marker="o", label=name)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("epochs")
        ax.set_ylabel("RMSE vs exact retraining")
        ax.set_title(f"breast cancer, {model}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    total = len(args.models) * len(args.epochs) * args.seeds
    start = time.perf_counter()
    for model in args.models:
        for e in args.epochs:
            for seed in range(args.seeds):
                rows.append(one_setting(model, e, seed, args))
                print(
                    f"[{len(rows)}/{total}] {model} epochs={e} seed={seed} "
                    f"{time.perf_counter() - start:.0f}s",
                    flush=True,
                )
    summary = summarize(rows, args.models, args.epochs)
    report = {
        "bench": "accuracy",
        "backend": jax.default_backend(),
        "setting": vars(args),
        "rows": rows,
        "summary": summary,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    plot(args.out.removesuffix(".json") + ".png", summary, args.models, args.epochs)
    for key, by_name in summary.items():
        cells = "  ".join(
            f"{n} {v['rmse'][0]:.3g} / {v['kendall'][0]:.3f}"
            for n, v in by_name.items()
        )
        print(f"{key:12s} rmse / kendall: {cells}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
