"""Data cleansing: removal and retraining against plain loops; the ranking logic."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import accjax
from accjax._src import cleanse as cleanse_lib
from accjax._src import replay as replay_lib
from tests import reference
from tests.test_estimators import decaying_lr, lrs_of, tanh_mlp_problem


@pytest.fixture(scope="module")
def setting():
    problem, val, apply = tanh_mlp_problem(n=13)
    run = accjax.train(problem, optax.sgd(decaying_lr), batch_size=4, epochs=3)
    query = accjax.mean_loss(problem.loss, val)
    return problem, run, query, val, apply


def test_removing_nothing_reproduces_the_model(setting):
    _, run, *_ = setting
    for retrain in ("all", "last-epoch"):
        zs = replay_lib.replay(run, np.ones((1, 13)), retrain=retrain)
        for a, b in zip(
            jax.tree.leaves(zs.params), jax.tree.leaves(run.params), strict=True
        ):
            # The vmapped replay may round differently from the plain scan.
            np.testing.assert_allclose(a[0], b, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("retrain", ["all", "last-epoch", 5])
def test_removing_k_equals_plain_retraining_without_them(setting, retrain):
    problem, run, *_ = setting
    removed = [[3], [0, 7, 12], [1, 2, 4, 5, 6]]
    keep = np.ones((len(removed), 13))
    for row, r in zip(keep, removed, strict=True):
        row[r] = 0.0
    zs = replay_lib.replay(run, keep, retrain=retrain, chunk_size=2)
    start = replay_lib.start_step(retrain, run)
    lrs = lrs_of(run.num_steps)
    for i, r in enumerate(removed):
        thetas, unravel = reference.trajectory(
            problem.loss,
            problem.params,
            problem.data,
            run.schedule,
            lrs,
            problem.l2,
            drop=r,
            from_step=start,
        )
        row = jax.tree.map(lambda a, i=i: a[i], zs.params)
        got = jax.flatten_util.ravel_pytree(row)[0]
        np.testing.assert_allclose(got, thetas[-1], rtol=1e-11, atol=1e-13)


def test_last_epoch_start_is_the_final_epoch():
    schedule = accjax.make_schedule(13, 4, 3)  # 4 steps per epoch
    assert replay_lib.last_epoch_start(schedule, 13) == 8
    with pytest.raises(ValueError, match="never appear"):
        replay_lib.last_epoch_start(np.array([[0, 1], [1, 0]]), 3)


def test_cleanse_removes_the_most_negative_and_scores_each_k(setting):
    problem, run, query, val, apply = setting
    test = {
        "loss": accjax.mean_loss(problem.loss, val),
        "error": accjax.mean_loss(accjax.models.binary_error(apply), val),
    }
    exact = accjax.loo_retrain(run, query)
    result = accjax.cleanse(
        run,
        query,
        test=test,
        estimator={"exact": exact, "sgd": "sgd_ie"},
        remove=[4, 1],
        random_draws=3,
        seed=7,
        flipped=[0, 5],
    )
    assert result.remove == (1, 4)
    order = np.argsort(np.asarray(exact.values), kind="stable")
    np.testing.assert_array_equal(result.rankings["exact"], order)
    # k = 1 by exact influence is leave-one-out itself: loss change = values[k].
    loss0 = float(test["loss"](run.params))
    np.testing.assert_allclose(result.baseline["loss"], loss0, rtol=1e-12)
    np.testing.assert_allclose(
        result.results["exact"]["loss"][0, 0] - loss0,
        float(exact.values[order[0]]),
        rtol=1e-9,
    )
    # k = 4: a plain loop without the four most harmful.
    lrs = lrs_of(run.num_steps)
    thetas, unravel = reference.trajectory(
        problem.loss,
        problem.params,
        problem.data,
        run.schedule,
        lrs,
        problem.l2,
        drop=order[:4],
    )
    np.testing.assert_allclose(
        result.results["exact"]["error"][0, 1],
        float(test["error"](unravel(thetas[-1]))),
    )
    np.testing.assert_allclose(
        result.results["exact"]["loss"][0, 1],
        float(test["loss"](unravel(thetas[-1]))),
        rtol=1e-10,
    )
    assert result.results["random"]["loss"].shape == (3, 2)
    perm = np.random.RandomState([7, 2]).permutation(13)
    thetas, unravel = reference.trajectory(
        problem.loss,
        problem.params,
        problem.data,
        run.schedule,
        lrs,
        problem.l2,
        drop=perm[:1],
    )
    np.testing.assert_allclose(
        result.results["random"]["loss"][2, 0],
        float(test["loss"](unravel(thetas[-1]))),
        rtol=1e-10,
    )
    assert result.replay_error < 1e-12
    assert set(result.detection) == {"exact", "sgd", "random"}
    table = result.table()
    assert "loss after removing" in table and "random" in table
    rows = [r.strip() for r in table.splitlines() if r.strip()[:1].isdigit()]
    for row in rows:  # k, then one cell per ranking, two spaces or more apart
        assert len(re.split(r"\s{2,}", row)) == 1 + len(result.results), row
    assert result.to_dict()["remove"] == [1, 4]


def test_detection_counts_flipped_among_the_first_k():
    inf = accjax.Influence(
        targets=jnp.arange(6), values=jnp.array([0.3, -2.0, 0.1, -1.0, 0.0, -0.5])
    )
    # order: 1, 3, 5, 4, 2, 0
    d = accjax.metrics.detection(inf, [3, 0], at=(1, 2, 6))
    assert d["precision"] == {"1": 0.0, "2": 0.5, "6": 2 / 6}
    assert d["recall"] == {"1": 0.0, "2": 0.5, "6": 1.0}
    np.testing.assert_allclose(d["auc"], np.mean([0, 0.5, 0.5, 0.5, 0.5, 1.0]))
    r = accjax.metrics.detection(None, [3, 0], at=(3,), num_examples=6)
    assert r["precision"] == {"3": 2 / 6} and r["recall"] == {"3": 0.5}
    np.testing.assert_allclose(r["auc"], 7 / 12)
    perfect = accjax.Influence(jnp.arange(6), jnp.array([-1.0, 0, 0, -2, 0, 0]))
    p = accjax.metrics.detection(perfect, [3, 0], at=(2,))
    np.testing.assert_allclose(p["auc"], 1 - (2 - 1) / (2 * 6))
    # largest first: order 0, 2, 4, 5, 3, 1
    big = accjax.metrics.detection(inf, [3, 0], at=(1, 5), largest_first=True)
    assert big["recall"] == {"1": 0.5, "5": 1.0}
    with pytest.raises(TypeError, match="`largest_first`"):
        accjax.metrics.detection(inf, [3, 0], largest_first="yes")


def test_cleanse_takes_one_influence_as_its_ranking(setting):
    problem, run, query, val, _ = setting
    test = accjax.mean_loss(problem.loss, val)
    sgd = accjax.sgd_ie(run, query)
    one = accjax.cleanse(run, query, test=test, estimator=sgd, remove=[2],
                         random_draws=0)  # fmt: skip
    named = accjax.cleanse(run, query, test=test, estimator={"influence": sgd},
                           remove=[2], random_draws=0)  # fmt: skip
    assert list(one.results) == ["influence"]
    np.testing.assert_array_equal(one.rankings["influence"],
                                  named.rankings["influence"])  # fmt: skip
    for metric in one.baseline:  # a bare test function is one metric, "test"
        np.testing.assert_allclose(one.results["influence"][metric],
                                   named.results["influence"][metric])  # fmt: skip


def test_cleanse_rejects_bad_input(setting):
    problem, run, query, val, _ = setting
    test = accjax.mean_loss(problem.loss, val)
    with pytest.raises(ValueError, match="`remove`"):
        accjax.cleanse(run, query, test=test, estimator="sgd_ie", remove=[0])
    with pytest.raises(ValueError, match="`remove`"):
        accjax.cleanse(run, query, test=test, estimator="sgd_ie", remove=[14])
    with pytest.raises(ValueError, match="`retrain`"):
        accjax.cleanse(run, query, test=test, estimator="sgd_ie", retrain="first")
    with pytest.raises(ValueError, match="neither an Influence"):
        accjax.cleanse(run, query, test=test, estimator="nope", remove=[1])
    with pytest.raises(ValueError, match="learning_rate"):
        accjax.cleanse(run, query, test=test, estimator="dvemb", remove=[1])
    with pytest.raises(ValueError, match="scalar"):
        accjax.cleanse(run, query, test=lambda p: jnp.ones(2), remove=[1])
    with pytest.raises(ValueError, match="keep"):
        replay_lib.replay(run, np.ones(13))


def test_subset_retrain_matches_plain_retraining(setting):
    problem, run, query, val, _ = setting
    subsets = accjax.subset_retrain(run, query, num_subsets=3, fraction=0.7, seed=4)
    assert subsets.removed.shape == (3, 13) and subsets.values.shape == (3,)
    assert (subsets.removed.sum(1) == 13 - round(0.7 * 13)).all()
    lrs = lrs_of(run.num_steps)
    full, unravel = reference.trajectory(
        problem.loss, problem.params, problem.data, run.schedule, lrs, problem.l2
    )
    for j in range(3):
        gone = np.flatnonzero(subsets.removed[j])
        np.testing.assert_array_equal(
            np.sort(np.random.RandomState([4, j]).permutation(13)[9:]), gone
        )
        thetas, _ = reference.trajectory(
            problem.loss, problem.params, problem.data, run.schedule, lrs,
            problem.l2, drop=gone,
        )  # fmt: skip
        want = float(query(unravel(thetas[-1])) - query(unravel(full[-1])))
        np.testing.assert_allclose(subsets.values[j], want, rtol=1e-9, atol=1e-13)


def test_lds_is_the_spearman_of_summed_influence():
    removed = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], bool)
    inf = accjax.Influence(jnp.array([2, 0, 1]), jnp.array([0.5, -1.0, 2.0]))
    # by example: v = [-1.0, 2.0, 0.5]; predicted = [-1.0, 2.5, 1.0, 0.5]
    actual = np.array([0.1, 0.9, 0.4, 0.3])  # same order: score 1
    subsets = cleanse_lib.Subsets(removed, actual)
    assert accjax.metrics.lds(inf, subsets) == pytest.approx(1.0)
    actual = np.array([0.1, 0.9, 0.3, 0.4])  # ranks 1,4,2,3 vs 1,4,3,2: rho 0.8
    assert accjax.metrics.lds(inf, cleanse_lib.Subsets(removed, actual)) == (
        pytest.approx(0.8)
    )
    two = cleanse_lib.Subsets(removed, np.stack([actual, -actual], 1))
    vec = accjax.Influence(inf.targets, jnp.stack([inf.values, inf.values], 1))
    assert accjax.metrics.lds(vec, two) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="every training example"):
        accjax.metrics.lds(accjax.Influence(jnp.array([0]), jnp.array([1.0])), subsets)


def test_exact_influence_predicts_small_group_removal(setting):
    _, run, query, *_ = setting
    subsets = accjax.subset_retrain(run, query, num_subsets=20, fraction=0.85)
    exact = accjax.loo_retrain(run, query)
    draw = np.random.RandomState(0).randn(13)  # seeded: unseeded ones scored > 0.6
    noise = accjax.Influence(exact.targets, jnp.asarray(draw))
    assert accjax.metrics.lds(exact, subsets) > 0.8
    assert accjax.metrics.lds(noise, subsets) < 0.6


def test_cleanse_takes_a_plain_function_as_test(setting):
    _, run, query, *_ = setting
    result = accjax.cleanse(
        run, query, test=lambda p: 2.0 * query(p), estimator="sgd_ie", remove=[2],
        random_draws=0,
    )  # fmt: skip
    assert list(result.results) == ["sgd_ie"]
    np.testing.assert_allclose(
        result.baseline["test"], 2 * query(run.params), rtol=1e-12
    )
