"""Scaling of acc_sgd_ie, loo_retrain and sgd_ie in n, T, |params| and batch size.

    python bench/scale.py                        # the default sweep (about 7 min)
    python bench/scale.py --quick                # tiny sizes, a smoke test
    python bench/scale.py --ns 500 1000 2000 --chunk-sizes   # no chunk sweep
    python bench/scale.py --chunk-size 0         # every target in one chunk

Synthetic binary problem, the reference MLP 8-8 (`accjax.models.mlp`), binary
cross-entropy, `optax.sgd(lambda t: 0.1 / sqrt(t + 1))`, float32, every training
example a target. One axis is varied at a time around a base point (n = 1000,
d = 104 features, batch 100, 4 epochs). acc_sgd_ie and loo_retrain run
`--chunk-size` targets at a time (default 250, so memory and the per-step working
set do not grow with n); a second sweep varies acc_sgd_ie's chunk size at the
base point.

Timing runs in one fresh child process (multiprocessing, 'spawn'). It builds
every point's run, jits and compiles every (point, estimator) case apart (compile
excluded), runs each once untimed, then times all cases, and a dense float32
matmul, in `--repeats` interleaved rounds, as bench/speed.py does: drift of a
shared machine then hits every point alike, which the slopes need. Medians are
reported (minimum and process CPU time too).

Memory runs in a fresh child process per case (`--memory-jobs` at a time, after
the timing): a process that has run other executables reuses their freed memory
and under-reports later peaks. The children load the timing child's executables
from a temporary persistent compilation cache instead of compiling again.

- CPU: free heap memory is returned to the OS (glibc `malloc_trim`), then the
  process's resident-set high-water mark (VmHWM) is reset through
  /proc/self/clear_refs just before the case's first execution and read after
  it: `exec_peak_bytes` is that peak minus the resident set before, the memory
  the execution itself added. (Fixing glibc's mmap threshold instead gave the
  same peaks within 5 % but made every execution page-fault its buffers and run
  1.5x slower, so the allocator is left alone.) The child's `ru_maxrss`
  (import and compilation included) is recorded too.
- GPU/TPU: `peak_bytes_in_use` of `jax.devices()[0].memory_stats()` after the
  case's first execution, minus `bytes_in_use` before it.
- Always: XLA's memory plan of the compiled function (`memory_analysis`).

The FLOP count of acc_sgd_ie and loo_retrain is written out in the JSON
("flop_model"); their useful FLOP rate is reported as a fraction of the matmul's
(a jitted 2048 x 2048 product timed in the same rounds). Log-log slopes of time
against n, T, |params| and the batch size come from `np.polyfit`. Writes `--out`
(JSON, atomically) and `scale.png` beside it, and prints a table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import accjax
from accjax._src.files import dump_json

ESTIMATORS = ("acc_sgd_ie", "loo_retrain", "sgd_ie")
AXES = ("n", "epochs", "features", "batch")
WIDTHS = (8, 8)

FLOP_MODEL = {
    "unit": "floating-point operations, 2 per multiply-add; weight matmuls only",
    "notation": (
        "MLP d -> h1 -> h2 -> 1 (here 8, 8). M = d*h1 + h1*h2 + h2 (multiply-adds "
        "of one example's forward pass), M1 = d*h1 (the first layer's). Biases, "
        "ReLU, the loss and the optimizer's elementwise update are O(|params|) "
        "or O(width) and are left out. W = schedule width (slots per step, "
        "padding slots included: they are computed with weight 0), T = steps, "
        "K = targets, C = chunks."
    ),
    "per_example_grad": "3*M - M1 multiply-adds (forward M, weight gradients M, "
    "input gradients M - M1: none for the data)",
    "per_example_hvp_tangent": "6*M - 4*M1 multiply-adds (tangent of the forward: "
    "M1 for x dW1, 2 d_in d_out per later layer for dh W + h dW; tangent of the "
    "weight gradients: M1 + 2 (M - M1); tangent of the input gradients: "
    "2 (M - M1))",
    "acc_sgd_ie": "2 * [K*T*W*(6*M - 4*M1) + C*T*W*(3*M - M1) + T*W*(9*M - 5*M1)]: "
    "per step and target the linear map of the batch gradient over the batch "
    "(its primal, linearized once per step, is shared by the chunk: the C*T "
    "term), plus the own gradient and single-example HVP of every batch slot "
    "whose example is a target (over all chunks, each slot once per step)",
    "loo_retrain": "2 * (K + C) * T * W * (3*M - M1): every target (and one "
    "factual reference per chunk) retrains with its own parameters",
    "for_d_104": "M = 904, M1 = 832: HVP tangent 2096, gradient 1880 multiply-"
    "adds per example; ACC does about 1.1x retraining's arithmetic",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, smoke test")
    p.add_argument("--ns", type=int, nargs="*", default=None)
    p.add_argument("--epochs", type=int, nargs="*", default=None)
    p.add_argument("--features", type=int, nargs="*", default=None)
    p.add_argument("--batch-sizes", type=int, nargs="*", default=None)
    p.add_argument(
        "--base", type=int, nargs=4, default=None, metavar=("N", "D", "BATCH", "EPOCHS")
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="chunk size of acc_sgd_ie and loo_retrain in the axis sweeps "
        "(0: all targets at once; default 250, --quick 100)",
    )
    p.add_argument(
        "--chunk-sizes",
        type=int,
        nargs="*",
        default=None,
        help="acc_sgd_ie chunk sizes at the base point (none given: no chunk sweep)",
    )
    p.add_argument(
        "--estimators", nargs="*", default=list(ESTIMATORS), choices=ESTIMATORS
    )
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--matmul-size", type=int, default=None)
    p.add_argument(
        "--memory-jobs",
        type=int,
        default=2,
        help="memory children run at once on CPU (after the timing; 1 off CPU)",
    )
    p.add_argument("--out", default="bench-out/scale/scale.json")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--replot", metavar="JSON", help="only redraw scale.png from a written JSON"
    )
    args = p.parse_args(argv)
    if args.quick:
        defaults = dict(
            ns=[100, 200, 400],
            epochs=[1, 2, 4],
            features=[13, 26, 52],
            batch_sizes=[25, 50, 100],
            base=[200, 26, 50, 2],
            chunk_size=100,
            chunk_sizes=[50, 100, 200],
            repeats=3,
            matmul_size=512,
        )
    else:
        defaults = dict(
            ns=[250, 500, 1000, 2000],
            epochs=[2, 4, 8],
            features=[26, 104, 416],
            batch_sizes=[25, 50, 100],
            base=[1000, 104, 100, 4],
            chunk_size=250,
            chunk_sizes=[125, 250, 500, 1000],
            repeats=5,
            matmul_size=2048,
        )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.chunk_size = args.chunk_size or None
    return args


# ---------------------------------------------------------------- in the child


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim():
    """Returns free heap memory to the OS (glibc); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    """Resets VmHWM to the current resident set (Linux >= 4.0); False if unable."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _proc_status_kib("VmHWM") is not None


def _device_memory(device):
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without stats raise various errors
        return None
    return stats or None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def use_cache(cache_dir: str | None):
    """Shares compiled executables between the children (timing, then memory)."""
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def device_info() -> dict:
    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": str(device.device_kind),
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "hwm_reset": jax.default_backend() == "cpu" and _reset_hwm(),
    }


def make_run(n: int, d: int, batch: int, epochs: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n + 200, d)
    y = (x @ rng.randn(d) + rng.randn(n + 200) > 0).astype(np.float64)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    params, apply = accjax.models.mlp(jax.random.PRNGKey(0), d, WIDTHS)
    loss = accjax.models.binary_loss(apply)
    problem = accjax.Problem(loss, params, (x[:n], y[:n]))
    optimizer = optax.sgd(lambda t: 0.1 / jnp.sqrt(t + 1.0))
    run = accjax.train(problem, optimizer, batch_size=batch, epochs=epochs)
    query = accjax.mean_loss(loss, (x[n:], y[n:]))
    return run, query


def estimator_fn(name: str, query, chunk_size):
    if name == "acc_sgd_ie":
        return lambda r: accjax.acc_sgd_ie(r, query, chunk_size=chunk_size).values
    if name == "loo_retrain":
        return lambda r: accjax.loo_retrain(r, query, chunk_size=chunk_size).values
    return lambda r: accjax.sgd_ie(r, query).values


def compile_case(case, runs, *, memory: bool = True):
    """Compiles a case, runs it once untimed: (compiled, output, memory)."""
    run, query = runs[case["point"]]
    start = time.perf_counter()
    fn = estimator_fn(case["estimator"], query, case["chunk_size"])
    compiled = jax.jit(fn).lower(run).compile()
    mem = {"compile_s": time.perf_counter() - start}
    plan = compiled.memory_analysis()
    if plan is not None:
        mem.update(
            xla_temp_bytes=int(plan.temp_size_in_bytes),
            xla_argument_bytes=int(plan.argument_size_in_bytes),
            xla_output_bytes=int(plan.output_size_in_bytes),
        )
    if not memory:
        return compiled, np.asarray(jax.block_until_ready(compiled(run))), mem
    _malloc_trim()
    if jax.default_backend() == "cpu" and _reset_hwm():
        before = _proc_status_kib("VmRSS")
        output = np.asarray(jax.block_until_ready(compiled(run)))
        mem["exec_peak_bytes"] = 1024 * (_proc_status_kib("VmHWM") - before)
    else:
        device = jax.devices()[0]
        stats = _device_memory(device) or {}
        output = np.asarray(jax.block_until_ready(compiled(run)))
        after = _device_memory(device) or {}
        if "peak_bytes_in_use" in after:
            mem["device_peak_bytes"] = int(after["peak_bytes_in_use"])
            mem["exec_peak_bytes"] = int(after["peak_bytes_in_use"]) - int(
                stats.get("bytes_in_use", 0)
            )
    return compiled, output, mem


def build_runs(points: dict) -> tuple[dict, dict]:
    runs, meta = {}, {}
    for key, p in points.items():
        run, query = make_run(p["n"], p["d"], p["batch"], p["epochs"])
        jax.block_until_ready(run.params)
        runs[key] = (run, query)
        schedule = np.asarray(run.schedule)
        meta[key] = {
            "num_params": int(sum(a.size for a in jax.tree.leaves(run.problem.params))),
            "num_steps": int(schedule.shape[0]),
            "width": int(schedule.shape[1]),
            "example_steps": int((schedule >= 0).sum()),
        }
    return runs, meta


def memory_child(points: dict, cases: list, cache_dir: str | None = None) -> dict:
    """Memory of `cases` (one, for clean peaks) in a fresh process: {id: memory}."""
    use_cache(cache_dir)
    runs, _ = build_runs({c["point"]: points[c["point"]] for c in cases})
    out = {c["id"]: compile_case(c, runs)[2] for c in cases}
    maxrss = 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for mem in out.values():
        mem.pop("compile_s")  # a cache hit here; the timing child's is kept
        mem["child_maxrss_bytes"] = maxrss
    return out


def sweep_child(
    points: dict, cases: list, repeats: int, matmul_size: int, cache_dir=None
) -> dict:
    """Compiles every case, then times all of them in interleaved rounds."""
    use_cache(cache_dir)
    info = device_info()
    a = jax.random.normal(jax.random.PRNGKey(0), (matmul_size, matmul_size))
    b = jax.random.normal(jax.random.PRNGKey(1), (matmul_size, matmul_size))
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    jax.block_until_ready(matmul(a, b))
    runs, meta = build_runs(points)
    compiled, memory, outputs = {}, {}, {}
    for case in cases:
        cid = case["id"]
        compiled[cid], outputs[cid], memory[cid] = compile_case(
            case, runs, memory=False
        )
        print(
            f"  compiled {case['estimator']} at {case['point']} chunk "
            f"{case['chunk_size']} ({memory[cid]['compile_s']:.1f} s)",
            flush=True,
        )
    checks = {}
    for key in points:
        here = {c["estimator"]: c["id"] for c in cases if c["point"] == key}
        if "loo_retrain" in here:
            exact = outputs[here["loo_retrain"]]
            checks[key] = {
                name: {
                    "rmse_vs_exact": accjax.metrics.rmse(exact, outputs[here[name]]),
                    "kendall_vs_exact": accjax.metrics.kendall(
                        exact, outputs[here[name]]
                    ),
                }
                for name in ("acc_sgd_ie", "sgd_ie")
                if name in here
            }
    times = {c["id"]: [] for c in cases}
    cpu = {c["id"]: [] for c in cases}
    matmul_times, matmul_cpu = [], []
    for r in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(matmul(a, b))
        matmul_times.append(time.perf_counter() - start)
        matmul_cpu.append(time.process_time() - start_cpu)
        for case in cases:
            run = runs[case["point"]][0]
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(compiled[case["id"]](run))
            times[case["id"]].append(time.perf_counter() - start)
            cpu[case["id"]].append(time.process_time() - start_cpu)
        print(f"  round {r + 1}/{repeats} done", flush=True)
    flops = 2 * matmul_size**3
    median = statistics.median(matmul_times)
    return {
        "info": info,
        "meta": meta,
        "checks": checks,
        "matmul": {
            "size": matmul_size,
            "flops": flops,
            "times_s": matmul_times,
            "median_s": median,
            "flops_per_s": flops / median,
            "cpu_times_s": matmul_cpu,
            "flops_per_cpu_s": flops / statistics.median(matmul_cpu),
        },
        "cases": {
            c["id"]: {
                "median_s": statistics.median(times[c["id"]]),
                "min_s": min(times[c["id"]]),
                "times_s": times[c["id"]],
                "median_cpu_s": statistics.median(cpu[c["id"]]),
                "memory": memory[c["id"]],
            }
            for c in cases
        },
        "child_maxrss_bytes": 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


# ---------------------------------------------------------------- in the parent


def in_child(fn, *args):
    """`fn(*args)` in a fresh 'spawn' process; returns its result."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def flop_count(name, d, width, steps, targets, chunk_size) -> int | None:
    sizes = (d, *WIDTHS, 1)
    m = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    m1 = sizes[0] * sizes[1]
    chunks = -(-targets // (chunk_size or targets))
    if name == "acc_sgd_ie":
        per_target = width * (6 * m - 4 * m1)
        shared = chunks * steps * width * (3 * m - m1)
        own = steps * width * (9 * m - 5 * m1)
        return 2 * (targets * steps * per_target + shared + own)
    if name == "loo_retrain":
        return 2 * (targets + chunks) * steps * width * (3 * m - m1)
    return None


def point_key(n, d, b, e) -> str:
    return f"n{n}_d{d}_b{b}_e{e}"


def plan(args):
    """The points (one axis varied at a time) and the (point, estimator) cases."""
    n0, d0, b0, e0 = args.base
    points: dict[str, dict] = {}

    def add(axis, n, d, b, e):
        key = point_key(n, d, b, e)
        points.setdefault(key, {"n": n, "d": d, "batch": b, "epochs": e, "axes": []})
        points[key]["axes"].append(axis)

    for n in args.ns:
        add("n", n, d0, min(b0, n), e0)
    for e in args.epochs:
        add("epochs", n0, d0, b0, e)
    for d in args.features:
        add("features", n0, d, b0, e0)
    for b in args.batch_sizes:
        add("batch", n0, d0, b, e0)
    cases = []
    for key, p in points.items():
        for name in args.estimators:
            chunk = None
            if name != "sgd_ie" and args.chunk_size is not None:
                chunk = min(args.chunk_size, p["n"])
            cases.append(
                {"point": key, "estimator": name, "chunk_size": chunk, "sweep": True}
            )
    base = point_key(*args.base)
    if "acc_sgd_ie" in args.estimators:
        for c in sorted({min(c, n0) for c in args.chunk_sizes}):
            if c != min(args.chunk_size or n0, n0):
                cases.append(
                    {
                        "point": base,
                        "estimator": "acc_sgd_ie",
                        "chunk_size": c,
                        "sweep": False,
                    }
                )
    for i, case in enumerate(cases):
        case["id"] = i
    return points, cases


def assemble(points, cases, measured, args) -> tuple[list, list]:
    """Per-point results (the sweep) and the acc_sgd_ie chunk-size sweep."""
    rate = measured["matmul"]["flops_per_s"]
    out_points, chunk_sweep = [], []
    base = point_key(*args.base)
    for key, p in points.items():
        point = {"key": key, **p, **measured["meta"][key], "results": {}}
        point["chunk_size"] = (
            None if args.chunk_size is None else min(args.chunk_size, p["n"])
        )
        if key in measured["checks"]:
            point["check"] = measured["checks"][key]
        out_points.append(point)
    by_key = {p["key"]: p for p in out_points}
    for case in cases:
        p = by_key[case["point"]]
        res = dict(measured["cases"][case["id"]])
        flops = flop_count(
            case["estimator"],
            p["d"],
            p["width"],
            p["num_steps"],
            p["n"],
            case["chunk_size"],
        )
        if flops is not None:
            res["flops"] = flops
            res["flops_per_s"] = flops / res["median_s"]
            res["fraction_of_matmul"] = res["flops_per_s"] / rate
            # The same, per CPU second used (the two may use different numbers
            # of cores; on CPU the estimators use about one).
            res["fraction_of_matmul_per_cpu_s"] = (
                flops / res["median_cpu_s"] / measured["matmul"]["flops_per_cpu_s"]
            )
        res["target_steps_per_s"] = p["n"] * p["num_steps"] / res["median_s"]
        res["chunk_size"] = case["chunk_size"]
        if case["sweep"]:
            p["results"][case["estimator"]] = res
        if case["point"] == base and case["estimator"] == "acc_sgd_ie":
            chunk_sweep.append(
                {
                    "n": p["n"],
                    "d": p["d"],
                    "batch": p["batch"],
                    "epochs": p["epochs"],
                    "chunk_size": case["chunk_size"] or p["n"],
                    "results": {"acc_sgd_ie": res},
                }
            )
    if not args.chunk_sizes:
        chunk_sweep = []
    chunk_sweep.sort(key=lambda c: c["chunk_size"])
    return out_points, chunk_sweep


def slope(xs, ys) -> float | None:
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


AXIS_VALUE = {
    "n": lambda p: p["n"],
    "epochs": lambda p: p["epochs"],
    "features": lambda p: p["num_params"],
    "batch": lambda p: p["batch"],
}
AXIS_LABEL = {
    "n": "n (training examples = targets)",
    "epochs": "T (epochs)",
    "features": "|params|",
    "batch": "batch size",
}


def axis_points(points, axis):
    return sorted((p for p in points if axis in p["axes"]), key=AXIS_VALUE[axis])


def slopes(points, estimators) -> dict:
    out = {}
    for axis in AXES:
        pts = axis_points(points, axis)
        xs = [AXIS_VALUE[axis](p) for p in pts]
        out[axis] = {}
        for name in estimators:
            res = [p["results"][name] for p in pts]
            ys = [r["median_s"] for r in res]
            entry = {
                "time": slope(xs, ys),
                "min_time": slope(xs, [r["min_s"] for r in res]),
                "cpu_time": slope(xs, [r["median_cpu_s"] for r in res]),
            }
            if axis == "n":
                entry["time_per_target"] = slope(
                    xs, [y / p["n"] for y, p in zip(ys, pts, strict=True)]
                )
            out[axis][name] = entry
    return out


def memory_fit(chunk_sweep) -> dict | None:
    """Least-squares bytes = a + b * chunk_size of the execution peak and plan."""
    if len(chunk_sweep) < 2:
        return None
    cs = np.array([c["chunk_size"] for c in chunk_sweep], float)
    out = {}
    for field in ("exec_peak_bytes", "xla_temp_bytes"):
        ys = [c["results"]["acc_sgd_ie"]["memory"].get(field) for c in chunk_sweep]
        if all(y is not None for y in ys):
            b, a = np.polyfit(cs, np.array(ys, float), 1)
            out[field] = {"bytes_per_target": float(b), "intercept_bytes": float(a)}
    return out


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    def ticks(ax, values):
        """The measured values as plain x tick labels (log axes crowd them)."""
        ax.set_xticks(values)
        ax.set_xticklabels([str(v) for v in values])
        ax.xaxis.set_minor_formatter(NullFormatter())

    points, est = report["points"], report["estimators"]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8.5))
    for ax, axis in zip(axes.flat[:4], AXES, strict=True):
        pts = axis_points(points, axis)
        xs = [AXIS_VALUE[axis](p) for p in pts]
        for name in est:
            ys = [p["results"][name]["median_s"] for p in pts]
            s = report["slopes"][axis][name]["time"]
            label = f"{name} (slope {s:.2f})" if s is not None else name
            ax.loglog(xs, ys, "o-", label=label)
        ticks(ax, xs)
        ax.set_xlabel(AXIS_LABEL[axis])
        ax.set_ylabel("median time (s)")
        ax.set_title(f"time vs {AXIS_LABEL[axis]}")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    ax = axes.flat[4]
    pts = axis_points(points, "n")
    xs = [p["n"] for p in pts]
    for i, name in enumerate(est):
        color = f"C{i}"
        peak = [p["results"][name]["memory"].get("exec_peak_bytes") for p in pts]
        if all(v is not None for v in peak):
            ax.loglog(
                xs,
                [max(v, 1) / 2**20 for v in peak],
                "o-",
                color=color,
                label=f"{name}: execution peak",
            )
        temp = [p["results"][name]["memory"].get("xla_temp_bytes") for p in pts]
        if all(v is not None for v in temp):
            ax.loglog(
                xs,
                [max(v, 1) / 2**20 for v in temp],
                "x--",
                color=color,
                label=f"{name}: XLA temp plan",
            )
    ticks(ax, xs)
    ax.set_xlabel(f"n (acc/loo chunk size {report['sweep_chunk_size'] or 'n'})")
    ax.set_ylabel("MiB")
    ax.set_title("memory vs n")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes.flat[5]
    chunk = report.get("chunk_sweep") or []
    if chunk:
        sizes = [c["chunk_size"] for c in chunk]
        res = [c["results"]["acc_sgd_ie"]["memory"] for c in chunk]
        for field, style, label in (
            ("exec_peak_bytes", "o-", "execution peak"),
            ("xla_temp_bytes", "x--", "XLA temp plan"),
        ):
            if all(field in r for r in res):
                ax.loglog(
                    sizes, [max(r[field], 1) / 2**20 for r in res], style, label=label
                )
        ax.legend(fontsize=8, title=f"acc_sgd_ie, n = {chunk[0]['n']}")
        ticks(ax, sizes)
    ax.set_xlabel("acc_sgd_ie chunk_size")
    ax.set_ylabel("MiB")
    ax.set_title("acc_sgd_ie memory vs chunk size")
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        f"accjax scaling, {report['device']} ({report['backend']}), jax "
        f"{report['jax']}, {report['date'][:10]}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mib(v):
    return "-" if v is None else f"{v / 2**20:.1f}"


def table(report) -> str:
    rows = [
        f"{'point':30s} {'estimator':12s} {'median':>10s} {'exec peak':>10s} "
        f"{'XLA temp':>9s} {'%matmul':>8s}"
    ]
    entries = [
        (p, name, r) for p in report["points"] for name, r in p["results"].items()
    ]
    entries += [
        (c, "acc_sgd_ie", c["results"]["acc_sgd_ie"]) for c in report["chunk_sweep"]
    ]
    for p, name, r in entries:
        label = f"n={p['n']} d={p['d']} B={p['batch']} E={p['epochs']}"
        if r.get("chunk_size"):
            label += f" c={r['chunk_size']}"
        frac = r.get("fraction_of_matmul")
        rows.append(
            f"{label:30s} {name:12s} {r['median_s'] * 1e3:8.1f}ms "
            f"{mib(r['memory'].get('exec_peak_bytes')):>8s}Mi "
            f"{mib(r['memory'].get('xla_temp_bytes')):>7s}Mi "
            f"{'-' if frac is None else f'{100 * frac:.1f}':>8s}"
        )
    return "\n".join(rows)


def measure_memory(points, cases, measured, args, cache_dir):
    """Memory of every case, each in a fresh child."""
    groups = [[c] for c in cases]
    # One at a time on an accelerator: each process preallocates most of it.
    jobs = args.memory_jobs if measured["info"]["backend"] == "cpu" else 1
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=ctx, max_tasks_per_child=1
    ) as pool:
        futures = [
            pool.submit(memory_child, points, group, cache_dir) for group in groups
        ]
        for i, future in enumerate(futures):
            for cid, mem in future.result().items():
                measured["cases"][cid]["memory"].update(mem)
            print(f"  memory {i + 1}/{len(groups)}", flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        import json

        with open(args.replot) as f:
            report = json.load(f)
        path = Path(args.replot).with_name("scale.png")
        plot(report, path)
        print(f"wrote {path}")
        return report
    started = time.perf_counter()
    points, cases = plan(args)
    print(
        f"{len(points)} points, {len(cases)} cases, {args.repeats} rounds", flush=True
    )
    load = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    cache_dir = tempfile.mkdtemp(prefix="accjax-scale-cache-")
    try:
        measured = in_child(
            sweep_child, points, cases, args.repeats, args.matmul_size, cache_dir
        )
        if hasattr(os, "getloadavg"):
            load.append(os.getloadavg()[0])
        info = measured["info"]
        measure_memory(points, cases, measured, args, cache_dir)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    out_points, chunk_sweep = assemble(points, cases, measured, args)
    fitted = slopes(out_points, args.estimators)
    base = next(p for p in out_points if p["key"] == point_key(*args.base))
    ratios = {}
    if {"acc_sgd_ie", "loo_retrain"} <= set(args.estimators):
        ratios["acc_over_loo_at_base"] = (
            base["results"]["acc_sgd_ie"]["median_s"]
            / base["results"]["loo_retrain"]["median_s"]
        )
    targets = {}
    if "acc_sgd_ie" in args.estimators:
        s_n = fitted["n"]["acc_sgd_ie"]["time_per_target"]
        s_t = fitted["epochs"]["acc_sgd_ie"]["time"]
        targets = {
            "acc_time_per_target_slope_in_n": s_n,
            "acc_time_slope_in_T": s_t,
            "within_1_pm_0.15": {
                "n_per_target": s_n is not None and abs(s_n - 1) <= 0.15,
                "T": s_t is not None and abs(s_t - 1) <= 0.15,
            },
            "note": "every example is a target and each target's cost is ~ n * "
            "epochs, so the total time of acc_sgd_ie and loo_retrain grows as "
            "n^2 (slope 2 in n, 1 per target); sgd_ie is one reverse pass "
            "(slope 1 in n).",
        }
    report = {
        "bench": "scale",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        **{k: v for k, v in info.items() if k != "hwm_reset"},
        "dtype": "float32",
        "model": f"mlp(key, d, {WIDTHS}), binary_loss, sgd lr 0.1/sqrt(t+1)",
        "memory_method": (
            "a fresh child per case; malloc_trim, then VmHWM reset via "
            "/proc/self/clear_refs around the case's first execution (CPU)"
            if info["hwm_reset"]
            else "a fresh child per case; device peak_bytes_in_use after the "
            "first execution minus bytes_in_use before it"
        ),
        "load_avg_1min": load,
        "base": dict(zip(("n", "d", "batch", "epochs"), args.base, strict=True)),
        "estimators": args.estimators,
        "sweep_chunk_size": args.chunk_size,
        "repeats": args.repeats,
        "matmul": measured["matmul"],
        "flop_model": FLOP_MODEL,
        "points": out_points,
        "chunk_sweep": chunk_sweep,
        "memory_vs_chunk": memory_fit(chunk_sweep),
        "slopes": fitted,
        "ratios": ratios,
        "targets": targets,
        "timing_child_maxrss_bytes": measured["child_maxrss_bytes"],
        "wall_s": time.perf_counter() - started,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dump_json(out, report, indent=1)
    print(table(report))
    print("slopes (log-log; wall-time median [min] {process CPU}):")
    for axis in AXES:
        parts = []
        for k, v in fitted[axis].items():
            if v["time"] is None:
                continue
            text = f"{k} {v['time']:.2f} [{v['min_time']:.2f}] {{{v['cpu_time']:.2f}}}"
            if v.get("time_per_target") is not None:
                text += f" (per target {v['time_per_target']:.2f})"
            parts.append(text)
        print(f"  {axis:9s} " + ", ".join(parts))
    if ratios:
        print(f"acc/loo at base: {ratios['acc_over_loo_at_base']:.2f}")
    print(
        f"matmul {report['matmul']['flops_per_s'] / 1e9:.1f} GFLOP/s; load "
        f"{load}; wall {report['wall_s']:.0f} s"
    )
    print(f"wrote {out}")
    if not args.no_plot:
        plot(report, out.with_name("scale.png"))
        print(f"wrote {out.with_name('scale.png')}")
    return report


if __name__ == "__main__":
    main()
