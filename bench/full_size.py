"""All of MNIST through Hara's CNN: training and SGD-IE at full size, time, memory.

    python bench/full_size.py --data-dir ../shared/data    # 50,000 images, 1 epoch
    python bench/full_size.py --data-dir ../shared/data --storage all,states,28
    python bench/full_size.py --data-dir ../shared/data --plan-epochs 1,5,20
    python bench/full_size.py --data-dir ../shared/data --quick    # a smoke test

The official MNIST training set less `--n-val` validation images (split="official",
10 classes), `accjax.models.cnn` (13,750 parameters), Hara's recipe (SGD lr 0.05,
batch 64), float32. Each part runs in a fresh process: training, then `sgd_ie` for
every training example once per `--storage` mode (a mode that fails, e.g. out of
memory, is recorded with its error and the next one runs). Every call runs twice and the
second is timed (compilation excluded); its peak is what the execution adds to the
resident set (`exec_peak_bytes`), beside the process's peak (`maxrss_bytes`).
`--plan-epochs` adds XLA's memory plan of the reverse pass (compiled, not run) for
runs of that many epochs, per storage ("all", "states", 28, nested 2 and 3 levels),
beside the estimate `sgd_ie(storage="auto")` chooses from.
Writes JSON to --out after every part (bench-out/full_size.json).
"""

from __future__ import annotations

import datetime
import sys
import time

import harness


def parse_args(argv=None):
    parser = harness.parser(__doc__, out="bench-out/full_size.json")
    parser.add_argument("--n-train", type=int, default=None, help="default: all")
    parser.add_argument("--n-val", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--storage", default="auto,states", help="comma-separated")
    parser.add_argument(
        "--plan-epochs", default="", help="comma-separated epochs for XLA's plan"
    )
    parser.add_argument(
        "--data-dir", default=None, help="the folder with mnist/ (else $ACCJAX_DATA)"
    )
    return harness.parse_args(
        parser,
        argv,
        quick=dict(
            n_train=256, n_val=64, storage="all,states,2,nested", plan_epochs="1,2"
        ),
    )


def _setup(args):
    import jax
    import jax.numpy as jnp
    import optax

    import accjax

    s = accjax.datasets.load(
        "mnist10",
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=0,
        split="official",
        images=True,
        data_dir=args.data_dir,
    )
    params, apply = accjax.models.cnn(jax.random.key(0))
    loss = accjax.models.multiclass_loss(apply)
    data = (jnp.asarray(s.train[0]), jnp.asarray(s.train[1]))
    problem = accjax.Problem(loss, params, data)
    query = accjax.mean_loss(loss, (jnp.asarray(s.val[0]), jnp.asarray(s.val[1])))
    return problem, optax.sgd(0.05), query


def _timed(call):
    call()  # compiles
    start = time.perf_counter()
    out, mem = harness.exec_peak(call)
    return out, time.perf_counter() - start, mem


def train_part(args):
    import jax

    import accjax

    problem, optimizer, _ = _setup(args)
    train = lambda: jax.block_until_ready(
        accjax.train(problem, optimizer, batch_size=64, epochs=args.epochs)
    )
    run, seconds, mem = _timed(train)
    return {
        "seconds": seconds,
        "num_steps": run.num_steps,
        "n_train": problem.num_examples,
        **mem,
        "maxrss_bytes": harness.maxrss_bytes(),
    }


def sgd_ie_part(args, storage):
    import jax

    import accjax

    problem, optimizer, query = _setup(args)
    run = accjax.train(problem, optimizer, batch_size=64, epochs=args.epochs)
    storage = int(storage) if storage.isdigit() else storage
    call = lambda: jax.block_until_ready(
        accjax.sgd_ie(run, query, storage=storage).values
    )
    from accjax._src.estimators import sgd_ie

    chosen = sgd_ie.resolve_storage(run, storage)
    _, seconds, mem = _timed(call)
    return {
        "seconds": seconds,
        **mem,
        "maxrss_bytes": harness.maxrss_bytes(),
        "storage": str(chosen),
    }


PLANNED = ("all", "states", 28, ("nested", 2), ("nested", 3))


def plan_part(args, epochs):
    """XLA's memory plan (bytes) of the reverse pass per storage, with the estimate."""
    import jax

    import accjax
    from accjax._src.estimators import sgd_ie

    problem, optimizer, query = _setup(args)
    n = problem.num_examples
    schedule = jax.numpy.asarray(accjax.make_schedule(n, 64, epochs))
    num_steps = schedule.shape[0]
    state, residuals = sgd_ie.step_bytes(problem, optimizer, schedule)
    out = {
        "num_steps": num_steps,
        "state_bytes": state,
        "step_residual_bytes": residuals,
    }
    for storage in PLANNED:
        if isinstance(storage, int) and storage > num_steps:
            continue
        compiled = sgd_ie._sgd_ie_all.lower(
            problem, optimizer, schedule, query=query, with_progress=False,
            storage=storage,
        ).compile()  # fmt: skip
        name = storage if isinstance(storage, str) else str(storage)
        out[name] = {
            **harness.xla_memory(compiled),
            "estimate_bytes": sgd_ie.reverse_storage_bytes(
                storage, num_steps, state, residuals
            ),
        }
    budget = sgd_ie.available_memory() // 2
    out["auto"] = str(
        sgd_ie.choose_storage("auto", num_steps, state, residuals, budget)
    )
    out["auto_budget_bytes"] = int(budget)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": harness.machine_info(),
        "args": vars(args),
        "sgd_ie": {},
        "plan": {},
    }
    print("training ...", file=sys.stderr, flush=True)
    report["train"] = harness.in_child(train_part, args)
    harness.write_json(args.out, report)
    print(f"  {report['train']}", file=sys.stderr, flush=True)
    for storage in filter(None, args.storage.split(",")):
        print(f"sgd_ie storage={storage} ...", file=sys.stderr, flush=True)
        try:
            part = harness.in_child(sgd_ie_part, args, storage)
            part["x_train"] = part["seconds"] / report["train"]["seconds"]
        except Exception as err:  # noqa: BLE001 - recorded (e.g. out of memory)
            part = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        report["sgd_ie"][storage] = part
        harness.write_json(args.out, report)
        print(f"  {part}", file=sys.stderr, flush=True)
    for epochs in filter(None, args.plan_epochs.split(",")):
        print(f"plan, {epochs} epochs ...", file=sys.stderr, flush=True)
        report["plan"][epochs] = harness.in_child(plan_part, args, int(epochs))
        harness.write_json(args.out, report)
        print(f"  {report['plan'][epochs]}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
