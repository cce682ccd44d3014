"""The data-cleansing study (paper-notes 4.2, 5) through `accjax cleanse`'s runner.

    python bench/cleansing.py                         # every setting below
    python bench/cleansing.py --only adult-mlp --seeds 1
    python bench/cleansing.py --quick                 # small sizes, a smoke run

For each setting: train with the reference recipe, rank the training examples
by each estimator's influence on the validation loss, remove the k most harmful,
retrain with the same schedule ("all": from the initial parameters; the CNN
restarts at its last epoch, Hara's "retrain last"), and measure
the test misclassification rate, beside random removal (5 draws) and the
exact-retraining ranking. Writes, under --out (bench-out/cleansing):
<setting>/cleanse.json and cleanse.png per setting, then summary.json (settings,
summaries, seconds and peak memory) and cleansing.png (test error against k, a
panel per setting, band = min..max over seeds).

float32, as a user would run it (rankings, not 1e-10 agreement, matter here).
The sizes are subsets that fit a 2-core CPU: full ACC costs n x (steps) batch
HVPs, see docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

DEFAULTS = dict(estimators=("sgd_ie", "acc_sgd_ie", "tracin", "exact"), retrain="all")
SETTINGS = {
    # MNIST 1 vs 7, the reference MLP 8-8, lr 0.1/sqrt(t+1), batch 100.
    "mnist-mlp": dict(
        dataset="mnist",
        model="mlp",
        sizes=(2000, 1000, 4000),
        epochs=20,
        batch_size=100,
        label_noise=0.0,
        remove=(1, 3, 10, 30, 100, 300),
    ),
    # Adult with 10 % of the training labels flipped: cleansing and detection.
    "adult-mlp": dict(
        dataset="adult",
        model="mlp",
        sizes=(2000, 1000, 4000),
        epochs=20,
        batch_size=100,
        label_noise=0.1,
        remove=(1, 3, 10, 30, 100, 200, 300),
    ),
    "adult-logreg": dict(
        dataset="adult",
        model="logreg",
        sizes=(2000, 1000, 4000),
        epochs=20,
        batch_size=100,
        label_noise=0.1,
        remove=(1, 3, 10, 30, 100, 200, 300),
    ),
    # MNIST 10 classes, Hara's CNN (13,750 params), lr 0.05, batch 64, a subset.
    # Full ACC over the CNN is out of reach of a 2-core CPU (docs/results.md):
    # ACC runs on the last layer (params_subset); add acc_sgd_ie on a GPU. TracIn
    # (its query gradient over the validation set at every step) took 1,300 s
    # per seed here, 10x ACC on the last layer: add it with --estimators.
    "mnist10-cnn": dict(
        dataset="mnist10",
        model="cnn",
        sizes=(2000, 500, 2000),
        epochs=10,
        batch_size=64,
        label_noise=0.0,
        remove=(1, 3, 10, 30, 100, 300),
        estimators=("sgd_ie", "acc_last_layer"),
        retrain="last-epoch",
    ),
    # CIFAR-10 (the 21,000-image subset in ../shared/data), the same CNN shape
    # on 32x32x3 (16,550 params).
    "cifar10-cnn": dict(
        dataset="cifar10",
        model="cnn",
        sizes=(2000, 500, 1000),
        epochs=10,
        batch_size=64,
        label_noise=0.0,
        remove=(1, 3, 10, 30, 100, 300),
        estimators=("sgd_ie", "acc_last_layer"),
        retrain="last-epoch",
    ),
}
QUICK = dict(sizes=(300, 200, 500), epochs=5, remove=(1, 3, 10, 30))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--estimators",
        nargs="+",
        default=None,
        help="override every setting's (default: sgd_ie acc_sgd_ie tracin exact)",
    )
    parser.add_argument(
        "--retrain", default=None, help="override every setting's (default: all)"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="bench-out/cleansing")
    args = parser.parse_args(argv)

    from accjax._src.cleanse_experiment import (
        format_summary,
        plot_summaries,
        run_cleansing,
    )
    from accjax._src.files import dump_json

    names = args.only or list(SETTINGS)
    path = os.path.join(args.out, "summary.json")
    report = {}
    if os.path.exists(path):  # keep the other settings of an earlier run
        with open(path) as f:
            report = json.load(f)
    for name in names:
        setting = {**DEFAULTS, **SETTINGS[name], **(QUICK if args.quick else {})}
        for key in ("estimators", "retrain"):
            if getattr(args, key) is not None:
                setting[key] = getattr(args, key)
        start = time.perf_counter()
        out = run_cleansing(
            **setting,
            seeds=args.seeds,
            data_dir=args.data_dir,
            out=os.path.join(args.out, name),
        )
        print(f"== {name}\n{format_summary(out['summary'])}\n", flush=True)
        report[name] = {
            "setting": out["setting"],
            "summary": out["summary"],
            "seconds": [r["seconds"] for r in out["rows"]],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in out["rows"]),
            "wall_s": time.perf_counter() - start,
        }
        dump_json(path, report, indent=1)
    plot_summaries(
        os.path.join(args.out, "cleansing.png"),
        {n: r["summary"] for n, r in report.items()},
    )
    print(f"wrote {path} and {os.path.join(args.out, 'cleansing.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
