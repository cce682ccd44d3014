"""Hara's MNIST CNN: one training step, and each estimator per target and step.

    python bench/cnn.py                      # batch 64, about 2 minutes on 2 cores
    python bench/cnn.py --quick              # tiny sizes, a smoke test
    python bench/cnn.py --out bench-out/cnn.json

`accjax.models.cnn()` (conv 1->20, pool, conv 20->20, pool, Linear 320->10, 13,750
parameters), softmax cross-entropy, `optax.sgd(0.05)`, float32, on random
28x28x1 images (the speed does not depend on the pixels). Times, medians of
`--repeats` interleaved rounds, compile excluded:

- `train`: `accjax.train` over `--train-steps` steps of `--batch-size`, per step.
- The same network as plain batched JAX (`lax.conv_general_dilated`,
  `lax.reduce_window` max-pool), its jitted step called from a Python loop
  (`plain_lax_loop`) and inside a `lax.scan` (`plain_lax_scan`): the breakdown
  of docs/performance.md.
- `loo_retrain` and `acc_sgd_ie` for `--targets` targets over `--steps` steps
  (one chunk), per target and step; `sgd_ie` for every example of that run, as
  a multiple of training the same steps.
- The gap of `loo_retrain` broken down (`--runs`): R trainings over the
  `train` schedule through accjax's own step, vmapped over R different parameter
  sets inside one `lax.scan` as `loo_retrain` vmaps them, per run and step, for
  each R: removing nothing (`vmap_runs_R`) and each removing one example
  (`_weighted`). R = 1 against the training step is the scan's own cost; the
  growth with R is what vmapping runs with different weights costs.
- PyTorch (when `import torch` works), the same network and batch with
  `torch.set_num_threads(--torch-threads)`: forward, backward and SGD update.

Writes `--out` (JSON, atomically) and prints the ratios the issue sets targets
for: train / PyTorch, sgd_ie / train, loo per target-step / train step,
acc / loo per target-step.
"""

from __future__ import annotations

import time

import harness
import jax
import jax.numpy as jnp
import numpy as np
import optax

import accjax
from accjax._src import train as train_lib
from accjax._src.estimators import common
from accjax._src.problem import TrainState

QUICK = dict(batch_size=16, train_steps=4, steps=2, targets=2, repeats=2, runs="1,3")


def vmapped_runs(run, rows):
    """`len(rows)` trainings on `run`'s schedule in one scan, vmapped over their
    states the way `loo_retrain` vmaps them: accjax's own step (`train.step`) with
    `common.counterfactual_weights`, run r removing training example `rows[r]`
    (-1: none). Run r starts from the parameters scaled by 1 + 1e-3 r, so the runs
    differ. Returns (jitted function of the start states, the start states)."""
    problem, optimizer, schedule = run.problem, run.optimizer, run.schedule
    dtype = train_lib.param_dtype(problem.params)
    scale = 1.0 + 1e-3 * jnp.arange(len(rows), dtype=dtype)
    params = jax.tree.map(
        lambda p: p[None] * scale.reshape((-1,) + (1,) * p.ndim), problem.params
    )
    starts = jax.vmap(lambda p: TrainState(p, optimizer.init(p)))(params)

    def body(zs, xs):
        t, indices = xs
        weights = jax.vmap(lambda k: common.counterfactual_weights(indices, k, dtype))(
            rows
        )
        step = lambda z, w: train_lib.step(problem, optimizer, z, indices, w, t)
        return jax.vmap(step)(zs, weights), None

    steps = (jnp.arange(schedule.shape[0], dtype=jnp.int32), schedule)
    return jax.jit(lambda zs: jax.lax.scan(body, zs, steps)[0].params), starts


def plain_lax_step(batch_size, lr):
    """A plain batched JAX step of the same network (lax conv, reduce_window)."""

    def apply(params, x):  # x: (batch, 28, 28, 1)
        for layer in params["conv"]:
            x = jax.lax.conv_general_dilated(
                x,
                layer["w"],
                (1, 1),
                "VALID",
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
            x = jax.nn.relu(x + layer["b"][None, None, None, :])
            x = jax.lax.reduce_window(
                x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
            )
        return x.reshape(batch_size, -1) @ params["out"]["w"] + params["out"]["b"]

    def loss(params, x, y):
        logits = apply(params, x)
        picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

    def step(params, x, y):
        grads = jax.grad(loss)(params, x, y)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads)

    return step


def torch_step_ms(batch_size, threads, repeats, steps=10):
    """Median ms per SGD step of the same network in PyTorch; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 20, 5),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(20, 20, 5),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(320, 10),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x = torch.rand(batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (batch_size,))

    def one():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(3):
        one()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            one()
        times.append((time.perf_counter() - start) / steps)
    return {"version": torch.__version__, "threads": threads, "step_s": times}


def parse_args(argv=None):
    p = harness.parser(__doc__, out="bench-out/cnn.json", repeats=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--steps", type=int, default=5, help="steps of the estimators' run")
    p.add_argument("--targets", type=int, default=16)
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--runs", default="1,4,17", help="vmapped runs to time")
    return harness.parse_args(p, argv, quick=QUICK)


def main(argv=None) -> int:
    args = parse_args(argv)
    b, lr = args.batch_size, 0.05
    n_train, n_est = b * args.train_steps, b * args.steps
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.rand(max(n_train, n_est), 28, 28, 1), jnp.float32)
    y = jnp.asarray(rng.randint(0, 10, x.shape[0]), jnp.int32)
    params, apply = accjax.models.cnn(jax.random.PRNGKey(0))
    loss = accjax.models.multiclass_loss(apply)
    optimizer = optax.sgd(lr)
    query = accjax.mean_loss(loss, (x[:64], y[:64]))

    def make_run(n):
        problem = accjax.Problem(loss, params, (x[:n], y[:n]))
        return accjax.train(problem, optimizer, batch_size=b, epochs=1)

    train_run, est_run = make_run(n_train), make_run(n_est)
    targets = jnp.arange(args.targets)
    plain = jax.jit(plain_lax_step(b, lr))
    batches = x[:n_train].reshape(args.train_steps, b, 28, 28, 1)
    labels = y[:n_train].reshape(args.train_steps, b)

    def plain_loop():
        q = params
        for t in range(args.train_steps):
            q = plain(q, batches[t], labels[t])
        return q

    @jax.jit
    def plain_scan(q):
        body = lambda q, xs: (plain_lax_step(b, lr)(q, *xs), None)
        return jax.lax.scan(body, q, (batches, labels))[0]

    calls = {
        "train": lambda: make_run(n_train).params,
        "train_estimator_run": lambda: make_run(n_est).params,
        "plain_lax_loop": plain_loop,
        "plain_lax_scan": lambda: plain_scan(params),
        "loo_retrain": lambda: (
            accjax.loo_retrain(est_run, query, targets=targets).values
        ),
        "acc_sgd_ie": lambda: accjax.acc_sgd_ie(est_run, query, targets=targets).values,
        "sgd_ie": lambda: accjax.sgd_ie(est_run, query).values,
    }
    num_runs = {}  # case name: its number of vmapped runs
    for r in (int(r) for r in args.runs.split(",") if r):
        for name, rows in ((f"vmap_runs_{r}", jnp.full(r, -1)),
                           (f"vmap_runs_{r}_weighted", jnp.arange(r))):  # fmt: skip
            fn, starts = vmapped_runs(train_run, rows)
            calls[name] = lambda fn=fn, starts=starts: fn(starts)
            num_runs[name] = r
    out = harness.warm_up(calls)
    # Correct before fast: the estimators against exact retraining.
    check = harness.check_vs_exact(
        out["loo_retrain"],
        {"acc_sgd_ie": out["acc_sgd_ie"], "sgd_ie": out["sgd_ie"][: args.targets]},
    )
    del train_run
    wall, cpu = harness.rounds(calls, args.repeats, progress=True)
    cases = {name: harness.summary(wall[name], cpu[name]) for name in calls}
    med = {name: c["median_s"] for name, c in cases.items()}
    per_step = {
        "train": med["train"] / args.train_steps,
        "plain_lax_loop": med["plain_lax_loop"] / args.train_steps,
        "plain_lax_scan": med["plain_lax_scan"] / args.train_steps,
    }
    per_target_step = {
        name: med[name] / (args.targets * args.steps)
        for name in ("loo_retrain", "acc_sgd_ie")
    }
    per_run_step = {
        name: med[name] / (r * args.train_steps) for name, r in num_runs.items()
    }
    torch = torch_step_ms(b, args.torch_threads, args.repeats)
    ratios = {
        "sgd_ie_over_train": med["sgd_ie"] / med["train_estimator_run"],
        "loo_per_target_step_over_train_step": per_target_step["loo_retrain"]
        / per_step["train"],
        "acc_over_loo_per_target_step": per_target_step["acc_sgd_ie"]
        / per_target_step["loo_retrain"],
        "plain_lax_scan_over_loop": per_step["plain_lax_scan"]
        / per_step["plain_lax_loop"],
    }
    if torch is not None:
        torch["median_step_s"] = float(np.median(torch["step_s"]))
        ratios["train_over_torch"] = per_step["train"] / torch["median_step_s"]
    report = {
        "bench": "cnn",
        "machine": harness.machine_info(),
        "setting": {**vars(args), "params": 13750, "dtype": "float32"},
        "cases": cases,
        "per_step_s": per_step,
        "per_target_step_s": per_target_step,
        "per_run_step_s": per_run_step,
        "torch": torch,
        "ratios": ratios,
        "check_vs_exact": check,
    }
    harness.write_json(args.out, report)
    for name, s in {**per_step, **per_target_step}.items():
        unit = "target-step" if name in per_target_step else "step"
        print(f"{name:18s} {1e3 * s:8.2f} ms per {unit}")
    for name, s in per_run_step.items():
        ratio = s / per_step["train"]
        print(f"{name:24s} {1e3 * s:8.2f} ms per run-step, {ratio:5.2f}x train step")
    if torch is not None:
        ms = 1e3 * torch["median_step_s"]
        print(f"{'torch':18s} {ms:8.2f} ms per step ({torch['version']})")
    for name, r in ratios.items():
        print(f"{name:40s} {r:6.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
