"""Headline run: ACC-SGD-IE over 11,000 MNIST 1-vs-7 training examples.

    ACCJAX_DATA=../shared/data python bench/mnist_all.py               # 11,000 targets
    ACCJAX_DATA=../shared/data python bench/mnist_all.py --n-train 2000 --epochs 2
    python bench/mnist_all.py --data-dir ../shared/data --quick      # a smoke test

The reference MLP 8-8 (lr 0.1/sqrt(t+1), batch 100, float32) trained on n_train
rows of MNIST 1 vs 7 (the pool has 13,007 rows: 11,000 train, 1,000 validation,
1,000 test); then `acc_sgd_ie` and `sgd_ie` for every training example,
and exact retraining for `--exact` of them (a random subset) to check accuracy
and time the ground truth per target (`--acc-targets subset --x64`: ACC on that
subset only, the float64 accuracy check). Each call runs once and its time includes
compilation (seconds, small next to the minutes of the ACC call).
Writes JSON to --out (bench-out/mnist_all.json).
"""

from __future__ import annotations

import datetime
import sys
import time

import harness
import jax
import numpy as np


def parse_args(argv=None):
    parser = harness.parser(__doc__, out="bench-out/mnist_all.json", x64=True)
    parser.add_argument("--n-train", type=int, default=11000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--exact", type=int, default=200)
    parser.add_argument("--memory-budget-mb", type=float, default=None)
    parser.add_argument(
        "--acc-targets",
        choices=("all", "subset"),
        default="all",
        help="ACC over every example, or only the --exact subset (accuracy check)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="the folder with mnist/ (else $ACCJAX_DATA)"
    )
    return harness.parse_args(parser, argv, quick=dict(n_train=200, epochs=1, exact=10))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)

    import accjax
    from accjax._src.experiment import make_problem

    splits = accjax.datasets.load(
        "mnist",
        n_train=args.n_train,
        n_val=1000,
        n_test=1000,
        seed=0,
        data_dir=args.data_dir,
    )
    problem, optimizer, _, query = make_problem("mlp", splits, 0)
    run = accjax.train(problem, optimizer, batch_size=100, epochs=args.epochs)
    budget = None if args.memory_budget_mb is None else int(args.memory_budget_mb * 1e6)
    report = {
        "date": datetime.date.today().isoformat(),
        "device": jax.devices()[0].device_kind,
        "n_train": args.n_train,
        "num_params": int(sum(p.size for p in jax.tree.leaves(problem.params))),
        "num_steps": run.num_steps,
        "dtype": str(jax.tree.leaves(problem.params)[0].dtype),
        "acc_targets": args.acc_targets,
        "seconds": {},
    }
    sub = np.sort(np.random.RandomState(0).choice(args.n_train, args.exact, False))
    calls = {
        "acc_sgd_ie": lambda: accjax.acc_sgd_ie(
            run,
            query,
            targets=None if args.acc_targets == "all" else sub,
            memory_budget=budget,
            progress="acc_sgd_ie",
        ),
        "sgd_ie": lambda: accjax.sgd_ie(run, query),
        "exact_subset": lambda: accjax.loo_retrain(
            run, query, targets=sub, progress="exact subset"
        ),
    }
    results = {}
    for name, call in calls.items():
        start = time.perf_counter()
        results[name] = call()
        jax.block_until_ready(results[name].values)
        report["seconds"][name] = time.perf_counter() - start
        print(f"{name}: {report['seconds'][name]:.1f} s", flush=True)
    exact = results["exact_subset"]
    for name in ("acc_sgd_ie", "sgd_ie"):
        values = np.asarray(results[name].values)
        est = accjax.Influence(
            sub, values if values.shape[0] == sub.size else values[sub]
        )
        report[name] = {
            "rmse_on_subset": accjax.metrics.rmse(exact, est),
            "kendall_on_subset": accjax.metrics.kendall(exact, est),
        }
    report["exact_std_on_subset"] = float(np.std(np.asarray(exact.values)))
    per_target = report["seconds"]["exact_subset"] / args.exact
    report["exact_all_extrapolated_s"] = per_target * args.n_train
    report["peak_rss_mb"] = harness.maxrss_bytes() / 2**20
    harness.write_json(args.out, report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
