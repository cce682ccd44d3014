"""The public calls as a user makes them, timed as ratios to a training step.

    python bench/api.py                                   # the three workloads
    python bench/api.py --workloads cnn --repeats 7
    python bench/api.py --history bench/history/api.jsonl --plot docs/api-history.png
    python bench/api.py --quick --check                   # tiny sizes, CI bounds

Workloads (float32, random data: the speed does not depend on the values):

- `mlp`: `accjax.models.mlp` (104 features, widths 8, 8), 400 examples, batch 100,
  10 epochs (40 steps), `optax.sgd(0.1)`: the reference size.
- `cnn`: Hara's MNIST CNN (`accjax.models.cnn`, 13,750 parameters), 640 28x28
  images, batch 64, 2 epochs (20 steps), `optax.sgd(0.05)`.
- `transformer`: `accjax.models.TextTransformer` (2,000 words, 32 tokens, width
  64, 2 heads, 2 blocks, dropout 0.1, keyed), 512 sequences, batch 32, 2 epochs
  (32 steps), `optax.adamw(1e-3)` with optax's defaults.

Each public call is made once to compile, then timed `--repeats` times in
interleaved rounds (block_until_ready before the clock is read); the medians give:

- `train_step_s`: `accjax.train` over the run's schedule, per step (the unit).
- `loo_retrain_x_step`: `loo_retrain` on `--targets` targets, per target-step.
- `acc_x_loo`: `acc_sgd_ie` on the same targets against `loo_retrain`, per
  target-step, beside its floor `hvp_x_grad`: a batch Hessian-vector product
  (jvp of the batch gradient) against the batch gradient, each timed inside one
  scan over the run's batches.
- `sgd_ie_x_train` beside its floor `vjp_x_step`: a training step with its
  vector-Jacobian product (in the state and the example weights) against the step
  alone, each timed inside one scan over the run's batches.
- `tracin_x_train` (5 checkpoints), `dvemb_x_train` (plain SGD
  only; projected to 64 dimensions: its floor is the projection, B d 64 a step,
  and the 64 x 64 propagator): every example, against `accjax.train`.
- `acc_fast_x_sgd_ie`: `acc_sgd_ie_fast` for every example against `sgd_ie`.
- `cleanse_x_step`, `subset_retrain_x_step`: per retraining-step (the retrainings
  a call makes, its replay of the run included).

`--check` exits 1 when a ratio passes its bound in `BOUNDS` (loose enough for a
shared machine: they catch a doubled overhead, not noise). `--history` appends the
run (commit, date, machine, sizes, ratios) as one JSON line; `--plot` then draws
every ratio of the history's full-size runs, one panel per workload.
"""

from __future__ import annotations

import datetime
import json
import statistics
import subprocess
import sys
from pathlib import Path

import harness
import numpy as np

WORKLOADS = ("mlp", "cnn", "transformer")
# Loose CI bounds (x the unit named in the ratio), for --check.
BOUNDS = {
    "loo_retrain_x_step": 2.5,
    "acc_x_loo": 4.0,
    "sgd_ie_x_train": 8.0,
    "acc_fast_x_sgd_ie": 8.0,
    "tracin_x_train": 12.0,
    "cleanse_x_step": 2.5,
    "subset_retrain_x_step": 2.5,
}
DVEMB_DIM = 64  # DVEmb's d x d propagator is its floor: O(d^2 B) a step
QUICK = dict(repeats=2, targets=4, scale=0.25)


def parse_args(argv=None):
    p = harness.parser(__doc__, out=None, out_help="JSON path", repeats=5)
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    p.add_argument("--targets", type=int, default=16)
    p.add_argument(
        "--scale", type=float, default=1.0, help="examples x this (--quick: 0.25)"
    )
    p.add_argument("--check", action="store_true", help="exit 1 past a CI bound")
    p.add_argument("--history", default=None, help="JSON-lines file to append to")
    p.add_argument("--plot", default=None, help="PNG of the history (--history's)")
    return harness.parse_args(p, argv, quick=QUICK)


def workload(name: str, scale: float):
    """(run, query, test, learning rate or None) of a named workload."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import accjax

    rng = np.random.RandomState(0)
    size = lambda n, batch: max(2 * batch, int(round(n * scale)))
    if name == "mlp":
        n, lr = size(400, 100), 0.1
        x = rng.randn(n + 200, 104).astype(np.float32)
        y = (x @ rng.randn(104) > 0).astype(np.float32)
        params, apply = accjax.models.mlp(jax.random.key(0), 104, (8, 8))
        loss = accjax.models.binary_loss(apply)
        problem = accjax.Problem(loss, params, (x[:n], y[:n]))
        batch, epochs, optimizer = 100, 10, optax.sgd(lr)
        error = accjax.models.binary_error(apply)
    elif name == "cnn":
        n, lr = size(640, 64), 0.05
        x = rng.rand(n + 200, 28, 28, 1).astype(np.float32)
        y = rng.randint(0, 10, n + 200).astype(np.int32)
        params, apply = accjax.models.cnn(jax.random.key(0))
        loss = accjax.models.multiclass_loss(apply)
        problem = accjax.Problem(loss, params, (x[:n], y[:n]))
        batch, epochs, optimizer = 64, 2, optax.sgd(lr)
        error = accjax.models.multiclass_error(apply)
    elif name == "transformer":
        n, lr = size(512, 32), None
        x = rng.randint(1, 2000, (n + 200, 32)).astype(np.int32)
        x[:, 24:] = 0  # padding at the end of every sequence
        y = rng.randint(0, 4, n + 200).astype(np.int32)
        net = accjax.models.TextTransformer(
            vocab_size=2000, max_len=32, num_classes=4, dim=64, heads=2,
            num_layers=2, dropout=0.1, rngs=nnx.Rngs(params=0, dropout=1),
        )  # fmt: skip
        model = accjax.models.from_nnx(net)
        problem = model.problem((x[:n], y[:n]), key=jax.random.key(0))
        loss, apply = accjax.models.multiclass_loss(model.apply), model.apply
        batch, epochs, optimizer = 32, 2, optax.adamw(1e-3)
        error = accjax.models.multiclass_error(apply)
    else:
        raise ValueError(f"unknown workload {name!r}; choose from {WORKLOADS}")
    run = accjax.train(problem, optimizer, batch_size=batch, epochs=epochs)
    held_out = (jnp.asarray(x[n:]), jnp.asarray(y[n:]))
    query = accjax.mean_loss(loss, held_out)
    test = {"error": accjax.mean_loss(error, held_out)}
    return run, query, test, lr


def floors(run, repeats: int) -> dict:
    """The arithmetic floors, each over every batch of the run in one jitted scan:
    `hvp_x_grad`, a batch HVP's time over a batch gradient's (ACC over
    retraining), and `vjp_x_step`, a training step with its vector-Jacobian
    product (in the state and the example weights) over the step alone (SGD-IE,
    a forward and a reverse pass through every step, over training)."""
    import jax
    import jax.numpy as jnp

    from accjax._src.train import TrainState, batch_loss, step

    p, opt, params = run.problem, run.optimizer, run.params
    state = TrainState(params, opt.init(params))
    rows = jnp.asarray(run.schedule)
    ones = lambda indices: (indices >= 0).astype(jnp.float32)

    def scan(body, x):
        def go(x):
            def one(carry, xs):
                out = jax.tree.leaves(body(x, xs[1], xs[0]))
                out = [a for a in out if jnp.issubdtype(a.dtype, jnp.floating)]
                return carry + sum(jnp.vdot(a, a) for a in out), None

            xs = (jnp.arange(rows.shape[0]), rows)
            return jax.lax.scan(one, jnp.float32(0), xs)[0]

        go = jax.jit(go)
        return lambda: go(x)

    grad = jax.grad(lambda w, i, t: batch_loss(p, w, i, ones(i), t))
    hvp = lambda w, i, t: jax.jvp(lambda v: grad(v, i, t), (w,), (w,))[1]
    train_step = lambda z, i, t: step(p, opt, z, i, ones(i), t)

    def step_vjp(z, i, t):
        out, pullback = jax.vjp(lambda z, w: step(p, opt, z, i, w, t), z, ones(i))
        return pullback(out)

    calls = {"grad": scan(grad, params), "hvp": scan(hvp, params)}
    calls.update(step=scan(train_step, state), step_vjp=scan(step_vjp, state))
    harness.warm_up(calls)
    wall, _ = harness.rounds(calls, repeats)
    med = {k: statistics.median(v) for k, v in wall.items()}
    return {
        "hvp_x_grad": med["hvp"] / med["grad"],
        "vjp_x_step": med["step_vjp"] / med["step"],
    }


def bench_workload(name: str, args) -> dict:
    import jax
    import jax.numpy as jnp

    import accjax

    run, query, test, lr = workload(name, args.scale)
    n, steps = run.problem.num_examples, run.num_steps
    m = min(args.targets, n)
    targets = jnp.arange(m)
    five = np.linspace(steps / 5, steps, 5).round().astype(int)
    remove = (1, 2)
    calls = {
        "train": lambda: accjax.train(
            run.problem, run.optimizer, schedule=run.schedule
        ),
        "loo_retrain": lambda: accjax.loo_retrain(run, query, targets=targets),
        "acc_sgd_ie": lambda: accjax.acc_sgd_ie(run, query, targets=targets),
        "sgd_ie": lambda: accjax.sgd_ie(run, query),
        "acc_sgd_ie_fast": lambda: accjax.acc_sgd_ie_fast(run, query),
        "tracin": lambda: accjax.tracin(run, query, checkpoints=five),
        "subset_retrain": lambda: accjax.subset_retrain(
            run, query, num_subsets=4, fraction=0.9
        ),
    }
    if lr is not None:
        calls["dvemb"] = lambda: accjax.dvemb(
            run, query, learning_rate=lr, projection_dim=DVEMB_DIM
        )
    sgd = accjax.sgd_ie(run, query)
    calls["cleanse"] = lambda: accjax.cleanse(
        run, query, test=test, estimator={"sgd_ie": sgd}, remove=remove,
        random_draws=1,
    )  # fmt: skip
    print(f"[{name}] {n} examples, {steps} steps: compiling", file=sys.stderr)
    calls = {k: (lambda c=c: _values(c())) for k, c in calls.items()}
    harness.warm_up(calls)
    wall, _ = harness.rounds(calls, args.repeats)
    med = {k: statistics.median(v) for k, v in wall.items()}
    step = med["train"] / steps
    per_target = lambda k: med[k] / (m * steps)
    cleanse_runs = len(remove) * 2 + 1  # sgd_ie and random, and the replay
    ratios = {
        "loo_retrain_x_step": per_target("loo_retrain") / step,
        "acc_x_loo": med["acc_sgd_ie"] / med["loo_retrain"],
        **floors(run, args.repeats),
        "sgd_ie_x_train": med["sgd_ie"] / med["train"],
        "acc_fast_x_sgd_ie": med["acc_sgd_ie_fast"] / med["sgd_ie"],
        "tracin_x_train": med["tracin"] / med["train"],
        "cleanse_x_step": med["cleanse"] / (cleanse_runs * steps) / step,
        "subset_retrain_x_step": med["subset_retrain"] / (5 * steps) / step,
    }
    if "dvemb" in med:
        ratios["dvemb_x_train"] = med["dvemb"] / med["train"]
    num_params = sum(int(np.size(a)) for a in jax.tree.leaves(run.params))
    size = dict(num_examples=n, num_steps=steps, num_params=num_params, targets=m)
    return {"size": size, "train_step_s": step, "median_s": med, "ratios": ratios}


def _values(out):
    """Something to block on: an Influence's values, a Run's params, else out."""
    for attr in ("values", "params", "baseline"):
        if hasattr(out, attr):
            return getattr(out, attr)
    return out


def commit() -> str | None:
    try:
        cmd = ["git", "rev-parse", "--short", "HEAD"]
        here = Path(__file__).parent
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=here)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def plot_history(history: Path, png: Path) -> None:
    """Every ratio of every workload against the run's date, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(line) for line in history.read_text().splitlines() if line]
    runs = [r for r in runs if not r.get("quick")] or runs  # --quick: a smoke test
    workloads = sorted({w for r in runs for w in r["workloads"]})
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 3.8),
                             squeeze=False)  # fmt: skip
    # one colour per ratio in every panel
    every = sorted({k for r in runs for w in r["workloads"].values()
                    for k in w["ratios"]})  # fmt: skip
    colour = {k: plt.cm.tab10(i % 10) for i, k in enumerate(every)}
    for ax, w in zip(axes[0], workloads, strict=True):
        mine = [r for r in runs if w in r["workloads"]]
        names = sorted({k for r in mine for k in r["workloads"][w]["ratios"]})
        for k in names:
            pts = [(i, r["workloads"][w]["ratios"][k]) for i, r in enumerate(mine)
                   if k in r["workloads"][w]["ratios"]]  # fmt: skip
            ax.plot(*zip(*pts, strict=True), marker="o", color=colour[k], label=k)
        ax.set_xticks(range(len(mine)))
        ax.set_xticklabels([f"{r['date']}\n{r['commit']}" for r in mine], fontsize=7)
        ax.set(yscale="log", title=w, ylabel="ratio")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colour[k], marker="o", label=k) for k in every]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="center left",
                       bbox_to_anchor=(1, 0.5))  # fmt: skip
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plot and not args.history:
        sys.exit("--plot draws the history: pass --history too")
    names = args.workloads.split(",")
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        sys.exit(f"--workloads: unknown {unknown}; choose from {list(WORKLOADS)}")
    report = {
        "bench": "api",
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "quick": bool(args.quick),
        "repeats": args.repeats,
        **harness.machine_info(),
        "workloads": {w: bench_workload(w, args) for w in names},
    }
    report["load_average_end"] = harness.load_average()
    failed = []
    for w, res in report["workloads"].items():
        print(f"{w}: train step {res['train_step_s'] * 1e3:.2f} ms, {res['size']}")
        for k, v in res["ratios"].items():
            bound = BOUNDS.get(k)
            mark = "" if bound is None else f"  (CI bound {bound})"
            if bound is not None and v > bound:
                failed.append(f"{w} {k} = {v:.2f} > {bound}")
                mark += "  PAST THE BOUND"
            print(f"  {k:24s} {v:7.2f}{mark}")
    if args.out:
        harness.write_json(args.out, report)
    if args.history:
        with open(args.history, "a") as f:
            f.write(json.dumps(report) + "\n")
        if args.plot:
            plot_history(Path(args.history), Path(args.plot))
    if args.check and failed:
        print("past the CI bounds:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
