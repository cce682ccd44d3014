"""The `accjax` command line: demo, experiment, cleanse, data fetch."""

from __future__ import annotations

import argparse
import sys

from accjax._src.estimators.named import NAMES
from accjax._src.experiment import ESTIMATORS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accjax",
        description="Training-data attribution along the SGD trajectory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_demo_parser, _experiment_parser, _cleanse_parser, _data_parser):
        add(sub)
    return parser


def _demo_parser(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="exact retraining vs SGD-IE vs ACC-SGD-IE on bundled real data",
        description=(
            "Trains the reference MLP (8-8, lr/sqrt(t+1)) on scikit-learn's bundled "
            "breast-cancer data, computes exact leave-one-out retraining, SGD-IE and "
            "ACC-SGD-IE for every training example, prints RMSE / Kendall tau / "
            "Jaccard@10,30 against the exact values, and writes demo.json and "
            "demo.png to the output folder."
        ),
    )
    demo.add_argument("--n-train", type=int, default=300, help="training rows (300)")
    demo.add_argument("--n-val", type=int, default=200, help="validation rows (200)")
    demo.add_argument("--epochs", type=int, default=30, help="epochs (30)")
    demo.add_argument("--batch-size", type=int, default=50, help="batch size (50)")
    demo.add_argument(
        "--lr", type=float, default=0.1, help="initial learning rate (0.1)"
    )
    demo.add_argument("--seed", type=int, default=0, help="split and init seed (0)")
    demo.add_argument(
        "--model",
        choices=("mlp", "logreg"),
        default="mlp",
        help="the reference 8-8 MLP (default) or L2 logistic regression",
    )
    demo.add_argument(
        "--l2",
        type=float,
        default=None,
        help="L2 coefficient (default 0 for mlp, 0.01 for logreg)",
    )
    demo.add_argument(
        "--out", default="accjax-demo", help="output folder (accjax-demo)"
    )
    demo.add_argument(
        "--x64", action="store_true", help="float64 throughout (default float32)"
    )


def _experiment_parser(sub) -> None:
    exp = sub.add_parser(
        "experiment",
        help="estimators vs exact retraining over a grid of settings",
        description=(
            "For every (data set, model, condition, seed, epochs): train with the "
            "reference recipe, retrain exactly without each training example, and "
            "score each estimator (RMSE, Kendall tau, Jaccard@10/30/50/70, LDS over "
            "50 half-size subsets). Writes "
            "grid.json (after every setting; --resume continues), summary.csv, "
            "metrics.png and scatter.png to --out. float64 unless --float32."
        ),
    )
    exp.add_argument("--datasets", nargs="+", default=["breast_cancer"])
    exp.add_argument(
        "--models",
        nargs="+",
        default=["mlp", "logreg"],
        choices=("mlp", "logreg", "cnn"),
    )
    exp.add_argument(
        "--conditions",
        nargs="+",
        default=["clean"],
        choices=("clean", "feature", "label"),
    )
    exp.add_argument("--epochs", type=int, nargs="+", default=[2, 10, 20])
    exp.add_argument("--seeds", type=int, default=2)
    exp.add_argument("--n-train", type=int, default=150)
    exp.add_argument("--n-val", type=int, default=150)
    exp.add_argument("--n-test", type=int, default=150)
    exp.add_argument("--batch-size", type=int, default=50)
    exp.add_argument("--feature-noise", type=float, default=0.05)
    exp.add_argument("--label-noise", type=float, default=0.1)
    exp.add_argument(
        "--estimators",
        nargs="+",
        default=["sgd_ie", "acc_sgd_ie"],
        choices=ESTIMATORS,
    )
    exp.add_argument("--optimizer", choices=("sgd", "momentum", "adam"), default="sgd")
    exp.add_argument(
        "--l2",
        type=float,
        default=None,
        help="L2 coefficient for every model (default: 0 for mlp, CV for logreg)",
    )
    exp.add_argument("--data-dir", default=None)
    exp.add_argument("--out", default="accjax-experiment")
    exp.add_argument("--resume", action="store_true")
    exp.add_argument("--float32", action="store_true")


def _cleanse_parser(sub) -> None:
    cl = sub.add_parser(
        "cleanse",
        help="remove the most harmful training examples, retrain, test",
        description=(
            "Data cleansing (Hara et al. 2019): train with the reference recipe, "
            "rank the training examples by each estimator's influence on the "
            "validation loss, remove the k most harmful, retrain with the same "
            "schedule, and report the test misclassification rate and loss for "
            "each k beside random removal; with --label-noise, also how many "
            "flipped labels each ranking finds. Writes cleanse.json and "
            "cleanse.png to --out. Defaults: bundled breast-cancer data, 10%% of "
            "training labels flipped, about 30 s on 2 CPU cores."
        ),
    )
    cl.add_argument("--dataset", default="breast_cancer", help="(breast_cancer)")
    cl.add_argument("--model", choices=("mlp", "logreg", "cnn"), default="mlp")
    cl.add_argument("--n-train", type=int, default=300, help="(300)")
    cl.add_argument("--n-val", type=int, default=100, help="(100)")
    cl.add_argument("--n-test", type=int, default=169, help="(169)")
    cl.add_argument("--epochs", type=int, default=20, help="(20)")
    cl.add_argument("--batch-size", type=int, default=50, help="(50)")
    cl.add_argument("--seeds", type=int, default=1, help="(1)")
    cl.add_argument(
        "--label-noise", type=float, default=0.1, help="fraction flipped (0.1)"
    )
    cl.add_argument(
        "--estimators",
        nargs="+",
        default=["sgd_ie", "acc_sgd_ie", "exact"],
        choices=NAMES,
        help="rankings to compare (sgd_ie acc_sgd_ie exact)",
    )
    cl.add_argument(
        "--remove", type=int, nargs="+", default=[1, 3, 10, 30, 60], help="counts k"
    )
    cl.add_argument(
        "--retrain",
        default="all",
        help="'all', 'last-epoch' or the step to restart from (all)",
    )
    cl.add_argument("--random-draws", type=int, default=5, help="(5)")
    cl.add_argument(
        "--chunk-size", type=int, default=None, help="retrainings vmapped together"
    )
    cl.add_argument("--data-dir", default=None)
    cl.add_argument("--out", default="accjax-cleanse", help="(accjax-cleanse)")
    cl.add_argument("--x64", action="store_true", help="float64 (default float32)")


def _data_parser(sub) -> None:
    data = sub.add_parser("data", help="benchmark data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser(
        "fetch",
        help="download a data set's official files and verify their checksums",
        description=(
            "Downloads into DATA_DIR, else $ACCJAX_DATA, else the per-user cache "
            "(where accjax.datasets.load looks)."
        ),
    )
    fetch.add_argument("name", help="adult, news20, mnist, mnist10 or cifar10")
    fetch.add_argument("--data-dir", default=None)


def _fetch(name: str, data_dir) -> int:
    from accjax import datasets

    try:
        for path in datasets.fetch(name, data_dir):
            print(path)
    except (ValueError, OSError) as err:
        print(f"accjax data fetch: error: {err}", file=sys.stderr)
        return 1
    return 0


def _experiment(args) -> int:
    import jax

    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    from accjax._src.experiment import run_grid

    try:
        report = run_grid(
            datasets=args.datasets,
            models=args.models,
            conditions=args.conditions,
            epochs=args.epochs,
            seeds=args.seeds,
            sizes=(args.n_train, args.n_val, args.n_test),
            batch_size=args.batch_size,
            feature_noise=args.feature_noise,
            label_noise=args.label_noise,
            estimators=args.estimators,
            optimizer=args.optimizer,
            l2=args.l2,
            data_dir=args.data_dir,
            out=args.out,
            resume=args.resume,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"accjax experiment: error: {err}", file=sys.stderr)
        return 2
    print(
        f"{'setting':36s} {'estimator':18s} {'rmse':>10s} {'kendall':>8s} "
        f"{'jacc@10':>8s} {'lds':>6s} {'seconds':>8s}"
    )
    for key, cell in report["summary"].items():
        for name in args.estimators:
            m = cell[name]
            print(
                f"{key:36s} {name:18s} {m['rmse']['mean']:10.3g} "
                f"{m['kendall']['mean']:8.3f} {m['jaccard@10']['mean']:8.3f} "
                f"{m['lds']['mean']:6.3f} {m['seconds']:8.2f}"
            )
    print(f"wrote {args.out}/grid.json, summary.csv, metrics.png, scatter.png")
    return 0


def _cleanse(args) -> int:
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    from accjax._src.cleanse_experiment import format_summary, run_cleansing

    retrain = int(args.retrain) if args.retrain.isdigit() else args.retrain
    try:
        report = run_cleansing(
            dataset=args.dataset,
            model=args.model,
            sizes=(args.n_train, args.n_val, args.n_test),
            epochs=args.epochs,
            batch_size=args.batch_size,
            seeds=args.seeds,
            label_noise=args.label_noise,
            estimators=args.estimators,
            remove=args.remove,
            retrain=retrain,
            random_draws=args.random_draws,
            chunk_size=args.chunk_size,
            data_dir=args.data_dir,
            out=args.out,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"accjax cleanse: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(report["summary"]))
    print(f"wrote {args.out}/cleanse.json and {args.out}/cleanse.png")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "cleanse":
        return _cleanse(args)
    if args.command == "data":
        return _fetch(args.name, args.data_dir)
    if args.command == "experiment":
        return _experiment(args)
    if args.command == "demo":
        from accjax._src.demo import UsageError, run_demo

        try:
            run_demo(
                n_train=args.n_train,
                n_val=args.n_val,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=args.seed,
                model=args.model,
                l2=args.l2,
                out=args.out,
                x64=args.x64,
            )
        except UsageError as err:
            print(f"accjax demo: error: {err}", file=sys.stderr)
            return 2
    return 0


def console_main() -> None:
    sys.exit(main())
