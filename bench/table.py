"""Markdown tables from an `accjax experiment` grid.json.

    python bench/table.py bench-out/all-adult/grid.json
    python bench/table.py --relative bench-out/paper-adult-full/grid.json
    python bench/table.py --relative --max-l2 20 bench-out/paper-news20-full/grid.json

Default: one row per (setting, estimator): RMSE, Kendall tau, Jaccard@10 and LDS
against exact retraining (mean ± std over seeds) and the median wall time over
seeds (compilation included where a call compiled). `--relative`: per (data set,
model, condition), ACC-SGD-IE's relative change of the seed-mean RMSE, Kendall
and Jaccard@10 against SGD-IE's, averaged over the epochs (the paper's summary).
`--max-l2 X`: leave out the runs whose L2 coefficient exceeds X (with lr 0.1, an
L2 above 20 makes plain SGD diverge: the L2 term alone scales the parameters by
1 - 0.1 l2 < -1 per step) and summarize the rest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def table(grid: dict) -> str:
    names = grid["setting"]["estimators"]
    lines = [
        "| setting | estimator | RMSE | Kendall | Jaccard@10 | LDS | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, cell in grid["summary"].items():
        rows = [
            r
            for r in grid["rows"]
            if "/".join(str(r[k]) for k in ("dataset", "model", "condition", "epochs"))
            == key
        ]
        exact = statistics.median(r["seconds"]["exact"] for r in rows)
        lines.append(f"| {key} | exact | 0 | 1 | 1 | - | {exact:.2f} |")
        for name in names:
            m = cell[name]
            sec = statistics.median(r["seconds"][name] for r in rows)
            lines.append(
                f"| {key} | {name} | {m['rmse']['mean']:.2e} ± "
                f"{m['rmse']['std']:.0e} | {m['kendall']['mean']:.3f} ± "
                f"{m['kendall']['std']:.3f} | {m['jaccard@10']['mean']:.2f} | "
                f"{m['lds']['mean']:.3f} ± {m['lds']['std']:.3f} | {sec:.2f} |"
            )
    return "\n".join(lines)


def relative(grid: dict, new="acc_sgd_ie", old="sgd_ie") -> str:
    groups: dict = {}
    for key, cell in grid["summary"].items():
        data, model, condition, _ = key.split("/")
        groups.setdefault((data, model, condition), []).append(cell)
    lines = [
        "| data | model | condition | lengths | RMSE | Kendall | Jaccard@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for (data, model, condition), cells in sorted(groups.items()):
        change = {
            m: 100
            * statistics.mean(c[new][m]["mean"] / c[old][m]["mean"] - 1 for c in cells)
            for m in ("rmse", "kendall", "jaccard@10")
        }
        lines.append(
            f"| {data} | {model} | {condition} | {len(cells)} | "
            f"{change['rmse']:+.1f} % | {change['kendall']:+.1f} % | "
            f"{change['jaccard@10']:+.1f} % |"
        )
    return "\n".join(lines)


def drop_large_l2(grid: dict, max_l2: float) -> dict:
    from accjax._src.experiment import summarize

    rows = [r for r in grid["rows"] if r["l2"] <= max_l2]
    left = len(grid["rows"]) - len(rows)
    print(f"left out {left} of {len(grid['rows'])} runs with l2 > {max_l2}")
    names = grid["setting"]["estimators"]
    return {**grid, "rows": rows, "summary": summarize(rows, names)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid", help="an `accjax experiment` grid.json")
    p.add_argument("--relative", action="store_true")
    p.add_argument("--max-l2", type=float, default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with open(args.grid) as f:
        grid = json.load(f)
    if args.max_l2 is not None:
        grid = drop_large_l2(grid, args.max_l2)
    print(relative(grid) if args.relative else table(grid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
