"""Progress reporting from inside jitted scans.

A jitted estimator calls `tick(done, total)` from its scan body through
`jax.debug.callback`. The callback is one module-level function, so turning
progress on never changes what is traced beyond a static flag (no retrace per
call); it forwards to whatever reporter `reporting(...)` made active.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable

import jax

_active: list[Callable[[int, int], None]] = []


def _dispatch(done, total) -> None:
    if _active:
        _active[-1](int(done), int(total))


def tick(done, total) -> None:
    """Reports `done` of `total` units of work; call it inside traced code."""
    jax.debug.callback(_dispatch, done, total)


class ProgressBar:
    """A one-line progress bar on stderr:
    `name [#####-----]  50% 3/6 steps    1.2s, 1.2s left`.

    On a terminal it redraws in place (at most every 0.1 s) and shows
    "compiling" until the first step reports; elsewhere (a log file, CI) it
    writes a line at most every `LOG_INTERVAL` seconds and one when the work
    is done. The time left extrapolates the rate since the first report
    (compilation excluded).
    """

    LOG_INTERVAL = 30.0

    def __init__(self, name: str, *, stream=None, width: int = 30):
        self.name, self.width = name, width
        self.stream = stream if stream is not None else sys.stderr
        self.live = getattr(self.stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self.last_draw = self.start
        self.done = 0
        self.first = None  # (time, done) of the first report: after compiling
        if self.live:
            self.stream.write(f"\r{self.name:<14} compiling ...")
            self.stream.flush()

    def __call__(self, done: int, total: int) -> None:
        self.done = max(self.done, done)
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, self.done)
        finished = self.done >= total
        interval = 0.1 if self.live else self.LOG_INTERVAL
        if not finished and now - self.last_draw < interval:
            return
        self.last_draw = now
        frac = self.done / max(total, 1)
        bar = "#" * int(frac * self.width)
        since, done_then = self.first
        rate = (self.done - done_then) / max(now - since, 1e-9)
        left = f", {(total - self.done) / rate:.0f}s left" if 0 < rate else ""
        self.stream.write(
            ("\r" if self.live else "")
            + f"{self.name:<14} [{bar:<{self.width}}] {frac:4.0%} "
            f"{self.done}/{total} steps {now - self.start:6.1f}s"
            + ("" if finished else left)
        )
        if finished or not self.live:
            self.stream.write("\n")
        self.stream.flush()


@contextlib.contextmanager
def reporting(progress, name: str):
    """Activates a reporter for the duration of one estimator call.

    Args:
      progress: False/None (off), True (a `ProgressBar` on stderr named `name`),
        a string (a `ProgressBar` with that label), or a callable
        `(done, total) -> None`.
      name: the label of the default bar.

    Yields:
      Whether progress is on: the static flag the jitted code takes.
    """
    if not progress:
        yield False
        return
    if progress is True or isinstance(progress, str):
        reporter = ProgressBar(name if progress is True else progress)
    elif callable(progress):
        reporter = progress
    else:
        raise TypeError(
            "`progress` must be a bool, a label or a callable (done, total); got "
            f"{progress!r}."
        )
    _active.append(reporter)
    try:
        yield True
    finally:
        _active.remove(reporter)
