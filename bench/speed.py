"""Speed of training and the three estimators at one size; JSON out.

    python bench/speed.py                       # the reference size, float32
    python bench/speed.py --num-examples 1000 --epochs 10 --out bench-out/speed.json
    python bench/speed.py --quick               # tiny sizes, a smoke test

Each function is jitted, compiled and run once untimed, checked against exact
retraining, then timed `--repeats` times (block_until_ready before reading the
clock); the JSON reports medians, the ratios measured in the same run, target-
steps per second, and XLA's memory plan of each compiled function.
"""

from __future__ import annotations

import json

import harness
import jax
import jax.numpy as jnp

import accjax

QUICK = dict(
    num_examples=40,
    num_features=8,
    batch_size=10,
    epochs=2,
    repeats=2,
    chunk_size=20,
    matmul_size=128,
)


def parse_args(argv=None):
    p = harness.parser(
        __doc__, out=None, out_help="JSON path", repeats=5, x64=True, matmul_size=2048
    )
    p.add_argument("--num-examples", type=int, default=400)
    p.add_argument("--num-features", type=int, default=104)
    p.add_argument("--widths", type=int, nargs="*", default=[8, 8])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--epochs", type=int, default=38)
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="targets per chunk for loo_retrain and acc_sgd_ie (default: one chunk)",
    )
    return harness.parse_args(p, argv, quick=QUICK)


def main(argv=None):
    args = parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.x64 else jnp.float32
    problem, optimizer, run, query = harness.synthetic_run(
        args.num_examples,
        args.num_features,
        args.batch_size,
        args.epochs,
        widths=args.widths,
        dtype=dtype,
    )
    n, steps = args.num_examples, run.num_steps
    num_params = sum(p.size for p in jax.tree.leaves(problem.params))

    fns = {
        "train": (
            lambda r: accjax.train(r.problem, optimizer, schedule=r.schedule).params
        ),
        **{
            name: harness.estimator(name, query, args.chunk_size)
            for name in ("loo_retrain", "sgd_ie", "acc_sgd_ie")
        },
    }
    compiled = {name: harness.compile(fn, run) for name, fn in fns.items()}
    memory = {name: harness.xla_memory(c) for name, c in compiled.items()}
    calls = {name: (lambda c=c: c(run)) for name, c in compiled.items()}
    outputs = harness.warm_up(calls)
    # the dense matmul rate, timed in the same rounds
    calls["matmul"], matmul = harness.matmul_case(args.matmul_size, dtype)
    memory["matmul"] = harness.xla_memory(matmul)
    times, _ = harness.rounds(calls, args.repeats)
    results = {}
    for name in calls:
        stats = harness.summary(times[name])
        results[name] = {
            "median_s": stats["median_s"],
            "times_s": stats["times_s"],
            "memory": memory[name],
        }
        print(f"{name:12s} median {stats['median_s'] * 1e3:9.2f} ms", flush=True)

    check = harness.check_vs_exact(
        outputs["loo_retrain"], {k: outputs[k] for k in ("sgd_ie", "acc_sgd_ie")}
    )
    matmul_rate = harness.matmul_flops(args.matmul_size) / results["matmul"]["median_s"]
    results["matmul"]["flops_per_s"] = matmul_rate
    for name in ("loo_retrain", "acc_sgd_ie"):
        res = results[name]
        res["target_steps_per_s"] = n * steps / res["median_s"]
        if tuple(args.widths) == harness.WIDTHS:
            res["flops"] = harness.flop_count(
                name, args.num_features, args.batch_size, steps, n, args.chunk_size
            )
            res["fraction_of_matmul"] = res["flops"] / res["median_s"] / matmul_rate
            print(
                f"{name:12s} {res['flops'] / res['median_s'] / 1e9:.1f} GFLOP/s"
                f" = {res['fraction_of_matmul']:.2f} of the matmul's "
                f"{matmul_rate / 1e9:.1f}",
                flush=True,
            )
    ratios = {
        "acc_over_loo": results["acc_sgd_ie"]["median_s"]
        / results["loo_retrain"]["median_s"],
        "sgd_ie_over_train": results["sgd_ie"]["median_s"]
        / results["train"]["median_s"],
    }
    report = {
        "bench": "speed",
        **harness.machine_info(),
        "dtype": "float64" if args.x64 else "float32",
        "size": {
            "num_examples": n,
            "num_features": args.num_features,
            "widths": args.widths,
            "num_params": int(num_params),
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "num_steps": steps,
            "chunk_size": args.chunk_size,
        },
        "repeats": args.repeats,
        "matmul_size": args.matmul_size,
        "results": results,
        "ratios": ratios,
        "check": check,
    }
    print(json.dumps({"ratios": ratios, "check": check}, indent=1))
    if args.out:
        harness.write_json(args.out, report)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
