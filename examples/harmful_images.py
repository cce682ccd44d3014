"""From a flax nnx model and an optax optimizer to the 20 most harmful training
images (docs/example.md walks through it).

    python examples/harmful_images.py                       # digits 1 vs 7, bundled
    python examples/harmful_images.py --dataset mnist10 --n-train 5000 --epochs 2

Writes harmful.png (the images with their labels and scores) and harmful.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import accjax


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--dataset", default="digits", choices=["digits", "mnist", "mnist10"]
    )
    p.add_argument("--n-train", type=int, default=None, help="default: all")
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--top", type=int, default=20)
    p.add_argument(
        "--label-noise",
        type=float,
        default=0.1,
        help="fraction of training labels flipped (to show they are found)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".")
    return p.parse_args(argv)


def load(args):
    if args.dataset == "digits":  # bundled with scikit-learn: 361 images of 1 and 7
        n_train = 261 if args.n_train is None else args.n_train
        return accjax.datasets.load(
            "digits",
            n_train=n_train,
            n_val=min(args.n_val, 361 - n_train),
            n_test=0,
            seed=args.seed,
            images=True,
            label_noise=args.label_noise,
        )
    return accjax.datasets.load(
        args.dataset,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=0,
        split="official",
        seed=args.seed,
        images=True,
        label_noise=args.label_noise,
    )


def main(argv=None):
    args = parse_args(argv)
    splits = load(args)
    (x, y), (x_val, y_val) = splits.train, splits.val
    num_classes = splits.info["num_classes"]

    # 1. Your flax nnx model (dropout included) and optax optimizer.
    net = accjax.models.CifarCNN(
        rngs=nnx.Rngs(params=args.seed, dropout=args.seed + 1),
        input_shape=x.shape[1:],
        channels=(8, 16),
        hidden=32,
        num_classes=num_classes,
        dropout=0.25,
    )
    optimizer = optax.sgd(args.lr)

    # 2. accjax's view of it: parameters, per-example loss, eval-mode forward.
    model = accjax.models.from_nnx(net)
    problem = model.problem(
        (jnp.asarray(x), jnp.asarray(y)), key=jax.random.key(args.seed)
    )

    # 3. Train (a lax.scan that records the minibatch schedule).
    start = time.perf_counter()
    run = accjax.train(
        problem,
        optimizer,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
    )
    jax.block_until_ready(run.params)
    print(f"trained {run.num_steps} steps in {time.perf_counter() - start:.1f} s")

    # 4. The question: the validation loss of the trained model.
    def val_loss(params, example):
        image, label = example
        return accjax.models.softmax_cross_entropy(model.apply(params, image), label)

    query = accjax.mean_loss(val_loss, (jnp.asarray(x_val), jnp.asarray(y_val)))

    # 5. SGD-IE for every training image at once; refine the top with ACC-SGD-IE.
    start = time.perf_counter()
    sgd = accjax.sgd_ie(run, query, progress=True)
    top = np.argsort(np.asarray(sgd.values), kind="stable")[: args.top]
    acc = accjax.acc_sgd_ie(run, query, targets=jnp.asarray(top), progress=True)
    print(f"influence in {time.perf_counter() - start:.1f} s")

    flipped = set(splits.info["flipped"].tolist())
    rows = [
        {
            "index": int(k),
            "label": int(y[k]),
            "flipped": int(k) in flipped,
            "sgd_ie": float(s),
            "acc_sgd_ie": float(a),
        }
        for k, s, a in zip(
            top, np.asarray(sgd.values)[top], np.asarray(acc.values), strict=True
        )
    ]
    print(f"{'index':>6} {'label':>5} {'flipped':>7} {'sgd_ie':>11} {'acc_sgd_ie':>11}")
    for r in rows:
        print(
            f"{r['index']:>6} {r['label']:>5} {str(r['flipped']):>7} "
            f"{r['sgd_ie']:>11.3e} {r['acc_sgd_ie']:>11.3e}"
        )
    found = sum(r["flipped"] for r in rows)
    print(
        f"{found} of the {len(rows)} most harmful have flipped labels "
        f"({len(flipped)} of {len(y)} training labels were flipped)"
    )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "harmful.json.tmp"), "w") as f:
        json.dump(
            {
                "args": vars(args),
                "flipped_found": found,
                "num_flipped": len(flipped),
                "most_harmful": rows,
            },
            f,
            indent=1,
        )
    os.replace(
        os.path.join(args.out, "harmful.json.tmp"),
        os.path.join(args.out, "harmful.json"),
    )
    figure(x, rows, splits.info, os.path.join(args.out, "harmful.png"))
    return rows


def raw_image(image, info):
    """Undoes `load`'s per-pixel standardisation (mean/scale are flat, in the
    file's layout: CHW for CIFAR-10) to show the image as it was."""
    shape = info["image_shape"]
    mean, scale = (np.reshape(v, shape) for v in (info["mean"], info["scale"]))
    if info.get("image_layout") == "CHW":
        mean, scale = mean.transpose(1, 2, 0), scale.transpose(1, 2, 0)
    return np.clip(image * scale + mean, 0.0, 1.0)


def figure(x, rows, info, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = info["class_names"]
    cols = 5
    fig, axes = plt.subplots(
        -(-len(rows) // cols),
        cols,
        figsize=(2.0 * cols, 2.3 * -(-len(rows) // cols)),
        squeeze=False,
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, r in zip(axes.ravel()[: len(rows)], rows, strict=True):
        image = raw_image(x[r["index"]], info)
        ax.imshow(
            image[..., 0] if image.shape[-1] == 1 else image,
            cmap="gray_r",
            vmin=0,
            vmax=1,
        )
        mark = " (flipped)" if r["flipped"] else ""
        ax.set_title(
            f"#{r['index']} {names[r['label']]}{mark}\n{r['acc_sgd_ie']:.2e}",
            fontsize=8,
            color="red" if r["flipped"] else "black",
        )
    fig.suptitle("most harmful training images (label, ACC-SGD-IE on the val loss)")
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=100)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)


if __name__ == "__main__":
    main()
