"""The figures of the experiments: metrics against training length, and
estimated against exact influence."""

from __future__ import annotations

import numpy as np

from accjax._src import extras
from accjax._src.files import atomic_write


def metrics_figure(path, summary, estimators, epochs) -> None:
    """Each metric against epochs, a line per estimator, a band for the seeds."""
    plt = extras.pyplot("the experiment's plots")

    panels = sorted({k.rsplit("/", 1)[0] for k in summary})
    metrics = ("rmse", "kendall", "jaccard@10")
    fig, axes = plt.subplots(
        len(panels),
        len(metrics),
        squeeze=False,
        figsize=(4.2 * len(metrics), 3.2 * len(panels)),
    )
    for i, panel in enumerate(panels):
        es = [e for e in epochs if f"{panel}/{e}" in summary]
        for j, m in enumerate(metrics):
            ax = axes[i][j]
            for name in estimators:
                mean = np.array([summary[f"{panel}/{e}"][name][m]["mean"] for e in es])
                std = np.array([summary[f"{panel}/{e}"][name][m]["std"] for e in es])
                ax.plot(es, mean, marker="o", ms=3, label=name)
                ax.fill_between(es, mean - std, mean + std, alpha=0.2)
            if m == "rmse":
                ax.set_yscale("log")
            ax.set_title(f"{panel}: {m}", fontsize=9)
            ax.set_xlabel("epochs")
        axes[i][0].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def scatter_figure(path, row, title) -> None:
    plt = extras.pyplot("the experiment's plots")

    exact = np.asarray(row["values"]["exact"])
    names = [n for n in row["values"] if n != "exact"]
    fig, axes = plt.subplots(1, len(names), squeeze=False, figsize=(4 * len(names), 4))
    for ax, name in zip(axes[0], names, strict=True):
        ax.scatter(exact, row["values"][name], s=6, alpha=0.6)
        ax.plot([exact.min(), exact.max()], [exact.min(), exact.max()], "k--", lw=0.8)
        ax.set_xlabel("exact")
        ax.set_title(f"{name}: tau {row[name]['kendall']:.3f}", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
