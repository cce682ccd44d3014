"""What skipping the steps before a chunk's first injection saves; JSON out.

    python bench/skip.py --out bench-out/skip.json
    python bench/skip.py --num-examples 2000 --epochs 2 10 --chunks 1 4 16
    python bench/skip.py --quick             # tiny sizes, a smoke test

acc_sgd_ie orders the targets by the step that first holds them and runs each
chunk's per-target work only from its earliest first occurrence on (before it,
the chunk's perturbations are exactly zero and only the factual step runs).
This script times the same sorted chunks with and without the skip (medians of
`--repeats` interleaved rounds after a warm-up, compile excluded)
and prints the saving the schedule predicts: the fraction of target-steps
skipped, sum_c start_c / (num_chunks x T).
"""

from __future__ import annotations

import functools
import platform

import harness
import jax
import numpy as np

from accjax._src.estimators import acc, common

QUICK = dict(
    num_examples=40, num_features=8, batch_size=10, epochs=[1], chunks=[2], repeats=2
)


def parse_args(argv=None):
    p = harness.parser(__doc__, out=None, repeats=5)
    p.add_argument("--num-examples", type=int, default=2000)
    p.add_argument("--num-features", type=int, default=104)
    p.add_argument("--widths", type=int, nargs="*", default=[8, 8])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--epochs", type=int, nargs="+", default=[2, 10])
    p.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 16])
    return harness.parse_args(p, argv, quick=QUICK)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for epochs in args.epochs:
        problem, optimizer, run, query = harness.synthetic_run(
            args.num_examples,
            args.num_features,
            args.batch_size,
            epochs,
            widths=args.widths,
        )
        targets = common.check_targets(None, problem.num_examples)
        query = common.check_run(run, query)
        for num_chunks in args.chunks:
            size = -(-problem.num_examples // num_chunks)
            chunks, _, starts, _ = acc._plan(
                targets, run.schedule, problem.num_examples, size, None
            )
            mask = acc.window_mask(None, run.num_steps)
            call = functools.partial(
                acc.acc_chunks, problem, optimizer, run.schedule, chunks, mask,
                query=query, linear_readout=True, with_progress=False,
            )  # fmt: skip
            calls = {
                "no_skip": lambda c=call: c(chunk_starts=None),
                "skip": lambda c=call, s=starts: c(chunk_starts=s),
            }
            harness.warm_up(calls)  # compile and warm up
            runs, _ = harness.rounds(calls, args.repeats)  # interleaved
            times = {name: harness.summary(r)["median_s"] for name, r in runs.items()}
            predicted = float(np.sum(np.asarray(starts)) / (num_chunks * run.num_steps))
            row = dict(
                epochs=epochs,
                num_steps=run.num_steps,
                num_chunks=num_chunks,
                chunk_size=size,
                seconds_no_skip=times["no_skip"],
                seconds_skip=times["skip"],
                saving_measured=1 - times["skip"] / times["no_skip"],
                saving_predicted=predicted,
            )
            rows.append(row)
            print(
                f"epochs {epochs:3d}  chunks {num_chunks:3d}  no skip "
                f"{times['no_skip']:7.2f} s  skip {times['skip']:7.2f} s  saved "
                f"{row['saving_measured']:6.1%} (predicted {predicted:6.1%})",
                flush=True,
            )
    report = dict(
        machine=platform.processor() or platform.machine(),
        devices=[str(d) for d in jax.devices()],
        settings=vars(args),
        rows=rows,
    )
    if args.out:
        harness.write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
