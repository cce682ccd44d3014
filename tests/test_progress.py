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


def test_progress_bar_in_a_log_writes_a_line_every_interval(monkeypatch):
    # start, then reports at 10 s (compiled), 35 s, 50 s, 75 s and the end
    clock = iter([0.0, 10.0, 35.0, 50.0, 75.0, 80.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()  # not a terminal
    bar = progress.ProgressBar("retrain", stream=out, width=10)
    for done in (1, 6, 8, 9, 10):
        bar(done, 10)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split("]")[1].split("steps")[0].strip() for line in lines] == [
        "60% 6/10",  # 35 s: 30 s after the start; 5 steps in 25 s -> 20 s left
        "90% 9/10",  # 75 s: 40 s after the last line (50 s is within 30 s of it)
        "100% 10/10",
    ]
    assert lines[0].endswith("35.0s, 20s left")
    assert lines[-1].endswith("80.0s")


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


def test_training_reports_every_step_and_trains_the_same():
    import jax
    import jax.numpy as jnp
    import optax

    x = jnp.linspace(-1, 1, 10)
    loss = lambda p, xi: (xi * p["w"] - 1.0) ** 2
    problem = accjax.Problem(loss, {"w": jnp.zeros(())}, x)
    plain = accjax.train(problem, optax.sgd(0.1), batch_size=3, epochs=2)
    seen = []
    run = accjax.train(
        problem, optax.sgd(0.1), batch_size=3, epochs=2,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    jax.effects_barrier()
    assert sorted(seen) == [(t, 8) for t in range(1, 9)]  # 2 epochs of 4 batches
    assert float(run.params["w"]) == float(plain.params["w"])


def _lowered_cores(with_progress: bool) -> dict[str, str]:
    """The StableHLO text of every estimator's jitted core on a small MLP run."""
    import jax
    import jax.numpy as jnp
    import optax

    from accjax._src import train as train_lib
    from accjax._src.estimators import acc, acc_fast, loo, sgd_ie, tracin
    from accjax._src.problem import as_query_tree
    from tests.test_estimators import tanh_mlp_problem

    problem, val, _ = tanh_mlp_problem()
    run = accjax.train(problem, optax.sgd(0.1), batch_size=4, epochs=2)
    query = as_query_tree(accjax.mean_loss(problem.loss, val))
    args = (run.problem, run.optimizer, run.schedule)
    chunks = jnp.arange(4, dtype=jnp.int32).reshape(1, 4)
    options = dict(with_progress=with_progress)
    num_params = sum(x.size for x in jax.tree.leaves(problem.params))
    sketch = acc_fast.Sketch(num_params, None, 0, "adjoint")
    lowered = {
        "train": train_lib._train_scan.lower(*args, with_progress),
        "sgd_ie": sgd_ie._sgd_ie_all.lower(*args, query=query, storage="all",
                                           **options),
        "acc_sgd_ie": acc.acc_chunks.lower(
            *args, chunks, jnp.ones(run.num_steps, bool), query=query,
            linear_readout=True, **options,
        ),
        "loo_retrain": loo._loo_chunks.lower(*args, chunks, query=query, **options),
        "tracin": tracin._tracin_all.lower(*args, query=query, **options),
        "acc_sgd_ie_fast": acc_fast._acc_fast_all.lower(
            *args, query=query, sketch=sketch, segment=1, **options
        ),
    }  # fmt: skip
    return {name: low.as_text() for name, low in lowered.items()}


def test_no_host_callback_on_the_hot_path_when_progress_is_off():
    """With progress off, no estimator's compiled scan calls back into Python
    (a device-to-host round trip per step on an accelerator); with progress on,
    each does, so the check can fail."""
    quiet, reporting = _lowered_cores(False), _lowered_cores(True)
    for name, text in quiet.items():
        assert "callback" not in text, name
        assert "callback" in reporting[name], name
