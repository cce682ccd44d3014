"""The reference accuracy study: SGD-IE vs ACC-SGD-IE against exact retraining.

    python bench/paper.py --out bench-out/paper.json                  # the full grid
    python bench/paper.py --datasets adult --epochs 2 38 --seeds 2    # a slice

Reference setup (paper-notes section 4.1): Adult, 20 Newsgroups (ibm vs mac) and
MNIST 1-vs-7 with 400/400/400 train/val/test rows; the MLP 8-8 (no L2, lr 0.1 /
sqrt(t + 1)) and logistic regression (L2 = 1 / (C n) with C from a 5-fold
LogisticRegressionCV on the training part, constant lr 0.1); batch 100; epochs
2, 6, ..., 38; clean data, Gaussian feature noise, flipped labels. Influence on the
mean validation loss, ground truth by exact retraining in float64. Rows are written
to the JSON after every setting (atomically), so an interrupted run keeps what it
finished; `--resume` skips settings already in the file.
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

CONDITIONS = ("clean", "feature", "label")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="*", default=["adult", "news20", "mnist"])
    p.add_argument("--models", nargs="*", default=["mlp", "logreg"])
    p.add_argument("--conditions", nargs="*", default=list(CONDITIONS))
    p.add_argument("--epochs", type=int, nargs="*", default=list(range(2, 39, 4)))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--size", type=int, default=400, help="n_train = n_val = n_test")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--feature-noise", type=float, default=0.05)
    p.add_argument("--label-noise", type=float, default=0.1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="bench-out/paper.json")
    p.add_argument("--resume", action="store_true")
    return p.parse_args(argv)


def cv_l2(x, y, seed):
    """The reference's L2 weight: 1 / (C n), C from 5-fold LogisticRegressionCV."""
    import warnings

    from sklearn.linear_model import LogisticRegressionCV

    clf = LogisticRegressionCV(cv=5, fit_intercept=False, random_state=seed)
    with warnings.catch_warnings():  # scikit-learn's notices of future defaults
        warnings.simplefilter("ignore", FutureWarning)
        clf.fit(np.asarray(x), np.asarray(y))
    return float(1.0 / (clf.C_[0] * len(y)))


def make_problem(model, splits, seed):
    train = tuple(jnp.asarray(a, jnp.float64) for a in splits.train)
    val = tuple(jnp.asarray(a, jnp.float64) for a in splits.val)
    key, num_features = jax.random.PRNGKey(seed), train[0].shape[1]
    if model == "mlp":
        params, apply = accjax.models.mlp(key, num_features, (8, 8), dtype=jnp.float64)
        l2, optimizer = 0.0, optax.sgd(lambda t: 0.1 / jnp.sqrt(t + 1.0))
    else:
        params, apply = accjax.models.logistic_regression(
            key, num_features, dtype=jnp.float64
        )
        l2, optimizer = cv_l2(*splits.train, seed), optax.sgd(0.1)
    loss = accjax.models.binary_loss(apply)
    problem = accjax.Problem(loss, params, train, l2=l2)
    return problem, optimizer, accjax.mean_loss(loss, val)


def evaluate(problem, optimizer, query, epochs, batch_size):
    run = accjax.train(problem, optimizer, batch_size=batch_size, epochs=epochs)
    start = time.perf_counter()
    exact = accjax.loo_retrain(run, query)
    row = {
        "num_steps": run.num_steps,
        "l2": float(problem.l2),
        "exact_std": float(np.std(exact.values)),
        "seconds": {"loo_retrain": time.perf_counter() - start},
    }
    for name, estimator in (
        ("sgd_ie", accjax.sgd_ie),
        ("acc_sgd_ie", accjax.acc_sgd_ie),
    ):
        start = time.perf_counter()
        est = estimator(run, query)
        row["seconds"][name] = time.perf_counter() - start
        row[name] = {
            "rmse": accjax.metrics.rmse(exact, est),
            "kendall": accjax.metrics.kendall(exact, est),
            "jaccard@10": accjax.metrics.jaccard(exact, est, 10),
        }
    return row


def summarize(rows):
    """Mean over seeds per (dataset, model, condition, epochs), and ACC's relative
    change against SGD-IE (RMSE: negative is better; Kendall, Jaccard: positive)."""
    groups = {}
    for r in rows:
        groups.setdefault(
            (r["dataset"], r["model"], r["condition"], r["epochs"]), []
        ).append(r)
    summary = {}
    for key, sel in sorted(groups.items()):
        cell = {"seeds": len(sel)}
        for metric in ("rmse", "kendall", "jaccard@10"):
            sgd = float(np.mean([r["sgd_ie"][metric] for r in sel]))
            acc = float(np.mean([r["acc_sgd_ie"][metric] for r in sel]))
            cell[metric] = {
                "sgd_ie": sgd,
                "acc_sgd_ie": acc,
                "relative": (acc - sgd) / abs(sgd) if sgd else None,
            }
        summary["/".join(map(str, key))] = cell
    return summary


def write_json(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(path + ".tmp", path)


def plot(path, summary, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(args.models),
        len(args.datasets),
        squeeze=False,
        figsize=(4.5 * len(args.datasets), 3.6 * len(args.models)),
    )
    for i, model in enumerate(args.models):
        for j, data in enumerate(args.datasets):
            ax = axes[i][j]
            for cond in args.conditions:
                keys = [f"{data}/{model}/{cond}/{e}" for e in args.epochs]
                pts = [
                    (e, summary[k]["rmse"])
                    for e, k in zip(args.epochs, keys, strict=True)
                    if k in summary
                ]
                if not pts:
                    continue
                e = [p[0] for p in pts]
                ax.plot(
                    e,
                    [p[1]["sgd_ie"] for p in pts],
                    "--",
                    marker=".",
                    label=f"SGD-IE {cond}",
                )
                ax.plot(
                    e,
                    [p[1]["acc_sgd_ie"] for p in pts],
                    "-",
                    marker="o",
                    label=f"ACC {cond}",
                )
            ax.set_title(f"{data}, {model}")
            ax.set_xlabel("epochs")
            ax.set_ylabel("RMSE vs exact")
            ax.set_yscale("log")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=100)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    if args.resume and os.path.exists(args.out):
        rows = json.load(open(args.out))["rows"]
    done = {
        (r["dataset"], r["model"], r["condition"], r["seed"], r["epochs"]) for r in rows
    }
    total = (
        len(args.datasets)
        * len(args.models)
        * len(args.conditions)
        * args.seeds
        * len(args.epochs)
    )
    count, start = 0, time.perf_counter()
    for data in args.datasets:
        for cond in args.conditions:
            for seed in range(args.seeds):
                splits = accjax.datasets.load(
                    data,
                    n_train=args.size,
                    n_val=args.size,
                    n_test=args.size,
                    seed=seed,
                    data_dir=args.data_dir,
                    feature_noise=args.feature_noise if cond == "feature" else 0.0,
                    label_noise=args.label_noise if cond == "label" else 0.0,
                )
                for model in args.models:
                    problem, optimizer, query = make_problem(model, splits, seed)
                    for epochs in args.epochs:
                        count += 1
                        key = (data, model, cond, seed, epochs)
                        if key in done:
                            continue
                        row = evaluate(
                            problem, optimizer, query, epochs, args.batch_size
                        )
                        row.update(
                            dict(
                                zip(
                                    ("dataset", "model", "condition", "seed", "epochs"),
                                    key,
                                    strict=True,
                                )
                            )
                        )
                        rows.append(row)
                        write_json(
                            args.out,
                            {"bench": "paper", "setting": vars(args), "rows": rows},
                        )
                        print(
                            f"[{count}/{total}] {data} {model} {cond} seed={seed} "
                            f"epochs={epochs}: rmse sgd {row['sgd_ie']['rmse']:.3g} "
                            f"acc {row['acc_sgd_ie']['rmse']:.3g} "
                            f"({time.perf_counter() - start:.0f}s)",
                            flush=True,
                        )
    summary = summarize(rows)
    write_json(
        args.out,
        {"bench": "paper", "setting": vars(args), "rows": rows, "summary": summary},
    )
    plot(args.out.removesuffix(".json") + ".png", summary, args)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
