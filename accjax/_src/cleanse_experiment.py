"""`accjax cleanse`: the data-cleansing experiment over seeds (table, JSON, plot).

Per seed: load the splits (with flipped training labels if asked), train with
the reference recipe, compute each estimator's influence on the validation
loss, then `accjax.cleanse` removes the k most harmful examples, retrains with
the same schedule and measures the test error and loss. The JSON is rewritten
(atomically) after every seed; the summary holds the mean and std over seeds.
"""

from __future__ import annotations

import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import accjax
from accjax._src import extras
from accjax._src.cleanse import DEFAULT_REMOVE, check_remove, cleanse
from accjax._src.estimators.named import estimate
from accjax._src.experiment import make_problem, model_data
from accjax._src.files import atomic_write, dump_json
from accjax._src.replay import check_retrain


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def test_metrics(model, problem, splits) -> dict:
    """`{"error": misclassification rate, "loss": mean loss}` on the test split."""
    data = model_data(model, splits, splits.test)
    if model == "cnn":
        error = accjax.models.multiclass_error(problem.loss.apply)
    else:
        error = accjax.models.binary_error(problem.loss.apply)
    return {
        "error": accjax.mean_loss(error, data),
        "loss": accjax.mean_loss(problem.loss, data),
    }


def summarize(rows) -> dict:
    """Mean and std over seeds of each ranking's per-seed mean (random: over draws)."""
    summary = {"seeds": len(rows), "remove": rows[0]["remove"], "baseline": {}}
    for metric in rows[0]["baseline"]:
        vals = [r["baseline"][metric] for r in rows]
        summary["baseline"][metric] = {"mean": np.mean(vals), "std": np.std(vals)}
    summary["results"] = {}
    for name in rows[0]["results"]:
        cell = {}
        for metric in rows[0]["results"][name]:
            per_seed = np.array(
                [np.mean(r["results"][name][metric], axis=0) for r in rows]
            )
            cell[metric] = {
                "mean": per_seed.mean(0).tolist(),
                "std": per_seed.std(0).tolist(),
                "min": per_seed.min(0).tolist(),
                "max": per_seed.max(0).tolist(),
            }
        summary["results"][name] = cell
    if rows[0].get("detection"):
        summary["detection"] = {}
        for name in rows[0]["detection"]:
            ds = [r["detection"][name] for r in rows]
            summary["detection"][name] = {
                "recall": {
                    k: float(np.mean([d["recall"][k] for d in ds]))
                    for k in ds[0]["recall"]
                },
                "precision": {
                    k: float(np.mean([d["precision"][k] for d in ds]))
                    for k in ds[0]["precision"]
                },
                "auc": float(np.mean([d["auc"] for d in ds])),
            }
    return _plain(summary)


def _plain(x):
    """NumPy scalars to Python floats, dict order kept (for JSON)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return float(x) if isinstance(x, np.floating) else x


def format_summary(summary) -> str:
    """k down, rankings across: mean +- std over seeds, one block per metric."""
    names = list(summary["results"])
    seeds = summary["seeds"]

    def cell(mean, std):
        return f"{mean:.4g} +- {std:.2g}" if seeds > 1 else f"{mean:.4g}"

    lines = []
    for metric, base in summary["baseline"].items():
        spread = f", mean +- std over {seeds} seeds" if seeds > 1 else ""
        lines.append(
            f"test {metric} after removing the k most harmful{spread}; nothing "
            f"removed: {cell(base['mean'], base['std'])}"
        )
        lines.append(f"{'k':>6}" + "".join(f"{n:>20}" for n in names))
        for j, k in enumerate(summary["remove"]):
            cells = [
                cell(
                    summary["results"][n][metric]["mean"][j],
                    summary["results"][n][metric]["std"][j],
                )
                for n in names
            ]
            lines.append(f"{k:>6}" + "".join(f"{c:>20}" for c in cells))
        lines.append("")
    det = summary.get("detection")
    if det:
        lines.append(
            "flipped labels among the k most harmful (recall, mean over seeds)"
        )
        lines.append(f"{'k':>6}" + "".join(f"{n:>20}" for n in det))
        for k in summary["remove"]:
            lines.append(
                f"{k:>6}"
                + "".join(f"{d['recall'][str(k)]:>20.3f}" for d in det.values())
            )
        lines.append(
            f"{'auc':>6}" + "".join(f"{d['auc']:>20.3f}" for d in det.values())
        )
    return "\n".join(lines).rstrip()


def plot_summaries(path, summaries, *, metric="error") -> None:
    """A panel per summary (`{title: summary}`): test `metric` against k (log x),
    a line per ranking, a band for the spread over seeds (min to max), the
    no-removal level dashed."""
    plt = extras.pyplot("the cleansing experiment's plots")

    fig, axes = plt.subplots(
        1, len(summaries), squeeze=False, figsize=(4.6 * len(summaries) + 1, 3.9)
    )
    for ax, (title, summary) in zip(axes[0], summaries.items(), strict=True):
        ks = np.asarray(summary["remove"])
        for name, cell in summary["results"].items():
            r = cell[metric]
            ax.plot(ks, r["mean"], marker="o", ms=3, label=name)
            if summary["seeds"] > 1:
                ax.fill_between(ks, r["min"], r["max"], alpha=0.15)
        base = summary["baseline"][metric]["mean"]
        ax.axhline(base, color="k", ls="--", lw=0.8, label="nothing removed")
        ax.set_xscale("log")
        ax.set_xlabel("k removed (most harmful first)")
        ax.set_title(f"{title} ({summary['seeds']} seeds)", fontsize=9)
        ax.legend(fontsize=6)  # the rankings may differ between panels
    axes[0][0].set_ylabel(f"test {metric}" + (" rate" if metric == "error" else ""))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def run_cleansing(
    *,
    dataset="breast_cancer",
    model="mlp",
    sizes=(300, 100, 169),
    epochs=20,
    batch_size=50,
    seeds=1,
    label_noise=0.1,
    estimators=("sgd_ie", "acc_sgd_ie"),
    remove=DEFAULT_REMOVE,
    retrain="all",
    random_draws=5,
    chunk_size=None,
    data_dir=None,
    out="accjax-cleanse",
    stream=None,
) -> dict:
    """Runs the cleansing experiment; writes cleanse.json and cleanse.png to `out`.

    `sizes` is (n_train, n_val, n_test). Returns the report (setting, one row
    per seed, summary).
    """
    stream = sys.stderr if stream is None else stream
    check_remove(remove, sizes[0])  # fail before any training
    check_retrain(retrain)
    os.makedirs(out, exist_ok=True)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    setting = dict(
        dataset=dataset,
        model=model,
        sizes=list(sizes),
        epochs=epochs,
        batch_size=batch_size,
        seeds=seeds,
        label_noise=label_noise,
        estimators=list(estimators),
        remove=list(remove),
        retrain=retrain,
        random_draws=random_draws,
        dtype=jnp.dtype(dtype).name,
    )
    rows = []
    start = time.perf_counter()
    for seed in range(seeds):
        n_train, n_val, n_test = sizes
        splits = accjax.datasets.load(
            dataset,
            n_train=n_train,
            n_val=n_val,
            n_test=n_test,
            seed=seed,
            data_dir=data_dir,
            label_noise=label_noise,
        )
        problem, optimizer, lr, query = make_problem(model, splits, seed)
        t0 = time.perf_counter()
        run = accjax.train(problem, optimizer, batch_size=batch_size, epochs=epochs)
        seconds = {"train": time.perf_counter() - t0}
        influences = {}
        for name in estimators:
            t0 = time.perf_counter()
            influences[name] = estimate(
                name, run, query, learning_rate=lr, progress=name
            )
            jax.block_until_ready(influences[name].values)
            seconds[name] = time.perf_counter() - t0
        flipped = splits.info["flipped"]
        t0 = time.perf_counter()
        result = cleanse(
            run,
            query,
            test=test_metrics(model, problem, splits),
            estimator=influences,
            remove=remove,
            retrain=retrain,
            random_draws=random_draws,
            seed=seed,
            flipped=flipped if flipped.size else None,
            chunk_size=chunk_size,
            progress="retrain",
        )
        seconds["retrain"] = time.perf_counter() - t0
        row = result.to_dict()
        kmax = max(result.remove)
        row["rankings"] = {n: r[:kmax] for n, r in row["rankings"].items()}
        row.update(
            seed=seed,
            num_steps=run.num_steps,
            l2=float(problem.l2),
            flipped=flipped.tolist(),
            seconds=seconds,
            peak_rss_mb=_peak_rss_mb(),
        )
        rows.append(row)
        dump_json(os.path.join(out, "cleanse.json"), {"setting": setting, "rows": rows})
        elapsed = time.perf_counter() - start
        left = elapsed / (seed + 1) * (seeds - seed - 1)
        print(
            f"[seed {seed + 1}/{seeds}] {dataset} {model}: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
            + f"; {elapsed:.0f}s elapsed, ~{left:.0f}s left",
            file=stream,
            flush=True,
        )
    summary = summarize(rows)
    report = {"setting": setting, "rows": rows, "summary": summary}
    dump_json(os.path.join(out, "cleanse.json"), report, indent=1)
    title = (
        f"{dataset} {model}, n={sizes[0]}, {epochs} epochs, "
        f"{label_noise:.0%} labels flipped, retrain {retrain}"
    )
    plot_summaries(os.path.join(out, "cleanse.png"), {title: summary})
    return report
