"""Which training posts made my transformer say this about this test post?
(docs/example.md walks through it.)

    python examples/text_attribution.py --data-dir ../shared/data
    python examples/text_attribution.py --data-dir ../shared/data --test-post 7

A flax nnx transformer (`accjax.models.TextTransformer`, dropout) trained with
`optax.adamw` on 20 Newsgroups posts (`accjax.datasets.load_text`, 10 % of the
training labels flipped), then: Adam-IE (`accjax.sgd_ie`) of every training post on
the loss of the model's own prediction for one test post - the posts that support
it (removing them would raise that loss) and those that oppose it - and the most
self-influential training posts (`accjax.tracin(run, "self")`), where mislabelled
posts gather. Prints each with its score, label and a snippet; writes
text_attribution.json.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import accjax


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="the folder with 20newsgroups/")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--label-noise", type=float, default=0.1)
    p.add_argument("--test-post", type=int, default=0)
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--out", default=".")
    return p.parse_args(argv)


def snippet(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def main(argv=None) -> dict:
    args = parse_args(argv)
    splits = accjax.datasets.load_text(
        n_train=args.n_train, n_val=args.n_val, max_len=args.seq_len,
        label_noise=args.label_noise, data_dir=args.data_dir,
    )  # fmt: skip
    classes, texts = splits.info["class_names"], splits.info["texts"]
    net = accjax.models.TextTransformer(
        vocab_size=len(splits.info["vocabulary"]), max_len=args.seq_len,
        num_classes=len(classes), dim=args.width, heads=4, num_layers=2,
        dropout=0.1, rngs=nnx.Rngs(params=0, dropout=1),
    )  # fmt: skip
    model = accjax.models.from_nnx(net)  # params, per-example loss, apply
    data = (jnp.asarray(splits.train[0]), jnp.asarray(splits.train[1]))
    problem = model.problem(data, key=jax.random.key(0))  # dropout, replayable
    run = accjax.train(
        problem, optax.adamw(1e-3), batch_size=args.batch_size, epochs=args.epochs,
        progress=True,
    )  # fmt: skip

    # The query: the loss of the model's own prediction for one test post.
    tokens = jnp.asarray(splits.test[0][args.test_post])
    predicted = int(jnp.argmax(model.apply(run.params, tokens)))
    query = lambda p: accjax.models.softmax_cross_entropy(
        model.apply(p, tokens), predicted
    )
    influence = accjax.sgd_ie(run, query, progress=True)  # Adam-IE, every post
    self_influence = accjax.tracin(run, "self", progress=True)

    flipped = set(splits.info["flipped"].tolist())
    values = np.asarray(influence.values)
    selfs = np.asarray(self_influence.values)

    def row(i, score):
        i = int(i)
        return {
            "index": i,
            "score": float(score),
            "label": classes[int(data[1][i])],
            "flipped": i in flipped,
            "snippet": snippet(texts["train"][i]),
        }

    order = np.argsort(values, kind="stable")
    report = {
        "test_post": args.test_post,
        "test_label": classes[int(splits.test[1][args.test_post])],
        "predicted": classes[predicted],
        "test_snippet": snippet(texts["test"][args.test_post]),
        # removing a supporting post raises the prediction's loss: positive
        "supporting": [row(i, values[i]) for i in order[::-1][: args.top]],
        "opposing": [row(i, values[i]) for i in order[: args.top]],
        "most_self_influential": [
            row(i, selfs[i]) for i in np.argsort(-selfs, kind="stable")[: args.top]
        ],
    }
    print(
        f"\ntest post {args.test_post} ({report['test_label']}), predicted "
        f"{report['predicted']}:\n  {report['test_snippet']}"
    )
    for part in ("supporting", "opposing", "most_self_influential"):
        print(f"\n{part.replace('_', ' ')}:")
        for r in report[part]:
            mark = " (flipped label)" if r["flipped"] else ""
            print(f"  {r['score']:+.2e}  [{r['label']}{mark}] {r['snippet']}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "text_attribution.json"), "w") as f:
        json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
