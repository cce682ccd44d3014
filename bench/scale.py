"""Scaling of acc_sgd_ie, loo_retrain and sgd_ie in n, T, |params| and batch size.

    python bench/scale.py                        # the default sweep (about 7 min)
    python bench/scale.py --quick                # tiny sizes, a smoke test (~20 s)
    python bench/scale.py --small                # 9 small points (bench/gpu.sh's)
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
matmul, in `--repeats` interleaved rounds, as bench/speed.py does (both through
bench/harness.py): drift of a shared machine then hits every point alike, which
the slopes need. Medians are reported (minimum and process CPU time too).

Memory runs in a fresh child process per case (`--memory-jobs` at a time, after
the timing): a process that has run other executables reuses their freed memory
and under-reports later peaks (`--memory-children one`, --quick's, runs every
case in one child: a smoke test of the code, not a measurement). The children
load the timing child's executables from a temporary persistent compilation
cache instead of compiling again.

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

import concurrent.futures
import datetime
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import harness
import jax
import numpy as np

ESTIMATORS = ("acc_sgd_ie", "loo_retrain", "sgd_ie")
AXES = ("n", "epochs", "features", "batch")
WIDTHS = harness.WIDTHS
FLOP_MODEL = harness.FLOP_MODEL
flop_count = harness.flop_count

# The sizes of `--small` (the former --quick: 9 points, 29 cases, about 4 min on
# 2 CPU cores) and `--quick` (2 points, 7 cases, one memory child).
SMALL = dict(
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
QUICK = dict(
    ns=[20, 40],
    epochs=[1],
    features=[8],
    batch_sizes=[10],
    base=[40, 8, 10, 1],
    chunk_size=20,
    chunk_sizes=[10, 20],
    repeats=2,
    matmul_size=128,
    memory_children="one",
)


def parse_args(argv=None):
    p = harness.parser(
        __doc__, out="bench-out/scale/scale.json", repeats=5, matmul_size=2048
    )
    p.add_argument("--small", action="store_true", help="9 small points, 29 cases")
    p.add_argument("--ns", type=int, nargs="*", default=[250, 500, 1000, 2000])
    p.add_argument("--epochs", type=int, nargs="*", default=[2, 4, 8])
    p.add_argument("--features", type=int, nargs="*", default=[26, 104, 416])
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[25, 50, 100])
    p.add_argument(
        "--base",
        type=int,
        nargs=4,
        default=[1000, 104, 100, 4],
        metavar=("N", "D", "BATCH", "EPOCHS"),
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=250,
        help="chunk size of acc_sgd_ie and loo_retrain in the axis sweeps "
        "(0: all targets at once; --small 100, --quick 20)",
    )
    p.add_argument(
        "--chunk-sizes",
        type=int,
        nargs="*",
        default=[125, 250, 500, 1000],
        help="acc_sgd_ie chunk sizes at the base point (none given: no chunk sweep)",
    )
    p.add_argument(
        "--estimators", nargs="*", default=list(ESTIMATORS), choices=ESTIMATORS
    )
    p.add_argument(
        "--memory-jobs",
        type=int,
        default=2,
        help="memory children run at once on CPU (after the timing; 1 off CPU)",
    )
    p.add_argument(
        "--memory-children",
        choices=("per-case", "one"),
        default="per-case",
        help="a fresh child per case (clean peaks) or one for all (--quick)",
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--replot", metavar="JSON", help="only redraw scale.png from a written JSON"
    )
    args = harness.parse_args(p, argv, small=SMALL, quick=QUICK)
    args.chunk_size = args.chunk_size or None
    return args


# ---------------------------------------------------------------- in the child


def use_cache(cache_dir: str | None):
    """Shares compiled executables between the children (timing, then memory)."""
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def compile_case(case, runs, *, memory: bool = True):
    """Compiles a case, runs it once untimed: (compiled, output, memory)."""
    run, query = runs[case["point"]]
    start = time.perf_counter()
    fn = harness.estimator(case["estimator"], query, case["chunk_size"])
    compiled = harness.compile(fn, run)
    mem = {"compile_s": time.perf_counter() - start}
    mem.update(harness.xla_memory(compiled, prefix="xla_") or {})
    call = lambda: np.asarray(jax.block_until_ready(compiled(run)))
    if not memory:
        return compiled, call(), mem
    output, peak = harness.exec_peak(call)
    return compiled, output, {**mem, **peak}


def build_runs(points: dict) -> tuple[dict, dict]:
    runs, meta = {}, {}
    for key, p in points.items():
        _, _, run, query = harness.synthetic_run(
            p["n"], p["d"], p["batch"], p["epochs"]
        )
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
    for mem in out.values():
        mem.pop("compile_s")  # a cache hit here; the timing child's is kept
        mem["child_maxrss_bytes"] = harness.maxrss_bytes()
    return out


def sweep_child(
    points: dict, cases: list, repeats: int, matmul_size: int, cache_dir=None
) -> dict:
    """Compiles every case, then times all of them in interleaved rounds."""
    use_cache(cache_dir)
    cpu = jax.default_backend() == "cpu"
    info = {**harness.machine_info(), "hwm_reset": cpu and harness.reset_hwm()}
    calls = {"matmul": harness.matmul_case(matmul_size)[0]}
    runs, meta = build_runs(points)
    compiled, memory, outputs = {}, {}, {}
    for case in cases:
        cid = case["id"]
        compiled[cid], outputs[cid], memory[cid] = compile_case(
            case, runs, memory=False
        )
        calls[cid] = lambda c=compiled[cid], r=runs[case["point"]][0]: c(r)
        print(
            f"  compiled {case['estimator']} at {case['point']} chunk "
            f"{case['chunk_size']} ({memory[cid]['compile_s']:.1f} s)",
            flush=True,
        )
    checks = {}
    for key in points:
        here = {c["estimator"]: c["id"] for c in cases if c["point"] == key}
        if "loo_retrain" in here:
            checks[key] = harness.check_vs_exact(
                outputs[here["loo_retrain"]],
                {k: outputs[here[k]] for k in ("acc_sgd_ie", "sgd_ie") if k in here},
            )
    wall, cpu_s = harness.rounds(calls, repeats, progress=True)
    flops = harness.matmul_flops(matmul_size)
    matmul = harness.summary(wall["matmul"])
    return {
        "info": info,
        "meta": meta,
        "checks": checks,
        "matmul": {
            "size": matmul_size,
            "flops": flops,
            "times_s": matmul["times_s"],
            "median_s": matmul["median_s"],
            "flops_per_s": flops / matmul["median_s"],
            "cpu_times_s": cpu_s["matmul"],
            "flops_per_cpu_s": flops / harness.summary(cpu_s["matmul"])["median_s"],
        },
        "cases": {
            c["id"]: {
                **harness.summary(wall[c["id"]], cpu_s[c["id"]]),
                "memory": memory[c["id"]],
            }
            for c in cases
        },
        "child_maxrss_bytes": harness.maxrss_bytes(),
    }


# ---------------------------------------------------------------- in the parent


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


MEMORY_LINES = (
    ("exec_peak_bytes", "o-", "execution peak"),
    ("xla_temp_bytes", "x--", "XLA temp plan"),
)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    def finish(ax, xs, xlabel, ylabel, heading, **legend):
        """Plain x tick labels at the measured values (log axes crowd them)."""
        ax.set_xticks(xs)
        ax.set_xticklabels([str(v) for v in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel=xlabel, ylabel=ylabel, title=heading)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(**legend)
        ax.grid(True, which="both", alpha=0.3)

    def memory(ax, xs, mems, prefix="", **style):
        """A MiB line per field of MEMORY_LINES that every one of `mems` has."""
        for field, marker, label in MEMORY_LINES:
            if all(m.get(field) is not None for m in mems):
                mib = [max(m[field], 1) / 2**20 for m in mems]
                ax.loglog(xs, mib, marker, label=prefix + label, **style)

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
        label = AXIS_LABEL[axis]
        finish(ax, xs, label, "median time (s)", f"time vs {label}", fontsize=8)
    ax, pts = axes.flat[4], axis_points(points, "n")
    xs = [p["n"] for p in pts]
    for i, name in enumerate(est):
        mems = [p["results"][name]["memory"] for p in pts]
        memory(ax, xs, mems, f"{name}: ", color=f"C{i}")
    chunk_label = f"n (acc/loo chunk size {report['sweep_chunk_size'] or 'n'})"
    finish(ax, xs, chunk_label, "MiB", "memory vs n", fontsize=7)
    ax, chunk = axes.flat[5], report.get("chunk_sweep") or []
    sizes = [c["chunk_size"] for c in chunk]
    memory(ax, sizes, [c["results"]["acc_sgd_ie"]["memory"] for c in chunk])
    title = f"acc_sgd_ie, n = {chunk[0]['n']}" if chunk else None
    finish(ax, sizes, "acc_sgd_ie chunk_size", "MiB",
           "acc_sgd_ie memory vs chunk size", fontsize=8, title=title)  # fmt: skip
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
    """Memory of every case, each in a fresh child (or all in one)."""
    groups = [cases] if args.memory_children == "one" else [[c] for c in cases]
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
        measured = harness.in_child(
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
            "a fresh child per case"
            if args.memory_children == "per-case"
            else "one child for every case (--memory-children one)"
        )
        + (
            "; malloc_trim, then VmHWM reset via /proc/self/clear_refs around the "
            "case's first execution (CPU)"
            if info["hwm_reset"]
            else "; device peak_bytes_in_use after the first execution minus "
            "bytes_in_use before it"
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
    harness.write_json(out, report)
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
