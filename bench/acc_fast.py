"""ACC's accuracy at SGD-IE's cost: `acc_sgd_ie_fast` against full ACC.

    python bench/acc_fast.py --data-dir ../shared/data            # the grid, float64
    python bench/acc_fast.py --data-dir ../shared/data --grid map --seeds 2 \
        --out bench-out/acc_map.json                               # where ACC pays
    python bench/acc_fast.py --data-dir ../shared/data --grid optimizers --seeds 2 \
        --out bench-out/acc_optimizers.json                        # SGD, momentum, Adam
    python bench/acc_fast.py --data-dir ../shared/data --quick    # a smoke test

A rerun with the same --out resumes: settings already in it are kept.

For each setting (data set, model, batch size, epochs, seed; n = --n training and
validation rows, the reference recipes of `accjax experiment`): exact retraining
as the truth, then SGD-IE, ACC-SGD-IE and `acc_sgd_ie_fast` with each contraction.
Per estimator: RMSE and Kendall against the truth, the fraction of ACC's gain kept,
(RMSE_SGD - RMSE_x) / (RMSE_SGD - RMSE_ACC) and alike for Kendall, and the time of
a second call (compilation excluded) relative to SGD-IE's in the same setting;
and the relative size of each correction, |x - SGD-IE| / |SGD-IE| (`acc_sgd_ie_fast`'s
is the candidate predictor of whether full ACC pays). `--grid map` runs Adult and
MNIST x both models x batch size (10, 20, 50, 100) x epochs (2, 10, 40);
`--grid optimizers` Adult x both models x optimizer (plain SGD; SGD with momentum
0.9; Adam, optax's defaults at lr 0.01) x batch size (10, 50, 100) x epochs (2, 10,
40). Writes JSON
(rows after every setting), and beside it a bar chart of the gain kept (.png) and ACC's
RMSE change against the predictor (-predictor.png).
"""

from __future__ import annotations

import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import harness
import jax
import numpy as np

ESTIMATORS = ("sgd_ie", "acc_sgd_ie", "fast_adjoint", "fast_none")
# (dataset, model, optimizer, batch size, epochs): around the reference recipes,
# with the authors' own configuration (Adult MLP, n = 200, batch 20, 40 epochs).
SETTINGS = (
    ("adult", "logreg", "sgd", 20, 10),
    ("adult", "mlp", "sgd", 20, 40),
    ("adult", "mlp", "sgd", 20, 10),
    ("mnist", "logreg", "sgd", 20, 10),
    ("mnist", "mlp", "sgd", 20, 10),
    ("news20", "mlp", "sgd", 20, 10),
    ("adult", "logreg", "sgd", 50, 20),
)
GRIDS = {
    "frontier": SETTINGS,
    "map": tuple(
        (dataset, model, "sgd", batch, epochs)
        for dataset in ("adult", "mnist")
        for model in ("mlp", "logreg")
        for batch in (10, 20, 50, 100)
        for epochs in (2, 10, 40)
    ),
    "optimizers": tuple(
        ("adult", model, optimizer, batch, epochs)
        for model in ("mlp", "logreg")
        for optimizer in ("sgd", "momentum", "adam")
        for batch in (10, 50, 100)
        for epochs in (2, 10, 40)
    ),
}


def parse_args(argv=None):
    parser = harness.parser(__doc__, out="bench-out/acc_fast.json")
    parser.add_argument("--grid", choices=tuple(GRIDS), default="frontier")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    quick = dict(n=40, seeds=1)
    return harness.parse_args(parser, argv, quick=quick)


def timed(call):
    """(output, seconds of a second call): the first compiles."""
    jax.block_until_ready(call())
    start = time.perf_counter()
    out = jax.block_until_ready(call())
    return out, time.perf_counter() - start


def run_setting(dataset, model, optimizer, batch, epochs, seed, args) -> dict:
    import accjax
    from accjax._src import experiment

    splits = accjax.datasets.load(
        dataset, n_train=args.n, n_val=args.n, n_test=0, seed=seed,
        data_dir=args.data_dir,
    )  # fmt: skip
    problem, optimizer, _, query = experiment.make_problem(
        model, splits, seed, optimizer=optimizer
    )
    run = accjax.train(problem, optimizer, batch_size=batch, epochs=epochs)
    exact = np.asarray(accjax.loo_retrain(run, query).values)
    calls = {
        "sgd_ie": lambda: accjax.sgd_ie(run, query).values,
        "acc_sgd_ie": lambda: accjax.acc_sgd_ie(run, query).values,
        "fast_adjoint": lambda: (
            accjax.acc_sgd_ie_fast(run, query, contraction="adjoint").values
        ),
        "fast_none": lambda: (
            accjax.acc_sgd_ie_fast(run, query, contraction="none").values
        ),
    }
    row = {"num_steps": run.num_steps, "exact_std": float(exact.std())}
    outputs = {}
    for name, call in calls.items():
        values, seconds = timed(call)
        values = outputs[name] = np.asarray(values)
        row[name] = {
            "rmse": accjax.metrics.rmse(exact, values),
            "kendall": accjax.metrics.kendall(exact, values),
            "seconds": seconds,
        }
    sgd, acc = row["sgd_ie"], row["acc_sgd_ie"]
    for name in ESTIMATORS:
        r = row[name]
        r["x_sgd_ie_time"] = r["seconds"] / sgd["seconds"]
        for metric, sign in (("rmse", 1), ("kendall", -1)):
            gain = sign * (sgd[metric] - acc[metric])
            r[f"{metric}_gain_kept"] = (
                sign * (sgd[metric] - r[metric]) / gain if gain else None
            )
    row["acc_rmse_change"] = acc["rmse"] / sgd["rmse"] - 1
    row["acc_kendall_change"] = acc["kendall"] - sgd["kendall"]
    size = np.linalg.norm(outputs["sgd_ie"])
    for name in ESTIMATORS[1:]:
        row[name]["correction_rel"] = float(
            np.linalg.norm(outputs[name] - outputs["sgd_ie"]) / size
        )
    return row


def summarize(rows) -> dict:
    """Per setting (over seeds): medians of the gain kept and of the time ratio."""
    out = {}
    for row in rows:
        key = "{dataset}/{model}/{optimizer}/B{batch}/E{epochs}".format(**row)
        out.setdefault(key, []).append(row)
    summary = {}
    for key, group in out.items():
        med = lambda f, group=group: statistics.median(f(r) for r in group)
        entry = {"acc_rmse_change": med(lambda r: r["acc_rmse_change"])}
        for name in ("fast_adjoint", "fast_none"):
            for field in ("rmse_gain_kept", "kendall_gain_kept", "x_sgd_ie_time"):
                vals = [r[name][field] for r in group if r[name][field] is not None]
                entry[f"{name}/{field}"] = statistics.median(vals) if vals else None
        entry["acc_sgd_ie/x_sgd_ie_time"] = med(
            lambda r: r["acc_sgd_ie"]["x_sgd_ie_time"]
        )
        summary[key] = entry
    return summary


def plot(path, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary)
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = np.arange(len(keys))
    for i, name in enumerate(("fast_adjoint", "fast_none")):
        kept = [summary[k][f"{name}/rmse_gain_kept"] or 0 for k in keys]
        ax.bar(x + 0.38 * i - 0.19, kept, 0.38, label=f"{name}: RMSE gain kept")
    ax.axhline(0.7, color="k", ls="--", lw=0.8, label="goal 0.7")
    ax.set_xticks(x, [f"{k}\nACC {100 * summary[k]['acc_rmse_change']:+.0f}%"
                      for k in keys], fontsize=7)  # fmt: skip
    ax.set_ylabel("fraction of ACC's RMSE gain kept")
    ax.set_ylim(-0.5, 1.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    settings = GRIDS[args.grid]
    settings = settings[:2] if args.quick else settings
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": harness.machine_info(),
        "args": vars(args),
        "rows": [],
    }
    if Path(args.out).exists():  # resume: keep the settings already measured
        report["rows"] = json.loads(Path(args.out).read_text()).get("rows", [])
    fields = ("dataset", "model", "optimizer", "batch", "epochs", "seed")
    measured = {tuple(r.get(f, "sgd") for f in fields) for r in report["rows"]}
    total = len(settings) * args.seeds
    for i, (dataset, model, optimizer, batch, epochs) in enumerate(settings):
        for seed in range(args.seeds):
            if (dataset, model, optimizer, batch, epochs, seed) in measured:
                continue
            start = time.perf_counter()
            row = run_setting(dataset, model, optimizer, batch, epochs, seed, args)
            row.update(dataset=dataset, model=model, optimizer=optimizer,
                       batch=batch, epochs=epochs, seed=seed)  # fmt: skip
            report["rows"].append(row)
            report["summary"] = summarize(report["rows"])
            harness.write_json(args.out, report)
            done = i * args.seeds + seed + 1
            print(
                f"[{done}/{total}] {dataset} {model} {optimizer} B{batch} E{epochs} "
                f"seed {seed}: "
                f"ACC {100 * row['acc_rmse_change']:+.1f}% RMSE, kept "
                f"{row['fast_adjoint']['rmse_gain_kept']} (adjoint), "
                f"{row['fast_none']['rmse_gain_kept']} (none); "
                f"{time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    plot(Path(args.out).with_suffix(".png"), report["summary"])
    plot_predictor(Path(args.out).with_name(Path(args.out).stem + "-predictor.png"),
                   report["rows"])  # fmt: skip
    return 0


def plot_predictor(path, rows) -> None:
    """ACC's RMSE change against the size of `acc_sgd_ie_fast`'s correction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for model, marker in (("mlp", "o"), ("logreg", "s")):
        sel = [r for r in rows if r["model"] == model]
        ax.scatter([r["fast_adjoint"]["correction_rel"] for r in sel],
                   [100 * r["acc_rmse_change"] for r in sel], marker=marker,
                   s=14, alpha=0.7, label=model)  # fmt: skip
    ax.set(xscale="log", xlabel="|fast - SGD-IE| / |SGD-IE| (acc_sgd_ie_fast)",
           ylabel="ACC's RMSE change vs SGD-IE (%)")  # fmt: skip
    ax.axhline(0, color="k", lw=0.8)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
