"""Progress reporting: the callable protocol and the bar's text."""

import io

import pytest

import accjax
from accjax._src import progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_shows_the_time_left_from_the_rate_after_compiling(monkeypatch):
    clock = iter([0.0, 100.0, 102.0, 104.0])  # start, then 3 reports 2 s apart
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    out = _Tty()
    bar = progress.ProgressBar("sgd_ie", stream=out, width=10)
    bar(1, 10)  # first report after 100 s of compiling: no rate yet
    bar(3, 10)  # 2 steps in 2 s: 7 left -> 7 s
    assert out.getvalue().endswith("3/10 steps  102.0s, 7s left")
    bar(10, 10)
    assert out.getvalue().endswith("[##########] 100% 10/10 steps  104.0s\n")


def test_estimators_report_every_step_to_a_callable():
    import jax.numpy as jnp
    import optax

    x = jnp.linspace(-1, 1, 12)[:, None]
    y = (x[:, 0] > 0).astype(jnp.float32)
    loss = accjax.models.binary_loss(lambda p, xi: xi @ p["w"] + p["b"])
    params = {"w": jnp.zeros(1), "b": jnp.zeros(())}
    problem = accjax.Problem(loss, params, (x, y))
    run = accjax.train(problem, optax.sgd(0.1), batch_size=4, epochs=2, seed=0)
    query = accjax.mean_loss(loss, (x, y))
    for storage in ("all", "states", 2):
        seen = []
        record = lambda done, total, seen=seen: seen.append((done, total))
        accjax.sgd_ie(run, query, storage=storage, progress=record)
        assert max(seen) == (2 * run.num_steps, 2 * run.num_steps)
    with pytest.raises(TypeError, match="progress"):
        accjax.sgd_ie(run, query, progress=3)
