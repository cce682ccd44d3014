"""Speed of training and the three estimators at one size; JSON out.

    python bench/speed.py                       # the reference size, float32
    python bench/speed.py --num-examples 1000 --epochs 10 --out bench-out/speed.json

Each function is jitted, compiled and run once untimed, checked against exact
retraining, then timed `--repeats` times (block_until_ready before reading the
clock); the JSON reports medians, the ratios measured in the same run, target-
steps per second, and XLA's memory plan of each compiled function.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import accjax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale  # noqa: E402  (the FLOP model of bench/scale.py)

MATMUL_SIZE = 2048


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-examples", type=int, default=400)
    p.add_argument("--num-features", type=int, default=104)
    p.add_argument("--widths", type=int, nargs="*", default=[8, 8])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--epochs", type=int, default=38)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="targets per chunk for loo_retrain and acc_sgd_ie (default: one chunk)",
    )
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument("--out", default=None, help="JSON path (default: stdout only)")
    return p.parse_args(argv)


def make_run(args):
    dtype = jnp.float64 if args.x64 else jnp.float32
    rng = np.random.RandomState(0)
    n, d = args.num_examples, args.num_features
    x = rng.randn(n + 200, d)
    y = (x @ rng.randn(d) + rng.randn(n + 200) > 0).astype(np.float64)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    params, apply = accjax.models.mlp(
        jax.random.PRNGKey(0), d, tuple(args.widths), dtype=dtype
    )
    loss = accjax.models.binary_loss(apply)
    problem = accjax.Problem(loss, params, (x[:n], y[:n]))
    optimizer = optax.sgd(lambda t: 0.1 / jnp.sqrt(t + 1.0))
    run = accjax.train(
        problem, optimizer, batch_size=args.batch_size, epochs=args.epochs
    )
    query = accjax.mean_loss(loss, (x[n:], y[n:]))
    return problem, optimizer, run, query


def compile_case(fn, arg):
    """`jax.jit(fn)` compiled apart and run once untimed; returns (compiled, memory)."""
    compiled = jax.jit(fn).lower(arg).compile()
    memory = compiled.memory_analysis()
    jax.block_until_ready(compiled(arg))  # warm-up, untimed
    if memory is None:
        return compiled, None
    return compiled, {
        "temp_bytes": int(memory.temp_size_in_bytes),
        "argument_bytes": int(memory.argument_size_in_bytes),
        "output_bytes": int(memory.output_size_in_bytes),
    }


def time_rounds(compiled: dict, arg, repeats: int, extra=None) -> dict:
    """Times every case once per round, `repeats` rounds, so drift hits all alike.

    `extra`: more cases `{name: (compiled, argument)}` with their own argument.
    """
    calls = {name: (fn, arg) for name, fn in compiled.items()}
    calls.update(extra or {})
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, a) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(a))
            times[name].append(time.perf_counter() - start)
    return times


def main(argv=None):
    args = parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    problem, optimizer, run, query = make_run(args)
    n, steps = args.num_examples, run.num_steps
    num_params = sum(p.size for p in jax.tree.leaves(problem.params))

    cases = {
        "train": (
            lambda r: accjax.train(r.problem, optimizer, schedule=r.schedule).params
        ),
        "loo_retrain": lambda r: (
            accjax.loo_retrain(r, query, chunk_size=args.chunk_size).values
        ),
        "sgd_ie": lambda r: accjax.sgd_ie(r, query).values,
        "acc_sgd_ie": lambda r: (
            accjax.acc_sgd_ie(r, query, chunk_size=args.chunk_size).values
        ),
    }
    compiled, memory, outputs = {}, {}, {}
    for name, fn in cases.items():
        compiled[name], memory[name] = compile_case(fn, run)
        outputs[name] = compiled[name](run)
    # the dense matmul rate, timed in the same rounds
    dtype = jnp.float64 if args.x64 else jnp.float32
    square = jnp.ones((MATMUL_SIZE, MATMUL_SIZE), dtype)
    compiled["matmul"], memory["matmul"] = compile_case(lambda a: a @ a, square)
    times = time_rounds(
        {k: v for k, v in compiled.items() if k != "matmul"}, run, args.repeats,
        extra={"matmul": (compiled["matmul"], square)},
    )  # fmt: skip
    results = {}
    for name in (*cases, "matmul"):
        median = statistics.median(times[name])
        results[name] = {
            "median_s": median,
            "times_s": times[name],
            "memory": memory[name],
        }
        print(f"{name:12s} median {median * 1e3:9.2f} ms", flush=True)

    exact = np.asarray(outputs["loo_retrain"])
    estimate = {name: np.asarray(outputs[name]) for name in ("sgd_ie", "acc_sgd_ie")}
    check = {
        name: {
            "rmse_vs_exact": accjax.metrics.rmse(exact, estimate[name]),
            "kendall_vs_exact": accjax.metrics.kendall(exact, estimate[name]),
        }
        for name in ("sgd_ie", "acc_sgd_ie")
    }
    matmul_rate = 2 * MATMUL_SIZE**3 / results["matmul"]["median_s"]
    results["matmul"]["flops_per_s"] = matmul_rate
    for name in ("loo_retrain", "acc_sgd_ie"):
        results[name]["target_steps_per_s"] = n * steps / results[name]["median_s"]
        if tuple(args.widths) == scale.WIDTHS:
            flops = scale.flop_count(
                name, args.num_features, args.batch_size, steps, n, args.chunk_size
            )
            results[name]["flops"] = flops
            results[name]["fraction_of_matmul"] = (
                flops / results[name]["median_s"] / matmul_rate
            )
            print(
                f"{name:12s} {flops / results[name]['median_s'] / 1e9:.1f} GFLOP/s"
                f" = {results[name]['fraction_of_matmul']:.2f} of the matmul's "
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
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
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
        "results": results,
        "ratios": ratios,
        "check": check,
    }
    print(json.dumps({"ratios": ratios, "check": check}, indent=1))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
        os.replace(args.out + ".tmp", args.out)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
