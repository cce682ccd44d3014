"""The reference accuracy study (paper-notes 4.1) through `accjax experiment`.

    python bench/paper.py --out bench-out/paper                    # the full grid
    python bench/paper.py --datasets adult --epochs 2 38 --seeds 2 # a slice

Defaults: Adult, 20 Newsgroups (ibm vs mac) and MNIST 1-vs-7, 400/400/400 rows; the
MLP 8-8 (lr 0.1/sqrt(t+1)) and logistic regression (CV-chosen L2, lr 0.1); batch 100;
epochs 2, 6, ..., 38; clean, feature noise 0.05, 10 % flipped labels; 5 seeds;
float64. Any `accjax experiment` flag given here overrides its default.
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


def main(argv):
    given = {a for a in argv if a.startswith("--")}
    args = [
        x
        for flag, vals in REFERENCE.items()
        if flag not in given
        for x in (flag, *vals)
    ]
    cmd = [sys.executable, "-m", "accjax", "experiment", *args, *argv]
    print(" ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
