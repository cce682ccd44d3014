"""Every bench script at its --quick sizes, in a subprocess, on CPU.

A benchmark nobody runs rots: a renamed argument or API breaks it silently.
Each test runs `python bench/NAME.py --quick --out TMP/...` from the
repository root with JAX_PLATFORMS=cpu and asserts that it exits 0 and that
its JSON parses with the top-level keys the docs cite. The scripts that read
real data take it from the `real_data_dir` fixture (tests/conftest.py).
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
    "paper.py": "test_paper_then_table",
    "precision.py": "test_precision",
    "table.py": "test_paper_then_table",
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


def test_every_script_is_run():
    """A new bench script needs a --quick run here."""
    scripts = {p.name for p in BENCH.iterdir() if p.suffix in (".py", ".sh")}
    assert scripts == set(TESTED), "add the new script's --quick run to this file"


# A command line that runs a bench script: `[ENV=...] [.venv/bin/]python bench/X.py`.
COMMAND = re.compile(r"(?:^|\s)(?:\S*/)?python3?\s+bench/(\w+)\.py\b(.*)")
# A command line of the CLI: `[ENV=...] [.venv/bin/]accjax SUBCOMMAND ...`.
CLI = re.compile(r"^\s*(?:[A-Z_]+=\S+\s+)*(?:\S*/)?(accjax)\s+([a-z].*)$")


def documented_commands():
    """(where, script, args) of every bench and `accjax` command in the docs, the
    README and the scripts' docstrings (continued lines joined, comments dropped,
    shell variables set in the same file expanded; script "accjax": the CLI)."""
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    files += sorted(BENCH.glob("*.py"))
    for path in files:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        shell = dict(re.findall(r'^\s*([A-Z]\w*)="([^"]*)"$', text, re.M))  # E="..."
        for number, line in enumerate(text.splitlines(), 1):
            line = re.sub(r"\$(\w+)", lambda m, v=shell: v.get(m[1], m[0]), line)
            match = COMMAND.search(line) or CLI.match(line)
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
    scripts = {name: None for _, name, _ in commands if name != "accjax"}
    for name in scripts:
        scripts[name] = import_script(name, monkeypatch)
    failed = []
    for where, name, args in commands:
        try:
            if name == "accjax":
                accjax_parser().parse_args(args)
            elif name == "paper":  # its flags are `accjax experiment`'s
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


@pytest.mark.slow
def test_precision(run, tmp_path):
    out = tmp_path / "precision.json"
    run("bench/precision.py", "--quick", "--out", str(out))
    report = load(out, "settings", "rows")
    (row,) = report["rows"]
    assert set(row["f32_vs_f64"]) == {"exact", "sgd_ie", "acc_sgd_ie"}


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
        "acc_fast", "detection", "cleanse", "lds", "lds_noise",
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
        "--test-holdout", "300", "--out", str(tmp_path))  # fmt: skip
    report = load(tmp_path / "cifar10-n640-h300-e2-last" / "results.json", "parts")
    assert set(report["parts"]) == {"train", "sgd_ie"}
    assert report["parts"]["train"]["n_test"] == 300
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
    for name in ("api", "mnist", "text"):
        assert f"   {name} exit 0" in log, log
    assert "mlp" in load(tmp_path / "api.json", "workloads")["workloads"]
    results = load(tmp_path / "mnist" / "mnist-hara-n640" / "results.json", "parts")
    assert set(results["parts"]) == {"train", "sgd_ie"}  # one epoch: no fast ACC
