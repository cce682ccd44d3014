"""A transformer user's first try: every estimator against exact retraining.

    python bench/transformer.py --data-dir ../shared/data            # float32
    python bench/transformer.py --data-dir ../shared/data --x64      # float64
    python bench/transformer.py --data-dir ../shared/data --quick    # a smoke test

`accjax.models.TextTransformer` (--width 64, 2 heads, 2 blocks, dropout 0.1; 168k
parameters with the 1,000-word vocabulary) on two 20 Newsgroups categories
(comp.sys.ibm.pc.hardware vs comp.sys.mac.hardware, `datasets.load_text`,
--seq-len 64 tokens, --n-train posts), `optax.adamw(1e-3, weight_decay=1e-2)` with
optax's other defaults (eps_root = 0), batch 32, --epochs, dropout through the Problem's
key, the validation loss as the query. Exact retraining (`loo_retrain`) of
--targets examples (the first ones) is the truth for Adam-IE (`sgd_ie`), ACC-Adam-IE
(`acc_sgd_ie`), the fast ACC (`acc_sgd_ie_fast`) and TracIn (`tracin`, through
AdamW): RMSE, Kendall, each one's time (one call, compilation included) relative
to training. JSON out.
"""

from __future__ import annotations

import datetime
import sys
import time

import harness
import jax
import numpy as np

PAIR = ("comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware")


def parse_args(argv=None):
    parser = harness.parser(__doc__, out="bench-out/transformer.json")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-train", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--targets", type=int, default=24)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--x64", action="store_true")
    quick = dict(n_train=64, epochs=2, targets=4, width=16, seq_len=16)
    return harness.parse_args(parser, argv, quick=quick)


def main(argv=None) -> int:
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", args.x64)
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import accjax

    dtype = jnp.float64 if args.x64 else jnp.float32
    splits = accjax.datasets.load_text(
        n_train=args.n_train, n_val=200, n_test=0, max_len=args.seq_len,
        vocab_size=1000, categories=PAIR, data_dir=args.data_dir,
    )  # fmt: skip
    net = accjax.models.TextTransformer(
        vocab_size=1000, max_len=args.seq_len, num_classes=2, dim=args.width, heads=2,
        num_layers=2,
        dropout=0.1, rngs=nnx.Rngs(params=0, dropout=1), dtype=dtype,
    )  # fmt: skip
    model = accjax.models.from_nnx(net)
    as_jax = lambda part: (jnp.asarray(part[0]), jnp.asarray(part[1]))
    problem = model.problem(as_jax(splits.train), key=jax.random.key(0))
    query = accjax.mean_loss(
        accjax.models.multiclass_loss(model.apply), as_jax(splits.val)
    )
    optimizer = optax.adamw(1e-3, weight_decay=1e-2)
    num_params = sum(x.size for x in jax.tree.leaves(problem.params))
    start = time.perf_counter()
    run = jax.block_until_ready(
        accjax.train(problem, optimizer, batch_size=32, epochs=args.epochs)
    )
    train_seconds = time.perf_counter() - start
    targets = jnp.arange(args.targets)
    calls = {
        "exact": lambda: accjax.loo_retrain(run, query, targets=targets),
        "sgd_ie": lambda: accjax.sgd_ie(run, query, targets=targets),
        "acc_sgd_ie": lambda: accjax.acc_sgd_ie(run, query, targets=targets),
        "acc_sgd_ie_fast": lambda: accjax.acc_sgd_ie_fast(run, query, targets=targets),
        "tracin": lambda: accjax.tracin(run, query, targets=targets),
    }
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": harness.machine_info(),
        "args": vars(args),
        "num_params": int(num_params),
        "train_seconds": train_seconds,
    }
    values = {}
    for name, call in calls.items():
        start = time.perf_counter()
        values[name] = np.asarray(jax.block_until_ready(call().values), np.float64)
        seconds = time.perf_counter() - start
        report[name] = {"seconds": seconds, "x_train": seconds / train_seconds}
        print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    exact = values["exact"]
    for name in list(calls)[1:]:
        report[name]["rmse"] = accjax.metrics.rmse(exact, values[name])
        report[name]["kendall"] = accjax.metrics.kendall(exact, values[name])
        report[name]["finite"] = bool(np.all(np.isfinite(values[name])))
    report["exact_std"] = float(exact.std())
    harness.write_json(args.out, report)
    for name in list(calls)[1:]:
        r = report[name]
        print(f"{name:16s} RMSE {r['rmse']:.3g}  Kendall {r['kendall']:.3f}  "
              f"{r['x_train']:.1f}x training")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
