"""float32 against float64: exact retraining, SGD-IE and ACC-SGD-IE; JSON out.

    python bench/precision.py --out bench-out/precision.json
    python bench/precision.py --epochs 30 300 --models mlp logreg
    python bench/precision.py --quick        # 2 epochs, the MLP: a smoke test

Bundled breast-cancer data (300 training / 200 validation rows, seed 0), batch
50; MLP 8-8 with lr 0.1/sqrt(t+1), or logistic regression with L2 0.01 and lr
0.1. Each dtype runs in its own process from the same float32-representable
initial params and data, so the only difference is the arithmetic. Reports the
RMSE between the two dtypes' influence values for each estimator, beside the
spread (std) of the float64 exact values and each float64 estimator's own error
against float64 exact retraining.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import harness
import numpy as np

ESTIMATORS = ("exact", "sgd_ie", "acc_sgd_ie")


def parse_args(argv=None):
    p = harness.parser(__doc__, out=None)
    p.add_argument("--epochs", type=int, nargs="+", default=[30, 300])
    p.add_argument("--models", nargs="+", default=["mlp", "logreg"])
    p.add_argument("--worker", nargs=4, metavar=("DTYPE", "MODEL", "EPOCHS", "NPZ"))
    return harness.parse_args(p, argv, quick=dict(epochs=[2], models=["mlp"]))


def worker(dtype_name, model, epochs, path):
    import jax

    if dtype_name == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    import accjax
    from accjax._src.estimators.named import estimate

    dtype = jnp.dtype(dtype_name)
    splits = accjax.datasets.load("breast_cancer", n_train=300, n_val=200, n_test=69)
    cast = lambda a: jnp.asarray(np.asarray(a, np.float32), dtype)  # noqa: E731
    train = (cast(splits.train[0]), cast(splits.train[1]))
    val = (cast(splits.val[0]), cast(splits.val[1]))
    key = jax.random.PRNGKey(0)
    if model == "mlp":
        params, apply = accjax.models.mlp(key, train[0].shape[1], (8, 8))
        lr, l2 = (lambda t: 0.1 / jnp.sqrt(t + 1.0)), 0.0
    else:
        params, apply = accjax.models.logistic_regression(key, train[0].shape[1])
        lr, l2 = 0.1, 0.01
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    loss = accjax.models.binary_loss(apply)
    problem = accjax.Problem(loss, params, train, l2=l2)
    run = accjax.train(problem, optax.sgd(lr), batch_size=50, epochs=epochs)
    query = accjax.mean_loss(loss, val)
    out, seconds = {}, {}
    for name in ESTIMATORS:
        start = time.perf_counter()
        out[name] = np.asarray(estimate(name, run, query).values, np.float64)
        seconds[name] = time.perf_counter() - start
    np.savez(path, seconds=json.dumps(seconds), **out)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        dtype_name, model, epochs, path = args.worker
        return worker(dtype_name, model, int(epochs), path)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for epochs in args.epochs:
                got = {}
                for dtype_name in ("float32", "float64"):
                    path = os.path.join(tmp, f"{model}-{epochs}-{dtype_name}.npz")
                    subprocess.run(
                        [sys.executable, __file__, "--worker", dtype_name, model,
                         str(epochs), path],
                        check=True,
                    )  # fmt: skip
                    got[dtype_name] = np.load(path)
                f32, f64 = got["float32"], got["float64"]
                rmse = lambda a, b: float(np.sqrt(np.mean((a - b) ** 2)))  # noqa: E731
                row = dict(
                    model=model,
                    epochs=epochs,
                    num_steps=epochs * 6,
                    exact_std_f64=float(np.std(f64["exact"])),
                    f32_vs_f64={n: rmse(f32[n], f64[n]) for n in ESTIMATORS},
                    error_vs_exact_f64={
                        n: rmse(f64[n], f64["exact"]) for n in ESTIMATORS[1:]
                    },
                    error_vs_exact_f32={
                        n: rmse(f32[n], f64["exact"]) for n in ESTIMATORS
                    },
                    seconds_f32=json.loads(str(f32["seconds"])),
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        harness.write_json(args.out, dict(settings=vars(args), rows=rows))
    return rows


if __name__ == "__main__":
    main()
