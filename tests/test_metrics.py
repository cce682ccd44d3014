import itertools

import numpy as np
import pytest

import accjax
from accjax import metrics


def tau_b_by_pairs(a, b):
    concordant = discordant = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif da == db:
            concordant += 1
        else:
            discordant += 1
    return (concordant - discordant) / np.sqrt(
        (concordant + discordant + ties_a) * (concordant + discordant + ties_b)
    )


def ranks(x):
    return np.argsort(np.argsort(x)).astype(float)


def test_against_written_out_formulas():
    rng = np.random.RandomState(0)
    a = rng.randn(40)
    b = a + 0.5 * rng.randn(40)
    b[3] = b[7]  # a tie
    assert metrics.rmse(a, b) == pytest.approx(np.sqrt(np.mean((a - b) ** 2)))
    assert metrics.kendall(a, b) == pytest.approx(tau_b_by_pairs(a, b))
    assert metrics.pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    c = rng.randn(40)
    assert metrics.spearman(a, c) == pytest.approx(
        np.corrcoef(ranks(a), ranks(c))[0, 1]
    )


def test_two_tailed_jaccard():
    truth = np.arange(20.0)  # p=20: c = 4, tails = {0, 1} and {18, 19}
    est = truth.copy()
    est[[1, 5]] = est[[5, 1]]  # 1 leaves the lower tail, 5 enters it
    assert metrics.jaccard(truth, est, 20) == pytest.approx(3 / 5)
    assert metrics.jaccard(truth, -truth, 20) == pytest.approx(1.0)  # tails as sets
    assert metrics.jaccard(truth, truth, 10) == 1.0


def test_compare_table_and_target_mismatch():
    t = np.arange(5)
    truth = accjax.Influence(t, np.array([0.1, -0.2, 0.3, 0.0, 0.5]))
    good = accjax.Influence(t, truth.values + 0.01)
    table = metrics.compare(truth, {"good": good})
    assert set(table["good"]) == {
        "rmse",
        "kendall",
        "spearman",
        "pearson",
        "jaccard@10",
        "jaccard@30",
    }
    assert table["good"]["rmse"] == pytest.approx(0.01)
    assert "good" in metrics.format_table(table)
    other = accjax.Influence(t[::-1], good.values)
    with pytest.raises(ValueError, match="other targets"):
        metrics.compare(truth, {"other": other})
    with pytest.raises(ValueError, match="same length"):
        metrics.rmse(np.zeros(3), np.zeros(4))
