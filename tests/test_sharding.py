"""ACC-SGD-IE and leave-one-out retraining with their targets sharded over 4
(virtual CPU) devices.

XLA_FLAGS must be set before JAX starts, so the check runs in a fresh process.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optax
import pytest

import accjax
from tests.test_estimators import quadratic_problem

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    import accjax
    from accjax._src.estimators import acc, common, loo
    from tests.test_estimators import tanh_mlp_problem

    assert len(jax.devices()) == 4, jax.devices()
    problem, val, _ = tanh_mlp_problem()
    run = accjax.train(problem, optax.sgd(0.3), batch_size=5, epochs=3)
    query = accjax.mean_loss(problem.loss, val)
    one = accjax.acc_sgd_ie(run, query)
    four = accjax.acc_sgd_ie(run, query, devices=jax.devices(), chunk_size=6)
    np.testing.assert_allclose(four.values, one.values, rtol=1e-12, atol=1e-15)
    for a, b in zip(jax.tree.leaves(four.param_shift),
                    jax.tree.leaves(one.param_shift), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # The per-target state is really split: each chunk's outputs are sharded.
    sharding = common.target_sharding(jax.devices())
    values, shift, _ = acc.acc_chunks(
        run.problem, run.optimizer, run.schedule,
        common.chunk(common.check_targets(None, 13), 8),
        acc.window_mask(None, run.num_steps),
        query=common.check_run(run, query), linear_readout=True,
        with_progress=False, sharding=sharding,
    )
    for leaf in [values, *jax.tree.leaves(shift)]:
        assert leaf.sharding.spec[:2] == (None, "targets"), leaf.sharding
        assert len(leaf.sharding.device_set) == 4
    exact = accjax.loo_retrain(run, query)
    split = accjax.loo_retrain(run, query, devices=jax.devices(), chunk_size=5)
    np.testing.assert_allclose(split.values, exact.values, rtol=1e-12, atol=1e-15)
    # Each device steps 2 of the 8 runs (7 targets + the factual reference):
    # the compiled program holds w1 per device as (2, 3, 4), never (8, 3, 4).
    hlo = loo._loo_chunks.lower(
        run.problem, run.optimizer, run.schedule,
        common.chunk(common.check_targets(None, 13), 7),
        query=common.check_run(run, query), with_progress=False, sharding=sharding,
    ).compile().as_text()
    assert "f64[2,3,4]" in hlo and "f64[8,3,4]" not in hlo
    print("sharded ok")
    """
)


def test_targets_sharded_over_four_devices_give_identical_results():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sharded ok" in proc.stdout


def test_bad_devices():
    problem, val = quadratic_problem()
    run = accjax.train(problem, optax.sgd(0.1), batch_size=5, epochs=1)
    with pytest.raises(ValueError, match="devices"):
        accjax.acc_sgd_ie(run, accjax.mean_loss(problem.loss, val), devices=["cpu"])
