"""Where influence comes from: each epoch's share, by estimator; JSON and a plot.

    python bench/per_epoch.py --out bench-out/per-epoch     # about a minute
    python bench/per_epoch.py --quick --out /tmp/per-epoch  # the MLP, 2 epochs

The demo's run (bundled breast cancer, 300 training / 200 validation rows, batch
50, 30 epochs, float64): the MLP 8-8 (lr 0.1/sqrt(t+1)) and logistic regression
(L2 0.01, lr 0.1). For SGD-IE, ACC-SGD-IE and DVEmb with `per_epoch=True`, the
mean over all training examples of |contribution of epoch e| (the part of the
influence that k's occurrence in epoch e injects, carried to the end), and the
fraction of the total influence (sum of |values|) that the last 5 epochs carry.
"""

from __future__ import annotations

import os

import jax

jax.config.update("jax_enable_x64", True)

import harness  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import accjax  # noqa: E402


def parse_args(argv=None):
    parser = harness.parser(
        __doc__, out="bench-out/per-epoch", out_help="folder for the JSON and plot"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--models", nargs="+", default=["mlp", "logreg"], choices=("mlp", "logreg")
    )
    return harness.parse_args(parser, argv, quick=dict(epochs=2, models=["mlp"]))


def main(argv=None):
    args = parse_args(argv)
    splits = accjax.datasets.load("breast_cancer", n_train=300, n_val=200, n_test=69)
    cast = lambda part: tuple(jnp.asarray(a, jnp.float64) for a in part)  # noqa: E731
    train, val = cast(splits.train), cast(splits.val)
    key = jax.random.PRNGKey(0)
    report = {}
    for model in args.models:
        if model == "mlp":
            params, apply = accjax.models.mlp(key, 30, (8, 8), dtype=jnp.float64)
            lr, l2 = (lambda t: 0.1 / jnp.sqrt(t + 1.0)), 0.0
        else:
            params, apply = accjax.models.logistic_regression(
                key, 30, dtype=jnp.float64
            )
            lr, l2 = 0.1, 0.01
        loss = accjax.models.binary_loss(apply)
        problem = accjax.Problem(loss, params, train, l2=l2)
        run = accjax.train(problem, optax.sgd(lr), batch_size=50, epochs=args.epochs)
        query = accjax.mean_loss(loss, val)
        estimates = {
            "SGD-IE": accjax.sgd_ie(run, query, per_epoch=True),
            "ACC-SGD-IE": accjax.acc_sgd_ie(
                run, query, per_epoch=True, chunk_size=100, progress="acc per epoch"
            ),
            "DVEmb": accjax.dvemb(run, query, learning_rate=lr, per_epoch=True),
        }
        report[model] = {}
        for name, inf in estimates.items():
            parts = np.abs(np.asarray(inf.per_epoch))
            total = np.abs(np.asarray(inf.values)).sum()
            report[model][name] = {
                "mean_abs_per_epoch": parts.mean(0).tolist(),
                "last5_share": float(parts[:, -5:].sum() / parts.sum()),
                "sum_abs_values_over_sum_abs_parts": float(total / parts.sum()),
            }
            print(
                f"{model:6s} {name:11s} last 5 epochs carry "
                f"{report[model][name]['last5_share']:.0%} of sum |part|; "
                f"|sum| / sum |part| = "
                f"{report[model][name]['sum_abs_values_over_sum_abs_parts']:.2f}",
                flush=True,
            )
    harness.write_json(os.path.join(args.out, "per_epoch.json"), report)
    plot(os.path.join(args.out, "per_epoch.png"), report)
    return report


def plot(path, report):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(report), figsize=(5.2 * len(report), 3.8), squeeze=False
    )
    titles = {"mlp": "MLP 8-8", "logreg": "logistic regression, L2 0.01"}
    for ax, (model, by_name) in zip(axes[0], report.items(), strict=True):
        for name, r in by_name.items():
            y = r["mean_abs_per_epoch"]
            ax.plot(np.arange(1, len(y) + 1), y, marker=".", label=name)
        ax.set_yscale("log")
        ax.set_xlabel("epoch of the occurrence")
        ax.set_ylabel("mean |contribution| to the influence")
        ax.set_title(f"breast cancer, {titles[model]}")
        ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
