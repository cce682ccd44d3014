"""The timing harness the bench scripts share.

- Arguments: `parser` (the common flags: --quick, --out, and on request
  --repeats, --x64) and `parse_args`, which applies a preset's defaults
  (`--quick`: tiny sizes, a few seconds of work) under the flags given.
- Timing: `warm_up` (each call once, untimed) and `rounds` (every call once per
  round, so drift of a shared machine hits all alike; wall and process-CPU
  seconds); `measured` (one call, compilation included, with its time and peak
  memory).
- Memory: `malloc_trim`, `reset_hwm`, `proc_status_kib`, `maxrss_bytes`.
- Machine and output: `machine_info` (with `load_average`), `write_json` (atomic).

The scripts import it as `harness` (they run as `python bench/NAME.py`, so
bench/ is first on sys.path); it uses only accjax's public API. Each script
has a `--quick` and a `parse_args(argv)`: tests/test_bench.py runs every script
at --quick and parses every bench command the docs and bench/gpu.sh give.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import jax

# ------------------------------------------------------------------ arguments


def parser(
    doc: str,
    *,
    out: str | None,
    out_help: str = "JSON path",
    repeats: int | None = None,
    x64: bool = False,
) -> argparse.ArgumentParser:
    """An ArgumentParser (description: `doc`'s first line) with the common flags.

    --quick and --out always; --repeats when given a default; --x64 when asked.
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


def measured(call):
    """(output, {"seconds", "peak_rss_bytes"[, "device_peak_bytes"]}): `call()` once,
    compilation included: the process's resident high-water mark during the call
    and, on a device with memory statistics, the device's peak since the process
    started (devices do not reset it: an upper bound on the call's)."""
    malloc_trim()
    reset_hwm()
    start = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - start
    hwm = proc_status_kib("VmHWM")
    record = {
        "seconds": seconds,
        "peak_rss_bytes": 1024 * hwm if hwm is not None else maxrss_bytes(),
    }
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without stats raise various errors
        stats = {}
    if "peak_bytes_in_use" in stats:
        record["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    return out, record


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
    """backend, device, num_devices, jax, platform, cpu_count/model, load_average."""
    return {
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average": load_average(),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages (other work on a shared machine)."""
    return [round(x, 2) for x in os.getloadavg()]


def write_json(path, obj, *, indent=1) -> None:
    """`obj` as JSON at `path` (folders made), through a temporary file beside it
    and a rename: never half-written."""
    from accjax._src.files import dump_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    dump_json(path, obj, indent=indent)
