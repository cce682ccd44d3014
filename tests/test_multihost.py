"""Several hosts for real: two processes with two CPU devices each, joined by
`jax.distributed` over gloo on localhost, shard `acc_sgd_ie` and `loo_retrain`
over all four devices and must both get the one-process values.

Each process is a fresh interpreter (XLA_FLAGS and the distributed runtime must
be set before JAX starts). The launcher fails the test as soon as one process
dies (the other is killed), and after a deadline whatever happens, so a busy
port or a crashed peer cannot hang CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import accjax
from tests.test_estimators import tanh_mlp_problem

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 240

WORKER = textwrap.dedent(
    """
    import json, os, sys
    process_id, port = int(sys.argv[1]), sys.argv[2]
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2,
        process_id=process_id, initialization_timeout=60,
    )
    import numpy as np, optax
    import accjax
    from tests.test_estimators import tanh_mlp_problem

    assert jax.process_count() == 2 and len(jax.devices()) == 4, jax.devices()
    assert len(jax.local_devices()) == 2
    problem, val, _ = tanh_mlp_problem()
    run = accjax.train(problem, optax.sgd(0.3), batch_size=5, epochs=3)
    query = accjax.mean_loss(problem.loss, val)
    out = {}
    for name, estimator, chunk_size in [
        ("acc", accjax.acc_sgd_ie, 6), ("loo", accjax.loo_retrain, 5)
    ]:
        got = estimator(run, query, devices=jax.devices(), chunk_size=chunk_size)
        leaves = [got.values, *jax.tree.leaves(got.param_shift)]
        # Ordinary arrays: this process holds all of each.
        assert all(leaf.is_fully_addressable for leaf in leaves), name
        out[name] = [np.asarray(leaf).tolist() for leaf in leaves]
    print("RESULT " + json.dumps(out), flush=True)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: str, port: int, deadline_s: float = DEADLINE_S) -> list[str]:
    """Runs `script` as processes 0 and 1; returns their stdouts.

    Fails the test when a process exits non-zero (after killing the other) or
    when the deadline passes.
    """
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT),
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i), str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    start = time.monotonic()
    try:
        while any(p.poll() is None for p in procs):
            dead = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            late = time.monotonic() - start > deadline_s
            if dead or late:
                for p in procs:
                    p.kill()
                logs = [p.communicate()[0][-2000:] for p in procs]
                why = f"process {dead[0]} died" if dead else f"over {deadline_s} s"
                pytest.fail(f"multi-host run failed ({why}):\n" + "\n---\n".join(logs))
            time.sleep(0.2)
        outs = [p.communicate()[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for i, (p, out) in enumerate(zip(procs, outs, strict=True)):
        if p.returncode != 0:
            pytest.fail(f"process {i} exited {p.returncode}:\n{out[-3000:]}")
    return outs


def test_two_processes_four_devices_match_one_process():
    outs = launch(WORKER, free_port())
    problem, val, _ = tanh_mlp_problem()
    run = accjax.train(problem, optax.sgd(0.3), batch_size=5, epochs=3)
    query = accjax.mean_loss(problem.loss, val)
    want = {
        name: [got.values, *jax.tree.leaves(got.param_shift)]
        for name, got in [
            ("acc", accjax.acc_sgd_ie(run, query)),
            ("loo", accjax.loo_retrain(run, query)),
        ]
    }
    for out in outs:
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        result = json.loads(line.removeprefix("RESULT "))
        for name, leaves in want.items():
            assert len(result[name]) == len(leaves)
            for got, expected in zip(result[name], leaves, strict=True):
                np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_a_dead_peer_or_busy_port_fails_fast():
    # Process 1 dies before joining: process 0 would wait for it in
    # `initialize`; the launcher must stop both and fail at once.
    dying = "import sys\nif sys.argv[1] == '1': sys.exit(3)\n" + WORKER
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="process 1 died"):
        launch(dying, free_port())
    assert time.monotonic() - start < 60
    # A port that another program holds: the coordinator cannot serve on it.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        start = time.monotonic()
        with pytest.raises(pytest.fail.Exception, match="multi-host run failed"):
            launch(WORKER, busy.getsockname()[1], deadline_s=90)
    assert time.monotonic() - start < 120
