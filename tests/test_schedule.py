import numpy as np
import pytest

import accjax


def test_seed_zero_reproduces_the_reference_scripts():
    n, batch_size, epochs = 13, 5, 3
    rows = []
    for epoch in range(epochs):  # as the reference scripts build their batches
        np.random.seed(epoch)
        for batch in np.array_split(
            np.random.permutation(n), int(np.ceil(n / batch_size))
        ):
            rows.append(list(batch) + [-1] * (5 - len(batch)))
    got = accjax.make_schedule(n, batch_size, epochs)
    np.testing.assert_array_equal(got, np.array(rows))
    assert got.dtype == np.int32


def test_every_epoch_is_a_permutation_in_nearly_equal_batches():
    sched = accjax.make_schedule(10, 4, 5, seed=7)
    assert sched.shape == (15, 4)  # ceil(10/4) = 3 batches: 4, 3, 3
    for epoch in range(5):
        block = sched[3 * epoch : 3 * epoch + 3]
        assert [int((r >= 0).sum()) for r in block] == [4, 3, 3]
        np.testing.assert_array_equal(np.sort(block[block >= 0]), np.arange(10))


def test_seeds_differ_and_repeat():
    a = accjax.make_schedule(20, 5, 2, seed=1)
    np.testing.assert_array_equal(a, accjax.make_schedule(20, 5, 2, seed=1))
    assert not np.array_equal(a, accjax.make_schedule(20, 5, 2, seed=2))
    assert not np.array_equal(a, accjax.make_schedule(20, 5, 2, seed=0))


@pytest.mark.parametrize(
    "args, match",
    [
        ((10, 0, 1), "batch_size"),
        ((10, 11, 1), "exceeds"),
        ((0, 1, 1), "num_examples"),
        ((10, 2, 1.5), "epochs"),
    ],
)
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        accjax.make_schedule(*args)
