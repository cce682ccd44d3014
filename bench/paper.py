"""The reference accuracy study (paper-notes 4.1) through `accjax experiment`.

    python bench/paper.py --out bench-out/paper                    # the full grid
    python bench/paper.py --datasets adult --epochs 2 38 --seeds 2 # a slice
    python bench/paper.py --quick --out /tmp/paper  # adult, logreg, 40 rows, 2 epochs

Defaults: Adult, 20 Newsgroups (ibm vs mac) and MNIST 1-vs-7, 400/400/400 rows; the
MLP 8-8 (lr 0.1/sqrt(t+1)) and logistic regression (CV-chosen L2, lr 0.1); batch 100;
epochs 2, 6, ..., 38; clean, feature noise 0.05, 10 % flipped labels; 5 seeds;
float64. Any `accjax experiment` flag given here overrides its default (also
--quick's). The data sets are read from --data-dir, else $ACCJAX_DATA.
"""

import subprocess
import sys

REFERENCE = {
    "--datasets": ["adult", "news20", "mnist"],
    "--models": ["mlp", "logreg"],
    "--conditions": ["clean", "feature", "label"],
    "--epochs": [str(e) for e in range(2, 39, 4)],
    "--seeds": ["5"],
    "--n-train": ["400"],
    "--n-val": ["400"],
    "--n-test": ["400"],
    "--batch-size": ["100"],
    "--out": ["bench-out/paper"],
}


# --quick: one small setting of the same command (a smoke test, about 20 s).
QUICK = {
    "--datasets": ["adult"],
    "--models": ["logreg"],
    "--conditions": ["clean"],
    "--epochs": ["2"],
    "--seeds": ["1"],
    "--n-train": ["40"],
    "--n-val": ["40"],
    "--n-test": ["40"],
    "--batch-size": ["20"],
}


def parse_args(argv) -> list:
    """The `accjax experiment` arguments: the defaults not given, then `argv`."""
    defaults = {**REFERENCE, **(QUICK if "--quick" in argv else {})}
    argv = [a for a in argv if a != "--quick"]
    given = {a for a in argv if a.startswith("--")}
    args = [
        x for flag, vals in defaults.items() if flag not in given for x in (flag, *vals)
    ]
    return [*args, *argv]


def main(argv):
    cmd = [sys.executable, "-m", "accjax", "experiment", *parse_args(argv)]
    print(" ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
