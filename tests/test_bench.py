"""Every bench script at its --quick sizes, in a subprocess, on CPU.

A benchmark nobody runs rots: a renamed argument or API breaks it silently.
Each test runs `python bench/NAME.py --quick --out TMP/...` from the
repository root with JAX_PLATFORMS=cpu and asserts that it exits 0 and that
its JSON parses with the top-level keys the docs cite. The scripts that read
real data (mnist_all, cleansing, paper, and bench/gpu.sh, which runs
mnist_all) take it from the `real_data_dir` fixture (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
TIMEOUT_S = 300
# The bench scripts and the test that runs each (test_every_script_is_run).
TESTED = {
    "cleansing.py": "test_cleansing",
    "mnist_all.py": "test_mnist_all",
    "paper.py": "test_paper_then_table",
    "per_epoch.py": "test_per_epoch",
    "precision.py": "test_precision",
    "scale.py": "test_scale",
    "skip.py": "test_skip",
    "speed.py": "test_speed",
    "table.py": "test_paper_then_table",
    "cnn.py": "test_cnn",
    "full_size.py": "test_full_size",
    "full_pipeline.py": "test_full_pipeline",
    "api.py": "test_api",
    "acc_fast.py": "test_acc_fast",
    "transformer.py": "test_transformer",
    "gpu.sh": "test_gpu_sh",
    "harness.py": "every test (the scripts' shared module)",
}


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """`run(*args, env=None, timeout=...)`: runs a bench script and its flags
    (or a command) from the repository root on CPU; asserts exit 0, returns
    stdout. The runs of a session share a persistent compilation cache, so a
    command run again (bench/gpu.sh's) loads its executables instead of
    compiling them (what the scripts time excludes compilation, or is not
    looked at here)."""
    cache = {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jit-cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }

    def run(*args: str, env=None, timeout=TIMEOUT_S) -> str:
        cmd = [sys.executable, *args] if args[0].endswith(".py") else list(args)
        full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **cache, **(env or {})}
        proc = subprocess.run(
            cmd, cwd=REPO, env=full_env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        assert proc.returncode == 0, (
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"--- stdout (end)\n{proc.stdout[-3000:]}\n"
            f"--- stderr (end)\n{proc.stderr[-6000:]}"
        )
        return proc.stdout

    return run


def load(path: Path, *keys: str) -> dict:
    """The JSON at `path`; asserts it holds every one of `keys` at the top."""
    assert path.is_file(), f"{path} was not written"
    data = json.loads(path.read_text())
    missing = [k for k in keys if k not in data]
    assert not missing, f"{path.name} lacks {missing}; has {sorted(data)}"
    return data


SPEED_KEYS = ("bench", "backend", "device", "dtype", "size", "repeats")
SPEED_KEYS += ("results", "ratios", "check")
SPEED_CASES = {"train", "loo_retrain", "sgd_ie", "acc_sgd_ie", "matmul"}
SCALE_KEYS = ("bench", "date", "backend", "device", "jax", "memory_method", "base")
SCALE_KEYS += ("estimators", "sweep_chunk_size", "repeats", "matmul", "flop_model")
SCALE_KEYS += ("points", "chunk_sweep", "memory_vs_chunk", "slopes", "ratios")
SCALE_KEYS += ("targets", "timing_child_maxrss_bytes", "wall_s")
MNIST_KEYS = ("date", "device", "n_train", "num_params", "num_steps", "dtype")
MNIST_KEYS += ("acc_targets", "seconds", "acc_sgd_ie", "sgd_ie")
MNIST_KEYS += ("exact_std_on_subset", "exact_all_extrapolated_s", "peak_rss_mb")


def check_speed(report: dict) -> None:
    assert set(report["results"]) == SPEED_CASES
    for name in SPEED_CASES:
        assert report["results"][name]["median_s"] > 0
    assert {"acc_over_loo", "sgd_ie_over_train"} <= set(report["ratios"])
    assert "fraction_of_matmul" in report["results"]["acc_sgd_ie"]


def check_scale(report: dict) -> None:
    assert report["points"] and report["chunk_sweep"]
    for point in report["points"]:
        assert set(point["results"]) == set(report["estimators"])
    assert "acc_over_loo_at_base" in report["ratios"]


def test_every_script_is_run():
    """A new bench script needs a --quick run here."""
    scripts = {p.name for p in BENCH.iterdir() if p.suffix in (".py", ".sh")}
    assert scripts == set(TESTED), "add the new script's --quick run to this file"


# A command line that runs a bench script: `[ENV=...] [.venv/bin/]python bench/X.py`.
COMMAND = re.compile(r"(?:^|\s)(?:\S*/)?python3?\s+bench/(\w+)\.py\b(.*)")


def documented_commands():
    """(where, script, args) of every bench command in the docs, the README and
    the scripts' docstrings (continued lines joined, comments dropped)."""
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    files += sorted(BENCH.glob("*.py"))
    for path in files:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        for number, line in enumerate(text.splitlines(), 1):
            match = COMMAND.search(line)
            if match:
                where = f"{path.relative_to(REPO)}:{number}"
                yield where, match[1], shlex.split(match[2], comments=True)


def gpu_sh_commands():
    """(script, args) of bench/gpu.sh at its full sizes: each script with the
    arrays it is run with ("${NAME[@]}"), as the non-QUICK branch sets them."""
    text = (BENCH / "gpu.sh").read_text()
    full = text[text.index("else") :]  # the arrays set without QUICK
    arrays = dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=\(([^)]*)\)", full))
    runs = re.findall(r'bench/(\w+)\.py((?:\s+"\$\{\w+\[@\]\}")+)', text)
    assert runs, "no bench command found in bench/gpu.sh"
    for script, refs in runs:
        names = re.findall(r"\$\{(\w+)\[@\]\}", refs)
        yield script, [a for n in names for a in shlex.split(arrays[n])]


def import_script(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # for `import harness`
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # as `import` would
    spec.loader.exec_module(module)
    return module


def test_documented_commands_parse(monkeypatch, capsys):
    """Every bench command the docs and bench/gpu.sh give still parses."""
    from accjax._src.cli import _parser as accjax_parser

    commands = list(documented_commands())
    commands += [("bench/gpu.sh", s, a) for s, a in gpu_sh_commands()]
    assert len(commands) > 20
    scripts = {name: None for _, name, _ in commands}
    for name in scripts:
        scripts[name] = import_script(name, monkeypatch)
    failed = []
    for where, name, args in commands:
        try:
            if name == "paper":  # its flags are `accjax experiment`'s
                args = ["experiment", *scripts[name].parse_args(args)]
                accjax_parser().parse_args(args)
            else:
                scripts[name].parse_args(args)
        except SystemExit:
            error = capsys.readouterr().err.strip().splitlines()[-1]
            failed.append(f"{where}: bench/{name}.py {shlex.join(args)}: {error}")
        except AttributeError:
            failed.append(f"{where}: bench/{name}.py has no parse_args(argv)")
    assert not failed, "\n".join(failed)


def test_speed(run, tmp_path):
    out = tmp_path / "speed.json"
    run("bench/speed.py", "--quick", "--out", str(out))
    check_speed(load(out, *SPEED_KEYS))


def test_skip(run, tmp_path):
    out = tmp_path / "skip.json"
    run("bench/skip.py", "--quick", "--out", str(out))
    report = load(out, "machine", "devices", "settings", "rows")
    assert report["rows"]
    for row in report["rows"]:
        assert {"seconds_skip", "seconds_no_skip", "saving_predicted"} <= set(row)


@pytest.mark.slow
def test_precision(run, tmp_path):
    out = tmp_path / "precision.json"
    run("bench/precision.py", "--quick", "--out", str(out))
    report = load(out, "settings", "rows")
    (row,) = report["rows"]
    assert set(row["f32_vs_f64"]) == {"exact", "sgd_ie", "acc_sgd_ie"}


@pytest.mark.slow
def test_per_epoch(run, tmp_path):
    run("bench/per_epoch.py", "--quick", "--out", str(tmp_path))
    report = load(tmp_path / "per_epoch.json", "mlp")
    assert set(report["mlp"]) == {"SGD-IE", "ACC-SGD-IE", "DVEmb"}
    assert len(report["mlp"]["SGD-IE"]["mean_abs_per_epoch"]) == 2
    assert (tmp_path / "per_epoch.png").is_file()


@pytest.mark.slow
def test_scale(run, tmp_path):
    out = tmp_path / "scale" / "scale.json"
    run("bench/scale.py", "--quick", "--out", str(out))
    check_scale(load(out, *SCALE_KEYS))
    png = out.with_name("scale.png")
    assert png.is_file()
    png.unlink()
    run("bench/scale.py", "--replot", str(out))
    assert png.is_file()


@pytest.mark.slow
def test_cnn(run, tmp_path):
    out = tmp_path / "cnn.json"
    run("bench/cnn.py", "--quick", "--out", str(out))
    report = load(out, "bench", "machine", "setting", "cases", "ratios")
    assert {"train", "loo_retrain", "acc_sgd_ie", "sgd_ie"} <= set(report["cases"])


def test_mnist_all(run, tmp_path, real_data_dir):
    out = tmp_path / "mnist_all.json"
    run("bench/mnist_all.py", "--quick", "--data-dir", real_data_dir, "--out", str(out))
    report = load(out, *MNIST_KEYS)
    assert set(report["seconds"]) == {"acc_sgd_ie", "sgd_ie", "exact_subset"}


@pytest.mark.slow
def test_full_size(run, tmp_path, real_data_dir):
    out = tmp_path / "full_size.json"
    run("bench/full_size.py", "--quick", "--data-dir", real_data_dir, "--out", str(out))
    report = load(out, "date", "machine", "args", "train", "sgd_ie", "plan")
    assert set(report["sgd_ie"]) == {"all", "states", "2", "nested"}
    assert report["sgd_ie"]["nested"]["storage"] == "('nested', 2)"
    assert set(report["plan"]) == {"1", "2"}
    assert report["plan"]["1"]["all"]["temp_bytes"] > 0
    assert report["train"]["n_train"] == 256 and report["train"]["seconds"] > 0


@pytest.mark.slow
def test_acc_fast(run, tmp_path, real_data_dir):
    out = tmp_path / "acc_fast.json"
    run("bench/acc_fast.py", "--quick", "--data-dir", real_data_dir, "--out", str(out))
    report = load(out, "date", "machine", "args", "rows", "summary")
    assert len(report["rows"]) == 2
    row = report["rows"][0]
    assert {"sgd_ie", "acc_sgd_ie", "fast_adjoint", "fast_none"} <= set(row)
    assert row["sgd_ie"]["x_sgd_ie_time"] == 1.0
    assert out.with_suffix(".png").is_file()
    assert (tmp_path / "acc_fast-predictor.png").is_file()
    assert row["fast_adjoint"]["correction_rel"] >= 0


@pytest.mark.slow
def test_full_pipeline(run, tmp_path, real_data_dir):
    """Every part on MNIST with flipped labels (2 epochs: ACC differs from SGD-IE
    only where examples recur); a rerun keeps what was written; CIFAR-10's keyed
    nnx model through training and SGD-IE, its final epoch restarted with a key of
    its own (`--last-epoch`)."""
    args = ("bench/full_pipeline.py", "--quick", "--data-dir", real_data_dir)
    args += ("--epochs", "2")
    run(*args, "--label-noise", "0.1", "--out", str(tmp_path))
    folder = tmp_path / "mnist-noise0.1-n640-e2"
    report = load(folder / "results.json", "date", "machine", "args", "parts")
    assert set(report["parts"]) == {
        "train", "sgd_ie", "tracin_cp", "tracin_self", "dvemb", "acc_top",
        "acc_fast", "acc_last_layer", "detection", "cleanse", "lds", "lds_noise",
        "attribution",
    }  # fmt: skip
    assert len(report["parts"]["acc_top"]["targets"]) == 4
    assert "tracin_self" in report["parts"]["detection"]
    assert {"sgd_ie", "acc_fast"} <= set(report["parts"]["lds"])
    noise = report["parts"]["lds_noise"]
    assert len(noise["changes"]) == 2 and noise["lds_actual_std"] > 0
    assert (folder / "full_pipeline.png").is_file()
    sgd = (folder / "sgd_ie.npy").stat().st_mtime_ns
    run(*args, "--label-noise", "0.1", "--out", str(tmp_path))
    assert (folder / "sgd_ie.npy").stat().st_mtime_ns == sgd
    run(*args, "--workload", "cifar10", "--last-epoch", "--parts", "train,sgd_ie",
        "--out", str(tmp_path))  # fmt: skip
    report = load(tmp_path / "cifar10-n640-e2-last" / "results.json", "parts")
    assert set(report["parts"]) == {"train", "sgd_ie"}
    parts = "train,sgd_ie,tracin_cp,acc_fast,attribution"
    run(*args, "--workload", "news20", "--seq-len", "16", "--width", "16",
        "--attribution-queries", "5", "--parts", parts,
        "--out", str(tmp_path))  # fmt: skip
    report = load(tmp_path / "news20-n640-e2" / "results.json", "parts")
    assert set(report["parts"]) == set(parts.split(","))
    assert report["parts"]["attribution"]["num_queries"] == 5
    # Hara's MNIST recipe over two seeds, the fast ACC's ranking cleansed
    run(*args, "--workload", "mnist-hara", "--seeds", "0,1", "--parts",
        "train,sgd_ie,acc_fast,cleanse", "--out", str(tmp_path))  # fmt: skip
    summary = load(tmp_path / "mnist-hara-n640-e2-seeds.json", "seeds", "remove")
    assert summary["seeds"] == [0, 1]
    assert {"sgd_ie", "acc_fast", "random"} <= set(summary["change_points"])
    assert len(summary["acc_fast_minus_sgd_ie"]["mean"]) == 2
    assert (tmp_path / "mnist-hara-n640-e2-seeds.png").is_file()


@pytest.mark.slow
def test_api(run, tmp_path):
    """The public-API benchmark at its quick sizes, with its CI bounds: a doubled
    overhead in a public call fails here."""
    out = tmp_path / "api.json"
    history = tmp_path / "history.jsonl"
    # every public call compiled on three workloads: longer than one script's limit
    args = ("--quick", "--check", "--out", str(out), "--history", str(history))
    args += ("--plot", str(tmp_path / "h.png"))
    run("bench/api.py", *args, timeout=3 * TIMEOUT_S)
    report = load(out, "date", "commit", "workloads")
    assert set(report["workloads"]) == {"mlp", "cnn", "transformer"}
    for res in report["workloads"].values():
        assert res["ratios"]["acc_x_loo"] > 0 and res["train_step_s"] > 0
    assert "dvemb_x_train" not in report["workloads"]["transformer"]["ratios"]
    assert len(history.read_text().splitlines()) == 1


@pytest.mark.slow
def test_transformer(run, tmp_path, real_data_dir):
    out = tmp_path / "transformer.json"
    run("bench/transformer.py", "--quick", "--data-dir", real_data_dir, "--out",
        str(out))  # fmt: skip
    report = load(out, "num_params", "exact", "sgd_ie", "acc_sgd_ie")
    assert all(report[k]["finite"] for k in ("sgd_ie", "acc_sgd_ie", "tracin"))


@pytest.mark.slow
def test_cleansing(run, tmp_path, real_data_dir):
    run("bench/cleansing.py", "--quick", "--only", "adult-mlp", "--data-dir",
        real_data_dir, "--out", str(tmp_path))  # fmt: skip
    report = load(tmp_path / "summary.json", "adult-mlp")
    assert {"setting", "summary", "seconds", "peak_rss_mb", "wall_s"} <= set(
        report["adult-mlp"]
    )
    load(tmp_path / "adult-mlp" / "cleanse.json", "setting", "rows", "summary")
    assert (tmp_path / "cleansing.png").is_file()


def test_paper_then_table(run, tmp_path, real_data_dir):
    """paper.py's grid.json, then every table of bench/table.py from it."""
    out = tmp_path / "paper"
    run("bench/paper.py", "--quick", "--data-dir", real_data_dir, "--out", str(out))
    grid = out / "grid.json"
    load(grid, "setting", "rows", "summary")
    assert "| setting | estimator |" in run("bench/table.py", str(grid))
    assert "| data | model |" in run("bench/table.py", "--relative", str(grid))
    kept = run("bench/table.py", "--max-l2", "1e9", str(grid))
    assert "left out 0 of" in kept and "| setting |" in kept


@pytest.mark.slow
def test_gpu_sh(run, tmp_path, real_data_dir):
    """bench/gpu.sh's commands at --quick (QUICK=1), with this interpreter."""
    env = {"QUICK": "1", "PYTHON": sys.executable, "ACCJAX_DATA": real_data_dir}
    run("bash", "bench/gpu.sh", str(tmp_path), env=env, timeout=2 * TIMEOUT_S)
    log = (tmp_path / "log.txt").read_text()
    for name in ("api", "speed-4000", "scale", "mnist_all", "text"):
        assert f"   {name} exit 0" in log, log
    assert "mlp" in load(tmp_path / "api.json", "workloads")["workloads"]
    check_speed(load(tmp_path / "speed-4000.json", *SPEED_KEYS))
    check_scale(load(tmp_path / "scale" / "scale.json", *SCALE_KEYS))
    load(tmp_path / "mnist_all.json", *MNIST_KEYS)
