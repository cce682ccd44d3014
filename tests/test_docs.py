"""Every Python block of README.md and docs/ runs, so the docs cannot rot.

The blocks of a file run in order in one namespace, as a reader follows them. The
prose defines some names a block uses (a user's data, `problem`, `run`); SETUP gives
them, small, before the block that first needs them, and SHRINK turns a block's
sizes down to a test's (a textual replacement that must match). A block whose first
line is `# not run: <reason>` is left out; one whose first line is `# needs the
data directory` runs with the real data sets (skipped without them, a failure in CI).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FILES = ["README.md", *sorted(p.relative_to(REPO).as_posix()
                              for p in (REPO / "docs").glob("*.md"))]  # fmt: skip
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"^# not run: \S")
NEEDS_DATA = "# needs the data directory"

IMPORTS = """
import jax, jax.numpy as jnp, numpy as np, optax, accjax
from flax import nnx
"""
BINARY = (
    IMPORTS
    + """
rng = np.random.default_rng(0)
x_all = rng.normal(size=(90, 30)).astype(np.float32)
y_all = (x_all[:, 0] > 0).astype(np.float32)
x_train, x_val = x_all[:60], x_all[60:]
y_train, y_val = y_all[:60], y_all[60:]
params, apply = accjax.models.mlp(jax.random.PRNGKey(0), num_features=30)
loss = accjax.models.binary_loss(apply)
problem = accjax.Problem(loss, params, (x_train, y_train))
optimizer = optax.sgd(0.1)
run = accjax.train(problem, optimizer, batch_size=20, epochs=2)
query = accjax.mean_loss(loss, (x_val, y_val))
my_batches = lambda: list(accjax.make_schedule(60, 20, 2))
"""
)
IMAGES = (
    IMPORTS
    + """
rng = np.random.default_rng(0)
x_train = rng.random((16, 32, 32, 3), dtype=np.float32)
y_train = rng.integers(0, 10, 16).astype(np.int32)
x_val, y_val = x_train[:4], y_train[:4]
"""
)
SMALL_IMAGES = (
    IMPORTS
    + """
rng = np.random.default_rng(0)
x = rng.random((96, 8, 8, 3), dtype=np.float32)
y = rng.integers(0, 2, 96).astype(np.int32)
x_val, y_val = x[:16], y[:16]
"""
)
# (file, block number from 1) -> code run before that block
SETUP = {
    ("docs/api.md", 1): BINARY,
    ("docs/api.md", 2): IMAGES,
    ("docs/api.md", 3): BINARY,
    ("docs/data.md", 1): IMPORTS,
    ("docs/example.md", 1): SMALL_IMAGES,
    ("docs/scaling.md", 1): BINARY,
}
# (file, block number) -> [(text in the block, its test-size replacement)]
SHRINK = {
    ("docs/api.md", 2): [("batch_size=64, epochs=2", "batch_size=8, epochs=1")],
    ("docs/example.md", 2): [("epochs=10", "epochs=2")],
    ("docs/example.md", 5): [
        (
            "n_train=2000, n_val=500, max_len=64",
            "n_train=96, n_val=8, n_test=4, max_len=16",
        ),
        ("max_len=64, num_classes=20, dim=64", "max_len=16, num_classes=20, dim=16"),
        ("epochs=3", "epochs=1"),
    ],
    ("docs/scaling.md", 1): [("chunk_size=4096", "chunk_size=16")],
}


def blocks(path: str) -> list[str]:
    return BLOCK.findall((REPO / path).read_text())


def readme_example() -> str:
    """README's example, one cleansing count fewer (the runs outside this suite's
    namespace)."""
    return blocks("README.md")[0].replace("remove=[10, 30]", "remove=[10]")


def test_the_reference_names_every_public_name():
    """docs/reference.md (autodoc) documents each name the package exports."""
    import accjax

    text = (REPO / "docs" / "reference.md").read_text()
    subs = ("metrics", "datasets", "models")
    modules = {"accjax": accjax, **{f"accjax.{m}": getattr(accjax, m) for m in subs}}
    names = [f"{m}.{n}" for m, mod in modules.items() for n in mod.__all__
             if n not in subs]  # fmt: skip
    missing = [n for n in names if not re.search(rf":: {re.escape(n)}\b", text)]
    assert not missing, f"docs/reference.md lacks {missing}"


def _split_top(args: str) -> list[str]:
    """`args` split at its top-level commas (defaults may hold brackets)."""
    parts, depth, current = [], 0, ""
    for ch in args:
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p.strip() for p in [*parts, current] if p.strip()]


def test_api_md_signatures_match_the_code():
    """Every call docs/api.md writes as `accjax.NAME(args)` names the parameters
    of the real function, in order (with `...`, those it names, in order)."""
    import inspect

    import accjax

    text = (REPO / "docs" / "api.md").read_text()
    wrong, checked = [], 0
    for match in re.finditer(r"`(accjax(?:\.\w+)+)\(", text):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        obj = accjax
        for part in match[1].split(".")[1:]:
            obj = getattr(obj, part, None)
        if obj is None:
            wrong.append(f"{match[1]}: no such name")
            continue
        try:
            params = inspect.signature(obj).parameters.values()
        except (TypeError, ValueError):  # not introspectable (a C callable)
            continue
        real = [("*" if p.kind == p.VAR_POSITIONAL else "**" if p.kind ==
                 p.VAR_KEYWORD else "") + p.name for p in params]  # fmt: skip
        doc = [a.split("=")[0].strip() for a in _split_top(text[match.end() : end - 1])]
        partial = "..." in doc
        doc = [a for a in doc if a not in ("*", "/", "...")]
        it = iter(real)
        ok = all(a in it for a in doc) if partial else doc == real
        checked += 1
        if not ok:
            wrong.append(f"{match[1]}({', '.join(doc)}): the code has {real}")
    assert checked > 15
    assert not wrong, "\n".join(wrong)


def test_every_block_runs_or_says_why():
    """A block is run, or marked `# not run:` with a reason; SETUP and SHRINK
    name blocks that exist, and every replacement matches its block."""
    for (path, number), pairs in SHRINK.items():
        code = blocks(path)[number - 1]
        for old, _ in pairs:
            assert old in code, f"{path} block {number}: {old!r} no longer in it"
    for path, number in SETUP:
        assert number <= len(blocks(path)), (path, number)
    marked = [(p, i) for p in FILES for i, b in enumerate(blocks(p), 1)
              if b.startswith("# not run")]  # fmt: skip
    for path, number in marked:
        assert NOT_RUN.match(blocks(path)[number - 1]), (path, number, "no reason")


@pytest.mark.parametrize("path", [p for p in FILES if blocks(p)])
def test_python_blocks_run(path, request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a block writes lands here
    namespace: dict = {"__name__": "__docs__"}
    for number, code in enumerate(blocks(path), 1):
        if NOT_RUN.match(code):
            continue
        if code.startswith(NEEDS_DATA):
            data_dir = request.getfixturevalue("real_data_dir")
            monkeypatch.setenv("ACCJAX_DATA", data_dir)
        if (path, number) in SETUP:
            exec(SETUP[(path, number)], namespace)
        for old, new in SHRINK.get((path, number), []):
            code = code.replace(old, new)
        try:
            exec(compile(code, f"{path}, python block {number}", "exec"), namespace)
        except Exception as error:  # name the block in the failure
            raise AssertionError(f"{path}, python block {number} failed") from error


def test_the_core_example_runs_without_the_extras(tmp_path):
    """README's block with flax, scikit-learn and matplotlib hidden (the core
    install), and a missing extra named by the ImportError of what needs it."""
    import subprocess
    import sys

    code = readme_example()
    script = (
        "import sys\n"
        "for m in ('flax', 'sklearn', 'matplotlib'): sys.modules[m] = None\n"
        + code
        + "\nimport pytest, accjax\n"
        "with pytest.raises(ImportError, match=r'accjax\\[nnx\\]'):\n"
        "    accjax.models.from_nnx\n"
        "with pytest.raises(ImportError, match=r'accjax\\[data\\]'):\n"
        "    accjax.datasets.load('breast_cancer', n_train=10, n_val=5, n_test=5)\n"
        "from accjax._src import demo\n"
        "with pytest.raises(ImportError, match=r'accjax\\[plot\\]'):\n"
        "    demo.scatter_plot('x.png', [0.0], {'a': [0.0]}, 't')\n"
        "print('core ok')\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0 and "core ok" in proc.stdout, proc.stderr[-4000:]


@pytest.mark.slow
def test_the_wheel_installs_the_core_and_runs_the_readme(tmp_path):
    """The built wheel requires the core only; installed into a clean virtual
    environment (no extras), it runs the README's example."""
    import subprocess
    import sys
    import zipfile

    def run(*cmd, cwd=tmp_path):
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              timeout=1200)  # fmt: skip
        assert proc.returncode == 0, (
            f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
        return proc.stdout

    import shutil

    source = tmp_path / "src"  # a copy: building writes build/ beside the sources
    shutil.copytree(REPO / "accjax", source / "accjax",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
        str(source))  # fmt: skip
    (wheel,) = tmp_path.glob("accjax-*.whl")
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    requires = [
        x.split(":", 1)[1].strip() for x in lines if x.startswith("Requires-Dist")
    ]
    core = {re.split(r"[<>=!\[ ;]", r)[0] for r in requires if "extra ==" not in r}
    assert core == {"jax", "jaxlib", "optax", "numpy", "scipy"}, requires
    assert any(x.startswith("License-Expression: Apache-2.0") for x in lines)
    run(sys.executable, "-m", "venv", str(tmp_path / "venv"))
    python = tmp_path / "venv" / "bin" / "python"
    run(str(python), "-m", "pip", "install", "-q", str(wheel))
    code = readme_example()
    (tmp_path / "readme.py").write_text(code)
    out = run(str(python), "readme.py")
    assert "acc_sgd_ie" in out and "error after removing" in out
    extras = "('flax', 'sklearn', 'matplotlib')"
    found = (
        f"import importlib.util as u; print([m for m in {extras} if u.find_spec(m)])"
    )
    assert run(str(python), "-c", found).strip() == "[]"
