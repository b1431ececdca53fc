"""Progress notices from inside a long iteration, on their way to the `rllib` command.

A training iteration can run for minutes without a result: the first learning
iteration compiles the update step (``torch_compile_learner``) and catches up on
the warm-up (C/T x the warm-up's env steps of update steps), a large replay is
restored, a long evaluation runs. Tune reports nothing until the iteration ends,
and the trial's output does not reach the terminal (`rllib train` starts Ray with
``log_to_driver=False``, which keeps Ray's own notices off it). So the Algorithm
posts short notices to a named actor, the `NoticeBoard` that `rllib train` creates
in its Ray job; the command takes them and prints each line with its trial id.
Without a board (a Python script, ``config.build_algo()``) a notice goes to this
module's logger only (INFO).

`heartbeat` runs a thread that posts a notice every ``interval`` seconds while a
block runs (`UpdateProgress` describes the update steps of one iteration).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger(__name__)

#: The board's actor name, in the namespace of the Ray job of `rllib train`.
NOTICE_BOARD = "drive_rllib_notices"
#: Seconds between two notices of one long step (the environment variable overrides it).
INTERVAL_ENV = "DRIVE_RLLIB_NOTICE_INTERVAL_S"
DEFAULT_INTERVAL_S = 30.0
#: An ordinary learning iteration says nothing until it has run this long.
QUIET_ITERATION_S = 60.0


def notice_interval() -> float:
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 and math.isfinite(value) else DEFAULT_INTERVAL_S


class NoticeBoard:
    """Notices posted by trials, taken by the command that prints them (a Ray actor)."""

    def __init__(self) -> None:
        self._notices: list[tuple[str, str]] = []

    def post(self, source: str, text: str) -> None:
        self._notices.append((source, text))

    def take(self) -> list[tuple[str, str]]:
        notices, self._notices = self._notices, []
        return notices


def create_notice_board() -> Any:
    """Starts the board (0 CPUs) under `NOTICE_BOARD` in the current Ray job; its handle."""
    import ray

    return ray.remote(NoticeBoard).options(name=NOTICE_BOARD, num_cpus=0, max_restarts=0).remote()


class Notifier:
    """Posts notices of one trial (``source()``: the name of its folder, which holds the
    trial id) to the board, when there is one, and logs them."""

    def __init__(self, source: Callable[[], str]) -> None:
        self.source = source
        self._board: Any = None
        self._looked_up = False

    def __call__(self, text: str) -> None:
        logger.info("%s", text)
        board = self._find_board()
        if board is not None:
            import ray

            try:
                board.post.remote(self.source(), text)
            except ray.exceptions.RayError:  # the board is gone (the command ended): log only
                self._board = None

    def _find_board(self) -> Any:
        if not self._looked_up:
            self._looked_up = True
            try:
                import ray

                self._board = ray.get_actor(NOTICE_BOARD) if ray.is_initialized() else None
            except ValueError:  # no board: not run by `rllib train`
                self._board = None
        return self._board


@contextmanager
def heartbeat(
    notify: Callable[[str], None],
    describe: Callable[[float], str | None],
    interval: float | None = None,
) -> Iterator[None]:
    """While the block runs, every ``interval`` seconds (default `notice_interval`):
    ``notify(describe(seconds since the start))``, unless that is None."""
    interval = notice_interval() if interval is None else interval
    stop = threading.Event()
    start = time.monotonic()

    def run() -> None:
        while not stop.wait(interval):
            try:
                text = describe(time.monotonic() - start)
                if text:
                    notify(text)
            except Exception:  # a notice must never fail the iteration
                logger.debug("progress notice failed", exc_info=True)

    thread = threading.Thread(target=run, name="drive-progress-notices", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def long_step(label: str) -> Callable[[float], str | None]:
    """A `heartbeat` description of a step that speaks once it has run `QUIET_ITERATION_S`:
    ``"<label> (1m30s so far)"``."""

    def describe(elapsed: float) -> str | None:
        if elapsed < QUIET_ITERATION_S:
            return None
        return f"{label} ({format_duration(elapsed)} so far)"

    return describe


class UpdateProgress:
    """What a notice says about the update steps of one learning iteration.

    The first learning iteration of a process compiles the update step (when
    ``compiled``) and the run's first one catches up on the warm-up: both are
    announced at once (`start_line`), then every interval ``k of N update steps``
    with the rate of the steps after the first chunk (the compile's) and the time
    left; an ordinary iteration speaks only after `QUIET_ITERATION_S`.
    """

    def __init__(self, chunks: list[int], first: bool, compiled: bool, warmup_rows: int) -> None:
        self.chunks = chunks
        self.total = sum(chunks)
        self.first = first
        self.compiled = compiled and first
        self.catch_up = len(chunks) > 1
        self.warmup_rows = warmup_rows
        self.done = 0
        self._start = time.monotonic()
        self._chunk_ends: list[tuple[float, int]] = []  # (time, update steps done)

    @property
    def announced(self) -> bool:
        return self.first and (self.compiled or self.catch_up)

    def start_line(self) -> str | None:
        if not self.announced:
            return None
        what = f"{self.total:,} update steps"
        if self.catch_up:
            what += (
                f" (C/T x the {self.warmup_rows:,} env steps in the replay: the warm-up catch-up)"
            )
        if self.compiled:
            return (
                "learning starts: compiling the update step (torch.compile, once per process; "
                f"a minute or more on a CPU), then {what}"
            )
        return f"learning starts: {what}"

    def chunk_done(self, steps: int) -> None:
        self.done += steps
        self._chunk_ends.append((time.monotonic(), self.done))

    def describe(self, elapsed: float) -> str | None:
        if not self.announced and elapsed < QUIET_ITERATION_S:
            return None
        so_far = format_duration(elapsed)
        if self.done == 0 and self.compiled:
            return (
                f"compiling the update step, then the first {self.chunks[0]:,} of "
                f"{self.total:,} update steps ({so_far} so far)"
            )
        label = "warm-up catch-up" if self.catch_up and self.first else "update steps"
        line = f"{label}: {self.done:,} of {self.total:,} update steps done ({so_far} so far"
        rate = self._rate()
        if rate:
            # Counted from the last finished chunk: the time since is part of the next.
            since = time.monotonic() - self._chunk_ends[-1][0]
            left = max((self.total - self.done) / rate - since, 0.0)
            line += f"; {rate:.1f} steps/s, about {format_duration(left)} left"
        return line + ")"

    def end_line(self) -> str | None:
        if not self.announced:
            return None
        what = "warm-up catch-up" if self.catch_up else "first learning iteration"
        extra = ", compile included" if self.compiled else ""
        return (
            f"{what} done: {self.done:,} update steps in "
            f"{format_duration(time.monotonic() - self._start)}{extra}"
        )

    def _rate(self) -> float | None:
        """Update steps per second, past the first chunk when it compiled."""
        ends = self._chunk_ends
        if self.compiled:
            if len(ends) < 2:
                return None
            (t0, n0), (t1, n1) = ends[0], ends[-1]
        else:
            if not ends:
                return None
            (t0, n0), (t1, n1) = (self._start, 0), ends[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def format_duration(seconds: float) -> str:
    """``"42s"``, ``"3m05s"``, ``"2h07m"`` (as the progress line's)."""
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
