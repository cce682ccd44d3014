"""A markdown table of every estimator in an `accjax experiment` grid.json.

    python bench/table.py bench-out/all-adult/grid.json

One row per (setting, estimator): RMSE, Kendall tau, Jaccard@10 and LDS against
exact retraining (mean ± std over seeds) and the median wall time over seeds
(the first seed's includes compilation).
"""

from __future__ import annotations

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


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(table(json.load(f)))
