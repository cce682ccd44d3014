"""The full-size pipeline: all of MNIST, CIFAR-10 or 20 Newsgroups through every
estimator.

    python bench/full_pipeline.py --data-dir ../shared/data                   # MNIST
    python bench/full_pipeline.py --data-dir ../shared/data --label-noise 0.1
    python bench/full_pipeline.py --data-dir ../shared/data --workload cifar10
    python bench/full_pipeline.py --data-dir ../shared/data --workload news20 \
        --batch-size 32 --epochs 3 --label-noise 0.1 --acc-top 32
    python bench/full_pipeline.py --data-dir ../shared/data --quick           # smoke

MNIST: the official training set less `--n-val` validation images, Hara's CNN
(`accjax.models.cnn`), SGD lr 0.05, batch 64 (`--batch-size`), float32; test error
on the official 10,000 test images (`--test-holdout N`: on N official training images
drawn beside the validation set instead). CIFAR-10: the subset in the data folder,
`accjax.models.CifarCNN` with dropout and random crop + flip, keyed
(`Problem(key=...)`). news20: `datasets.load_text` (all 20 classes, the official
training posts less `--n-val`, `--seq-len` word tokens, an 8,000-word vocabulary),
`accjax.models.TextTransformer` (`--width`, 4 heads, 2 blocks, dropout 0.1, mean
pooling; 1.44M parameters at width 128), `optax.adamw(1e-3)` with optax's defaults,
keyed; test error on the official test posts; dvemb (plain SGD only) is skipped.

Parts, in order, each written as soon as it finishes (JSON `results.json` and arrays
`<part>.npy` in --out/<workload>[-noise<p>][-b<batch>][-e<epochs>][-last]/): train;
sgd_ie, tracin_cp (5 evenly spaced checkpoints, or one per epoch from 5 epochs) and
dvemb (projected) for every example, and TracInCP's self-influence
(`tracin(run, "self")` at the same checkpoints: the ranking for finding flipped
labels); ACC-SGD-IE and exact retraining on the `--acc-top` most harmful (by the fast
ACC where a rerun finds it, else by SGD-IE),
`acc_sgd_ie_fast` for every example (its correction's size against SGD-IE) - the
ACC parts only where some example occurs twice; with label noise, the detection of the
flipped labels at 1/5/10 % inspected (the influence rankings most harmful first,
the self-influence largest first); cleansing (remove k of each ranking, the
self-influence's largest first, and of `--random-draws` random ones, retrain with
the same schedule and keys, test error); LDS over `--lds-subsets` subsets each
removing 1 % (of every ranking that covers all examples, `acc_fast` included);
lds_noise, the LDS's noise floor: the run retrained `--noise-draws` times from its
initial parameters moved by float32 rounding (each leaf times 1 + eps z, eps =
float32's machine epsilon, z standard normal), the query's change each time, its
standard deviation beside that of the LDS subsets' actual changes.
A rerun skips the parts already written (--fresh redoes them); Ctrl-C or a crash
loses only the part in flight. Each part records its time (compilation included: one
call each) and its peak resident memory. The figure full_pipeline.png shows the
cleansing and the detection.

`--last-epoch` is Hara et al.'s cleansing protocol: train `--epochs`, then every
estimator and every retraining covers the final epoch only, as a run of its own
started from the parameters at its start ("sgd_last", "Retrain Last"); x_train is
then against one epoch of training. Plain SGD at a constant rate makes the restart
exact; a keyed workload's (CIFAR-10's) final epoch, its step count restarted at 0,
draws its dropout and augmentation from a key of its own, `fold_in(key, s)` for the
first step s of the epoch (an exact restart of the keys would need a step offset,
which `Problem` does not have).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path

import harness
import numpy as np

PARTS = ("train", "sgd_ie", "tracin_cp", "tracin_self", "dvemb", "acc_top")
PARTS += ("acc_fast",)
PARTS += ("detection", "cleanse", "lds", "lds_noise", "attribution")


def parse_args(argv=None):
    parser = harness.parser(__doc__, out="bench-out/full_pipeline", out_help="folder")
    parser.add_argument(
        "--workload", choices=("mnist", "mnist-hara", "cifar10", "news20"),
        default="mnist",
    )  # fmt: skip
    parser.add_argument(
        "--seeds",
        default="0",
        help="training seeds, comma-separated: each its own run and folder (-s<seed> "
        "past 0), then the cleansing over all seeds in <label>-seeds.json/.png",
    )
    parser.add_argument("--seq-len", type=int, default=128, help="news20 tokens")
    parser.add_argument("--width", type=int, default=128, help="news20 model width")
    parser.add_argument(
        "--memory-budget",
        type=float,
        default=4.0,
        help="GB for acc_sgd_ie_fast's carried state",
    )
    parser.add_argument(
        "--attribution-queries",
        type=int,
        default=100,
        help="test examples of the attribution matrix (TracInCP, every example)",
    )
    parser.add_argument("--n-train", type=int, default=None, help="default: all")
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=None, help="default: all")
    parser.add_argument(
        "--test-holdout",
        type=int,
        default=0,
        help="mnist/cifar10: the test set is this many official training images "
        "drawn beside the validation set, instead of the official test set",
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--label-noise", type=float, default=0.0)
    parser.add_argument(
        "--last-epoch",
        action="store_true",
        help="influence and retraining over the final epoch only (Hara's protocol)",
    )
    parser.add_argument("--acc-top", type=int, default=16)
    parser.add_argument("--remove", default="10,30,100,300,1000")
    parser.add_argument("--random-draws", type=int, default=2)
    parser.add_argument("--lds-subsets", type=int, default=50)
    parser.add_argument("--noise-draws", type=int, default=5)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated")
    parser.add_argument("--fresh", action="store_true", help="redo finished parts")
    parser.add_argument(
        "--data-dir", default=None, help="the folder with mnist/, cifar10/"
    )
    quick = dict(n_train=640, n_val=64, n_test=200, acc_top=4)
    quick.update(remove="10,30")
    quick.update(random_draws=1, lds_subsets=4, noise_draws=2, attribution_queries=5)
    quick.update(out="bench-out/full_pipeline-quick")
    args = harness.parse_args(parser, argv, quick=quick)
    if args.test_holdout and args.workload == "news20":
        parser.error("--test-holdout takes images from mnist or cifar10's training set")
    if args.last_epoch and args.epochs < 2:
        parser.error(f"--last-epoch needs --epochs >= 2; got {args.epochs}")
    return args


class Store:
    """results.json plus one .npy per array, each written whole (atomic rename)."""

    def __init__(self, folder: Path, fresh: bool):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "results.json"
        self.results = {}
        if self.path.exists() and not fresh:
            self.results = json.loads(self.path.read_text())

    def done(self, part: str) -> bool:
        return part in self.results.get("parts", {})

    def array(self, name: str) -> np.ndarray:
        return np.load(self.folder / f"{name}.npy")

    def save(self, part: str, record: dict, arrays: dict | None = None) -> None:
        from accjax._src.files import atomic_write

        def npy(value):
            def write(tmp):
                with open(tmp, "wb") as f:
                    np.save(f, np.asarray(value))

            return write

        for name, value in (arrays or {}).items():
            atomic_write(self.folder / f"{name}.npy", npy(value))
        self.results.setdefault("parts", {})[part] = record
        harness.write_json(self.path, self.results)


@dataclasses.dataclass(frozen=True)
class HaraMnist:
    """Hara et al.'s MNIST transforms around the CNN's `apply`, on [0, 1] pixels:
    `Normalize(0.5, 0.5)` (x -> 2x - 1) always (`__call__`, the evaluation mode)
    and, in training, `RandomCrop(28, padding=2)` first, keyed per step and
    example. Frozen, so runs of every seed share the compiled estimators."""

    cnn_apply: object

    def __call__(self, params, x):
        return self.cnn_apply(params, 2 * x - 1)

    def train_loss(self, params, example, key):
        import accjax

        x, y = example
        x = accjax.models.random_crop(x, key, pad=2)
        return accjax.models.softmax_cross_entropy(self(params, x), y)


def label_of(args, seed: int) -> str:
    """The results folder's name: the workload and the options that change it."""
    label = args.workload + (f"-noise{args.label_noise:g}" if args.label_noise else "")
    label += f"-b{args.batch_size}" if args.batch_size != 64 else ""
    label += f"-n{args.n_train}" if args.n_train is not None else ""
    label += f"-h{args.test_holdout}" if args.test_holdout else ""
    label += (f"-e{args.epochs}" if args.epochs != 1 else "") + (
        "-last" if args.last_epoch else ""
    )
    return label + (f"-s{seed}" if seed else "")


def setup(args):
    """(splits, problem, optimizer, query, tests, learning rate, eval_loss):
    eval_loss(params, (x, y)) is one example's loss in evaluation mode."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import accjax

    if args.workload == "news20":
        return setup_text(args)
    name = "cifar10" if args.workload == "cifar10" else "mnist10"
    holdout = args.test_holdout
    splits = accjax.datasets.load(
        name,
        n_train=args.n_train,
        n_val=args.n_val + holdout,
        n_test=0 if holdout else args.n_test,
        seed=args.seed,
        split="official",
        images=True,
        label_noise=args.label_noise,
        data_dir=args.data_dir,
    )
    if holdout:  # the validation draw's last `holdout` images are the test set
        x, y = splits.val
        val, test = (
            (x[: args.n_val], y[: args.n_val]),
            (x[args.n_val :], y[args.n_val :]),
        )
        splits = splits._replace(val=val, test=test)
    parts = [splits.train, splits.val, splits.test]
    if args.workload == "mnist-hara":  # back to the [0, 1] pixels
        shape = splits.train[0].shape[1:]
        mean, scale = (splits.info[k].reshape(shape) for k in ("mean", "scale"))
        parts = [((x * scale + mean).astype(np.float32), y) for x, y in parts]
    data, val, test = [(jnp.asarray(x), jnp.asarray(y)) for x, y in parts]
    init_key = jax.random.key(args.seed)
    if args.workload == "mnist":
        params, apply = accjax.models.cnn(init_key)
        train_loss = accjax.models.multiclass_loss(apply)
        problem, lr = accjax.Problem(train_loss, params, data), 0.05
    elif args.workload == "mnist-hara":
        params, cnn_apply = accjax.models.cnn(init_key)
        apply, lr = HaraMnist(cnn_apply), 0.05
        problem = accjax.Problem(apply.train_loss, params, data, key=init_key)
    else:
        rngs = nnx.Rngs(params=args.seed, dropout=args.seed + 1)
        net = accjax.models.CifarCNN(rngs=rngs)
        model = accjax.models.from_nnx(net, augment=accjax.models.random_crop_flip)
        apply, lr = model.apply, 0.05
        problem = model.problem(data, key=init_key)
    eval_loss = accjax.models.multiclass_loss(apply)
    query = accjax.mean_loss(eval_loss, val)
    tests = {
        "error": accjax.mean_loss(accjax.models.multiclass_error(apply), test),
        "loss": accjax.mean_loss(eval_loss, test),
    }
    return splits, problem, optax.sgd(lr), query, tests, lr, eval_loss


def setup_text(args):
    """The news20 workload, as `setup` returns it (no learning rate)."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import accjax

    splits = accjax.datasets.load_text(
        n_val=args.n_val,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
        max_len=args.seq_len,
        label_noise=args.label_noise,
        data_dir=args.data_dir,
    )
    net = accjax.models.TextTransformer(
        vocab_size=len(splits.info["vocabulary"]), max_len=args.seq_len,
        num_classes=20, dim=args.width, heads=4, num_layers=2, dropout=0.1,
        rngs=nnx.Rngs(params=args.seed, dropout=args.seed + 1),
    )  # fmt: skip
    model = accjax.models.from_nnx(net)
    as_jax = lambda part: (jnp.asarray(part[0]), jnp.asarray(part[1]))
    problem = model.problem(as_jax(splits.train), key=jax.random.key(args.seed))
    eval_loss = accjax.models.multiclass_loss(model.apply)
    test = as_jax(splits.test)
    tests = {
        "error": accjax.mean_loss(accjax.models.multiclass_error(model.apply), test),
        "loss": accjax.mean_loss(eval_loss, test),
    }
    query = accjax.mean_loss(eval_loss, as_jax(splits.val))
    return splits, problem, optax.adamw(1e-3), query, tests, None, eval_loss


def main(argv=None) -> int:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        run_seed(argparse.Namespace(**{**vars(args), "seed": seed}))
    if len(seeds) > 1:
        summarize_seeds(args, seeds)
    return 0


def run_seed(args) -> None:  # noqa: C901, PLR0915 - one part after another
    """Every wanted part for the training seed `args.seed`."""
    import jax
    import jax.numpy as jnp

    import accjax
    from accjax._src.estimators import named
    from accjax._src.estimators import sgd_ie as sgd_ie_lib

    label = label_of(args, args.seed)
    store = Store(Path(args.out) / label, args.fresh)
    store.results.update(
        date=datetime.date.today().isoformat(),
        machine=harness.machine_info(),
        args=vars(args),
    )
    wanted = args.parts.split(",")
    say = lambda msg: print(f"[{label}] {msg}", file=sys.stderr, flush=True)
    splits, problem, optimizer, query, tests, lr, eval_loss = setup(args)
    n = problem.num_examples
    say(f"{n} training examples, {splits.val[1].shape[0]} validation, "
        f"{splits.test[1].shape[0]} test")  # fmt: skip

    def train():
        if not args.last_epoch:
            return jax.block_until_ready(
                accjax.train(
                    problem,
                    optimizer,
                    batch_size=args.batch_size,
                    epochs=args.epochs,
                    progress=True,
                )
            )
        # Hara's "sgd_last" and "Retrain Last": the final epoch as a run of its
        # own, from the parameters at its start (plain SGD at a constant rate, so
        # restarting the step count changes only the step keys; see the docstring).
        schedule = accjax.make_schedule(n, args.batch_size, args.epochs)
        last_rows = schedule[-(len(schedule) // args.epochs) :]
        start = accjax.train(
            problem, optimizer, schedule=schedule[: -len(last_rows)], progress=True
        )
        key = problem.key
        key = None if key is None else jax.random.fold_in(key, start.num_steps)
        restart = dataclasses.replace(problem, params=start.params, key=key)
        return jax.block_until_ready(
            accjax.train(restart, optimizer, schedule=last_rows, progress=True)
        )

    run, cost = harness.measured(train)
    evaluate = lambda params: {k: float(f(params)) for k, f in tests.items()}
    if "train" in wanted and (args.fresh or not store.done("train")):
        store.save(
            "train",
            {
                **cost,
                "num_steps": run.num_steps,
                "n_train": n,
                "n_test": int(splits.test[1].shape[0]),
                **evaluate(run.params),
            },
        )
    say(f"train: {store.results['parts'].get('train')}")
    train_seconds = store.results["parts"].get("train", cost)["seconds"]
    if args.last_epoch:  # the estimators' cost against one epoch of training
        train_seconds /= args.epochs

    def influence_part(part, call):
        if part not in wanted:
            return
        if store.done(part):
            say(f"{part}: done before, kept")
            return
        influence, cost = harness.measured(lambda: jax.block_until_ready(call()))
        record = {**cost, "x_train": cost["seconds"] / train_seconds}
        store.save(part, record, {part: np.asarray(influence.values)})
        say(f"{part}: {record}")

    # Every example occurs once per epoch. In a one-epoch run its perturbation is
    # zero until its only occurrence, so ACC equals SGD-IE exactly (and the
    # last-layer ACC the last-layer SGD-IE): then only exact retraining is run.
    repeats = np.bincount(np.asarray(run.schedule).ravel() + 1)[1:].max()
    store.results["sgd_ie_storage"] = str(sgd_ie_lib.resolve_storage(run, "auto"))
    influence_part("sgd_ie", lambda: accjax.sgd_ie(run, query, progress=True))
    T = run.num_steps
    checkpoints = (
        "epochs" if args.epochs >= 5 else np.linspace(T / 5, T, 5).round().astype(int)
    )
    influence_part(
        "tracin_cp",
        lambda: accjax.tracin(run, query, checkpoints=checkpoints, progress=True),
    )
    influence_part(
        "tracin_self",
        lambda: accjax.tracin(run, "self", checkpoints=checkpoints, progress=True),
    )
    if lr is not None:  # DVEmb models plain SGD
        influence_part(
            "dvemb", lambda: named.estimate("dvemb", run, query, learning_rate=lr,
                                            progress=True),
        )  # fmt: skip

    def over_all(part, sign=1):
        """A stored part's values for every example as an `Influence`."""
        return accjax.Influence(jnp.arange(n), sign * jnp.asarray(store.array(part)))

    if "acc_top" in wanted and not store.done("acc_top") and store.done("sgd_ie"):
        sgd = store.array("sgd_ie")
        # the most harmful by the fast ACC where it ran (a rerun), else by SGD-IE
        by = "acc_fast" if store.done("acc_fast") else "sgd_ie"
        top = np.argsort(store.array(by), kind="stable")[: args.acc_top]
        calls = {
            "acc_sgd_ie": lambda t: accjax.acc_sgd_ie(run, query, targets=t,
                                                      progress=True),
            "exact": lambda t: accjax.loo_retrain(run, query, targets=t,
                                                  progress=True),
        }  # fmt: skip
        if repeats == 1:
            del calls["acc_sgd_ie"]
        record, values = {"targets": top.tolist(), "ranked_by": by}, {}
        for name, call in calls.items():
            out, cost = harness.measured(
                lambda call=call: call(jnp.asarray(top)).values
            )
            values[name] = np.asarray(out, np.float64)
            per_target = cost["seconds"] / top.size / train_seconds
            record[name] = {**cost, "per_target_x_train": per_target}
        exact = values["exact"]
        estimates = {"sgd_ie": sgd[top]}
        if store.done("acc_fast"):
            estimates["acc_fast"] = store.array("acc_fast")[top]
        if "acc_sgd_ie" in values:
            estimates["acc_sgd_ie"] = values["acc_sgd_ie"]
        else:
            record["acc_sgd_ie"] = "equal to sgd_ie: every example occurs once"
        record["rmse"] = {
            k: accjax.metrics.rmse(exact, v) for k, v in estimates.items()
        }
        record["kendall"] = {
            k: accjax.metrics.kendall(exact, v) for k, v in estimates.items()
        }
        arrays = {"exact_top": exact}
        if "acc_sgd_ie" in values:
            arrays["acc_top"] = values["acc_sgd_ie"]
        store.save("acc_top", record, arrays)
        say(f"acc_top: rmse {record['rmse']} kendall {record['kendall']}")

    if repeats > 1 and "acc_fast" in wanted and not store.done("acc_fast"):
        if store.done("sgd_ie"):
            budget = int(args.memory_budget * 2**30)
            fast, cost = harness.measured(
                lambda: (
                    accjax.acc_sgd_ie_fast(
                        run, query, memory_budget=budget, progress=True
                    ).values
                )
            )
            fast, sgd = np.asarray(fast, np.float64), store.array("sgd_ie")
            record = {
                **cost,
                "x_train": cost["seconds"] / train_seconds,
                "x_sgd_ie": cost["seconds"]
                / store.results["parts"]["sgd_ie"]["seconds"],
                "correction_rel": float(
                    np.linalg.norm(fast - sgd) / np.linalg.norm(sgd)
                ),
                "kendall_vs_sgd_ie": accjax.metrics.kendall(sgd, fast),
            }
            store.save("acc_fast", record, {"acc_fast": fast})
            say(f"acc_fast: {record}")

    covering = ("sgd_ie", "acc_fast", "tracin_cp", "dvemb")
    covering = [p for p in covering if store.done(p)]
    influences = {p: over_all(p) for p in covering}
    # The influence rankings run most harmful (most negative) first; the
    # self-influence's runs largest first, so it joins them negated.
    rankings = dict(influences)
    if store.done("tracin_self"):
        rankings["tracin_self"] = over_all("tracin_self", sign=-1)

    flipped = splits.info.get("flipped")
    if "detection" in wanted and flipped is not None and len(flipped):
        at = [max(1, round(n * p / 100)) for p in (1, 5, 10)]
        record = {"at_percent": [1, 5, 10], "at": at}
        for name, inf in rankings.items():
            record[name] = accjax.metrics.detection(inf, flipped, at=at)
        record["random"] = accjax.metrics.detection(None, flipped, at=at,
                                                    num_examples=n)  # fmt: skip
        store.save("detection", record, {"flipped": np.asarray(flipped)})
        recall = {k: v["recall"] for k, v in record.items() if "recall" in v}
        say(f"detection (recall): {recall}")

    remove = [int(k) for k in args.remove.split(",")]
    if "cleanse" in wanted and not store.done("cleanse") and influences:
        result, cost = harness.measured(
            lambda: accjax.cleanse(
                run,
                query,
                test=tests,
                estimator=rankings,
                remove=remove,
                random_draws=args.random_draws,
                flipped=flipped if flipped is not None and len(flipped) else None,
                progress=True,
            )
        )
        record = result.to_dict()
        del record["rankings"]  # the .npy influences hold them
        store.save("cleanse", {**cost, **record})
        say(f"cleanse:\n{result.table()}")

    if "lds" in wanted and not store.done("lds") and influences:
        subsets, cost = harness.measured(
            lambda: accjax.subset_retrain(
                run, query, num_subsets=args.lds_subsets, fraction=0.99,
                progress=True,
            )
        )  # fmt: skip
        record = {**cost, "num_subsets": args.lds_subsets, "fraction_removed": 0.01}
        for name, inf in influences.items():
            record[name] = accjax.metrics.lds(inf, subsets)
        store.save("lds", record, {"lds_removed": subsets.removed,
                                   "lds_values": subsets.values})  # fmt: skip
        say(f"lds: { {k: record[k] for k in influences} }")
    if "lds_noise" in wanted and not store.done("lds_noise"):
        changes, cost = harness.measured(
            lambda: rounding_noise(run, query, args.noise_draws)
        )
        record = {**cost, "changes": changes, "std": float(np.std(changes))}
        if store.done("lds"):
            record["lds_actual_std"] = float(np.std(store.array("lds_values")))
        store.save("lds_noise", record)
        say(f"lds_noise: {record}")
    if "attribution" in wanted and not store.done("attribution"):
        attribution_part(
            store, run, splits, eval_loss, checkpoints, args.attribution_queries
        )
    store.results["finished"] = datetime.datetime.now().isoformat()
    harness.write_json(store.path, store.results)
    plot(store)


def attribution_part(store, run, splits, eval_loss, checkpoints, num_queries):
    """Which training examples support or oppose each prediction: TracInCP of
    every training example on each of the first `num_queries` test examples'
    losses, one vector query (`(n, num_queries)`, saved as attribution.npy)."""
    import jax
    import jax.numpy as jnp

    import accjax

    x, y = (jnp.asarray(a[:num_queries]) for a in splits.test)
    per_query = lambda p: jax.vmap(lambda xi, yi: eval_loss(p, (xi, yi)))(x, y)
    values, cost = harness.measured(
        lambda: (
            jax.block_until_ready(
                accjax.tracin(run, per_query, checkpoints=checkpoints, progress=True)
            ).values
        )
    )
    record = {**cost, "num_queries": int(x.shape[0]), "estimator": "tracin_cp"}
    record["seconds_per_query"] = cost["seconds"] / x.shape[0]
    store.save("attribution", record, {"attribution": np.asarray(values)})


def rounding_noise(run, query, draws: int) -> list[float]:
    """The change of `query` when `run` is retrained (same schedule, optimizer and
    keys) from its initial parameters times 1 + eps z per entry (eps: float32's
    machine epsilon, z ~ N(0, 1), one draw each): how far float32 rounding alone
    moves the result, the floor under any removal's measured effect."""
    import jax
    import jax.numpy as jnp

    import accjax

    p = run.problem
    base = float(query(run.params))
    eps = float(jnp.finfo(jnp.float32).eps)
    leaves, treedef = jax.tree.flatten(p.params)
    changes = []
    for d in range(draws):
        keys = jax.random.split(jax.random.key(d), len(leaves))
        moved = [
            x * (1 + eps * jax.random.normal(k, x.shape, x.dtype))
            for x, k in zip(leaves, keys, strict=True)
        ]
        problem = dataclasses.replace(p, params=jax.tree.unflatten(treedef, moved))
        moved_run = accjax.train(
            problem, run.optimizer, schedule=run.schedule,
            progress=f"noise {d + 1}/{draws}",
        )  # fmt: skip
        changes.append(float(query(moved_run.params)) - base)
    return changes


def summarize_seeds(args, seeds: list[int]) -> dict | None:
    """The cleansing over the seeds, written to <out>/<label>-seeds.json and .png:
    per ranking and k, the change of test error in points (retrained without the
    k, minus retrained with nothing removed; random: the mean of its draws) as
    mean and standard error over the seeds, and the paired difference acc_fast -
    sgd_ie per seed (negative: the fast ACC's removals lowered the error more)."""
    records = {}
    for seed in seeds:
        path = Path(args.out) / label_of(args, seed) / "results.json"
        parts = json.loads(path.read_text())["parts"] if path.exists() else {}
        if "cleanse" in parts:
            records[seed] = parts
    if len(records) < 2:
        print(f"seeds with a cleansing: {list(records)}; no summary", file=sys.stderr)
        return None
    first = next(iter(records.values()))["cleanse"]
    remove = first["remove"]
    # the rankings every seed cleansed with
    cleansed = [set(p["cleanse"]["results"]) for p in records.values()]
    names = [n for n in first["results"] if all(n in c for c in cleansed)]
    change = {
        name: np.array([
            100 * (np.mean(p["cleanse"]["results"][name]["error"], axis=0)
                   - p["cleanse"]["baseline"]["error"])
            for p in records.values()
        ])
        for name in names
    }  # fmt: skip
    sem = lambda a: a.std(0, ddof=1) / np.sqrt(a.shape[0])
    out = {
        "seeds": list(records),
        "remove": remove,
        "baseline_error_percent": [
            100 * p["cleanse"]["baseline"]["error"] for p in records.values()
        ],
        "change_points": {
            n: {"mean": c.mean(0).tolist(), "sem": sem(c).tolist(),
                "per_seed": c.tolist()}
            for n, c in change.items()
        },
        "seconds_mean": {
            part: float(np.mean([p[part]["seconds"] for p in records.values()]))
            for part in next(iter(records.values()))
            if all("seconds" in p.get(part, {}) for p in records.values())
        },
    }  # fmt: skip
    if "acc_fast" in change and "sgd_ie" in change:
        d = change["acc_fast"] - change["sgd_ie"]
        out["acc_fast_minus_sgd_ie"] = {
            "mean": d.mean(0).tolist(),
            "sem": sem(d).tolist(),
            "acc_fast_lower": (d < 0).sum(0).tolist(),
            "equal": (d == 0).sum(0).tolist(),
        }
    label = label_of(args, 0)
    harness.write_json(Path(args.out) / f"{label}-seeds.json", out)
    _plot_seeds(out, Path(args.out) / f"{label}-seeds.png", label)
    for j, k in enumerate(remove):
        row = "  ".join(
            f"{n} {change[n][:, j].mean():+.3f}+-{sem(change[n])[j]:.3f}" for n in names
        )
        print(f"k={k}: {row}", file=sys.stderr)
    return out


def _plot_seeds(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    k = np.asarray(summary["remove"], float)
    names = list(summary["change_points"])
    for i, (name, c) in enumerate(summary["change_points"].items()):
        shift = 1 + 0.04 * (i - (len(names) - 1) / 2)  # side by side on the log axis
        ax.errorbar(k * shift, c["mean"], yerr=c["sem"], marker="o", capsize=3,
                    label=name)  # fmt: skip
    ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="k removed (most harmful first)",
           ylabel="change of test error (points)",
           title=f"{title}, {len(summary['seeds'])} seeds (mean +- s.e.)")  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(store: Store) -> None:
    """full_pipeline.png beside results.json: test error after removing the k most
    harmful per ranking, and (with label noise) the flipped labels found against
    the fraction of the data inspected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = store.results.get("parts", {})
    panels = [p for p in ("cleanse", "detection") if p in parts]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8))
    axes = np.atleast_1d(axes)
    for ax, panel in zip(axes, panels, strict=True):
        if panel == "cleanse":
            c = parts["cleanse"]
            for name, metrics in c["results"].items():
                err = 100 * np.asarray(metrics["error"])
                ax.errorbar(c["remove"], err.mean(0), yerr=err.std(0) if len(err) > 1
                            else None, marker="o", label=name, capsize=3)  # fmt: skip
            ax.axhline(100 * c["baseline"]["error"], color="k", lw=0.8, ls="--",
                       label="nothing removed")  # fmt: skip
            ax.set(xscale="log", xlabel="k removed", ylabel="test error (%)")
        else:
            flipped = store.array("flipped")
            for name in ("sgd_ie", "tracin_cp", "dvemb", "tracin_self"):
                if name not in parts:
                    continue
                sign = -1 if name == "tracin_self" else 1  # largest first
                order = np.argsort(sign * store.array(name), kind="stable")
                found = np.cumsum(np.isin(order, flipped)) / flipped.size
                ax.plot(np.arange(1, order.size + 1) / order.size, found, label=name)
            ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="random")
            ax.axvline(0.1, color="grey", lw=0.8)
            ax.set(xlabel="fraction inspected (most harmful / self-influential first)",
                   ylabel="flipped labels found", xlim=(0, 0.3))  # fmt: skip
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(store.folder.name)
    fig.tight_layout()
    fig.savefig(store.folder / "full_pipeline.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
