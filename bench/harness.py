"""The timing harness the bench scripts share.

- Arguments: `parser` (the common flags: --quick, --out, and on request
  --repeats, --x64, --matmul-size) and `parse_args`, which applies a preset's
  defaults (`--quick`: tiny sizes, a few seconds of work) under the flags given.
- Timing: `compile` (jit, lower and compile apart: compile time never timed),
  `xla_memory` (XLA's memory plan), `warm_up` (each call once, untimed),
  `rounds` (every call once per round, so drift of a shared machine hits all
  alike; wall and process-CPU seconds) and `summary` (median, minimum).
- The dense-matmul reference: `matmul_case` and `matmul_flops`.
- The synthetic problem of bench/speed.py and bench/scale.py
  (`synthetic_run`), the estimator calls (`estimator`), their check against
  exact retraining (`check_vs_exact`) and the MLP's FLOP model (`flop_count`,
  `FLOP_MODEL`).
- Memory: `exec_peak` (what one execution adds to the resident set on CPU, the
  device's peak elsewhere), `maxrss_bytes`.
- Machine and output: `machine_info`, `in_child` (a fresh 'spawn' process) and
  `write_json` (atomic).

The scripts import it as `harness` (they run as `python bench/NAME.py`, so
bench/ is first on sys.path); it uses only accjax's public API. Each script
has a `--quick` and a `parse_args(argv)`: tests/test_bench.py runs every script
at --quick and parses every bench command the docs and bench/gpu.sh give.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# ------------------------------------------------------------------ arguments


def parser(
    doc: str,
    *,
    out: str | None,
    out_help: str = "JSON path",
    repeats: int | None = None,
    x64: bool = False,
    matmul_size: int | None = None,
) -> argparse.ArgumentParser:
    """An ArgumentParser (description: `doc`'s first line) with the common flags.

    --quick and --out always; --repeats, --matmul-size when given a default;
    --x64 when asked.
    """
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, a few seconds of work: a smoke test of the script",
    )
    p.add_argument("--out", default=out, help=f"{out_help} (default: {out})")
    if repeats is not None:
        p.add_argument(
            "--repeats", type=int, default=repeats, help="timed rounds (medians)"
        )
    if matmul_size is not None:
        p.add_argument(
            "--matmul-size",
            type=int,
            default=matmul_size,
            help="side of the reference dense matmul",
        )
    if x64:
        p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    return p


def parse_args(p: argparse.ArgumentParser, argv=None, **presets: dict):
    """`p.parse_args(argv)`, where each preset flag given (`quick={...}`: the
    defaults --quick sets) replaces the defaults; flags given explicitly win."""
    given, _ = p.parse_known_args(argv)
    for flag, defaults in presets.items():
        if getattr(given, flag):
            p.set_defaults(**defaults)
    return p.parse_args(argv)


# --------------------------------------------------------------------- timing


def compile(fn, *args):
    """`jax.jit(fn)` lowered and compiled for `args` apart (compile not timed)."""
    return jax.jit(fn).lower(*args).compile()


def xla_memory(compiled, prefix: str = "") -> dict | None:
    """XLA's memory plan of a compiled function: {prefix + 'temp_bytes', ...}."""
    plan = compiled.memory_analysis()
    if plan is None:
        return None
    return {
        f"{prefix}temp_bytes": int(plan.temp_size_in_bytes),
        f"{prefix}argument_bytes": int(plan.argument_size_in_bytes),
        f"{prefix}output_bytes": int(plan.output_size_in_bytes),
    }


def warm_up(calls: dict) -> dict:
    """Runs each `{name: thunk}` once, untimed, to completion: {name: output}."""
    return {name: jax.block_until_ready(call()) for name, call in calls.items()}


def rounds(calls: dict, repeats: int, *, progress: bool = False):
    """Times every `{name: thunk}` once per round, `repeats` rounds, in order.

    Each call is waited for (block_until_ready) before the clock is read.
    Returns (wall, cpu): {name: [seconds per round]} of wall-clock and of this
    process's CPU time.
    """
    wall = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    for r in range(repeats):
        for name, call in calls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(call())
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
        if progress:
            print(f"  round {r + 1}/{repeats} done", flush=True)
    return wall, cpu


def summary(times: list, cpu_times: list | None = None) -> dict:
    """{median_s, min_s, times_s} (and median_cpu_s) of one call's rounds."""
    out = {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": times,
    }
    if cpu_times is not None:
        out["median_cpu_s"] = statistics.median(cpu_times)
    return out


def matmul_case(size: int, dtype=jnp.float32):
    """The reference dense matmul, `x @ x` for a random `size x size` x, compiled
    and warmed up: a thunk for `rounds` and its compiled function."""
    x = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype)
    compiled = compile(lambda a: a @ a, x)
    jax.block_until_ready(compiled(x))
    return (lambda: compiled(x)), compiled


def matmul_flops(size: int) -> int:
    return 2 * size**3


# -------------------------------------------- the synthetic problem and FLOPs

WIDTHS = (8, 8)


def synthetic_run(n, d, batch, epochs, *, widths=WIDTHS, dtype=jnp.float32, seed=0):
    """The synthetic binary problem: (problem, optimizer, run, query).

    n training rows and 200 validation rows of d Gaussian features, labels from
    a random linear rule plus noise; `accjax.models.mlp` with `widths`, binary
    cross-entropy, `optax.sgd(lambda t: 0.1 / sqrt(t + 1))`; query: the mean
    validation loss.
    """
    import optax

    import accjax

    rng = np.random.RandomState(seed)
    x = rng.randn(n + 200, d)
    y = (x @ rng.randn(d) + rng.randn(n + 200) > 0).astype(np.float64)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    params, apply = accjax.models.mlp(
        jax.random.PRNGKey(0), d, tuple(widths), dtype=dtype
    )
    loss = accjax.models.binary_loss(apply)
    problem = accjax.Problem(loss, params, (x[:n], y[:n]))
    optimizer = optax.sgd(lambda t: 0.1 / jnp.sqrt(t + 1.0))
    run = accjax.train(problem, optimizer, batch_size=batch, epochs=epochs)
    query = accjax.mean_loss(loss, (x[n:], y[n:]))
    return problem, optimizer, run, query


def estimator(name: str, query, chunk_size=None):
    """`run -> influence values` of acc_sgd_ie, loo_retrain or sgd_ie."""
    import accjax

    if name == "acc_sgd_ie":
        return lambda r: accjax.acc_sgd_ie(r, query, chunk_size=chunk_size).values
    if name == "loo_retrain":
        return lambda r: accjax.loo_retrain(r, query, chunk_size=chunk_size).values
    if name == "sgd_ie":
        return lambda r: accjax.sgd_ie(r, query).values
    raise ValueError(f"unknown estimator {name!r}")


def check_vs_exact(exact, estimates: dict) -> dict:
    """{name: {rmse_vs_exact, kendall_vs_exact}} of each estimate's values."""
    import accjax

    exact = np.asarray(exact)
    return {
        name: {
            "rmse_vs_exact": accjax.metrics.rmse(exact, np.asarray(values)),
            "kendall_vs_exact": accjax.metrics.kendall(exact, np.asarray(values)),
        }
        for name, values in estimates.items()
    }


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


def flop_count(name, d, width, steps, targets, chunk_size) -> int | None:
    """`FLOP_MODEL`'s count for acc_sgd_ie or loo_retrain on the 8-8 MLP."""
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


# --------------------------------------------------------------------- memory


def proc_status_kib(field: str) -> int | None:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), None if unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def malloc_trim():
    """Returns free heap memory to the OS (glibc); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_hwm() -> bool:
    """Resets VmHWM to the current resident set (Linux >= 4.0); False if unable."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return proc_status_kib("VmHWM") is not None


def device_memory(device) -> dict | None:
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without stats raise various errors
        return None
    return stats or None


def exec_peak(call):
    """Runs `call()` (which must wait for its result) once: (output, memory).

    CPU: free heap memory is returned to the OS, VmHWM reset; memory
    {"exec_peak_bytes"}: the high-water mark after minus the resident set
    before. Elsewhere: {"device_peak_bytes", "exec_peak_bytes"} from the
    device's `peak_bytes_in_use` after minus `bytes_in_use` before ({} without
    memory stats).
    """
    malloc_trim()
    mem = {}
    if jax.default_backend() == "cpu" and reset_hwm():
        before = proc_status_kib("VmRSS")
        output = call()
        mem["exec_peak_bytes"] = 1024 * (proc_status_kib("VmHWM") - before)
        return output, mem
    device = jax.devices()[0]
    stats = device_memory(device) or {}
    output = call()
    after = device_memory(device) or {}
    if "peak_bytes_in_use" in after:
        mem["device_peak_bytes"] = int(after["peak_bytes_in_use"])
        mem["exec_peak_bytes"] = int(after["peak_bytes_in_use"]) - int(
            stats.get("bytes_in_use", 0)
        )
    return output, mem


def maxrss_bytes() -> int:
    """This process's peak resident set so far (Linux: ru_maxrss in KiB)."""
    return 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---------------------------------------------------- machine, children, files


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict:
    """backend, device, num_devices, jax, platform, cpu_count, cpu_model."""
    return {
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
    }


def in_child(fn, *args):
    """`fn(*args)` in a fresh 'spawn' process; returns its result."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def write_json(path, obj, *, indent=1) -> None:
    """`obj` as JSON at `path` (folders made), through a temporary file beside it
    and a rename: never half-written."""
    from accjax._src.files import dump_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    dump_json(path, obj, indent=indent)
