"""Notices from inside long iterations (no Ray): what they say and how often."""

from __future__ import annotations

import io
import threading
import time

from drive_rllib.algorithm import notices
from drive_rllib.algorithm.notices import UpdateProgress, heartbeat, long_step


def test_the_compile_and_catch_up_announce_themselves_and_count_update_steps(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(notices.time, "monotonic", lambda: clock[0])
    progress = UpdateProgress([1000] * 5, first=True, compiled=True, warmup_rows=5000)
    assert progress.start_line() == (
        "learning starts: compiling the update step (torch.compile, once per process; a minute "
        "or more on a CPU), then 5,000 update steps (C/T x the 5,000 env steps in the replay: "
        "the warm-up catch-up)"
    )
    assert progress.describe(30.0) == (
        "compiling the update step, then the first 1,000 of 5,000 update steps (30s so far)"
    )
    clock[0] += 150.0  # compile and the first chunk
    progress.chunk_done(1000)
    # One chunk: no rate yet past the compile.
    assert progress.describe(160.0) == (
        "warm-up catch-up: 1,000 of 5,000 update steps done (2m40s so far)"
    )
    clock[0] += 50.0
    progress.chunk_done(1000)  # 20 steps/s past the compile
    assert progress.describe(210.0) == (
        "warm-up catch-up: 2,000 of 5,000 update steps done (3m30s so far; 20.0 steps/s, "
        "about 2m30s left)"
    )
    clock[0] += 30.0  # the time since the last chunk counts
    assert progress.describe(240.0).endswith("20.0 steps/s, about 2m00s left)")
    assert progress.end_line() == (
        "warm-up catch-up done: 2,000 update steps in 3m50s, compile included"
    )


def test_an_ordinary_iteration_speaks_only_after_a_minute():
    progress = UpdateProgress([1000], first=False, compiled=True, warmup_rows=20000)
    assert progress.start_line() is None and progress.end_line() is None
    assert progress.describe(30.0) is None
    assert progress.describe(61.0).startswith("update steps: 0 of 1,000 update steps done (1m01s")
    eager_first = UpdateProgress([1000, 1000], first=True, compiled=False, warmup_rows=2000)
    assert eager_first.start_line().startswith("learning starts: 2,000 update steps (C/T x")
    assert long_step("evaluating")(59.0) is None
    assert long_step("evaluating")(90.0) == "evaluating (1m30s so far)"


def test_a_heartbeat_speaks_every_interval_while_the_block_runs_and_stops_after():
    said: list[str] = []
    lock = threading.Lock()

    def notify(text: str) -> None:
        with lock:
            said.append(text)

    with heartbeat(notify, lambda elapsed: f"{elapsed:.2f}", interval=0.05):
        time.sleep(0.33)
    count = len(said)
    assert 3 <= count <= 7
    time.sleep(0.15)
    assert len(said) == count  # stopped with the block
    # A description that fails never fails the block.
    with heartbeat(notify, lambda elapsed: 1 / 0, interval=0.01):
        time.sleep(0.05)


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(notices.INTERVAL_ENV, "2.5")
    assert notices.notice_interval() == 2.5
    monkeypatch.setenv(notices.INTERVAL_ENV, "soon")
    assert notices.notice_interval() == notices.DEFAULT_INTERVAL_S


def test_the_command_prints_each_notice_with_its_trial_id(monkeypatch):
    from drive_rllib.cli.progress import Budget, ProgressPrinter
    from drive_rllib.cli.train import NoticeReader, trial_id

    class Board:
        def __init__(self):
            self.pending = [("DRIVE_Pendulum-v1_566b0_00000_0_2026-12-07_10-24-09", "compiling")]

        class _Take:
            def __init__(self, board):
                self.board = board

            def remote(self):
                taken, self.board.pending = self.board.pending, []
                return taken

        @property
        def take(self):
            return Board._Take(self)

    stream = io.StringIO()
    printer = ProgressPrinter(Budget(), stream=stream, tty=False)
    reader = NoticeReader(Board(), printer)
    import ray

    monkeypatch.setattr(ray, "get", lambda value, timeout=None: value)
    reader.poll()
    reader.poll()  # within NOTICE_POLL_S: no second look
    assert stream.getvalue() == "compiling  (trial 566b0_00000)\n"
    assert trial_id("no-id-here") == "no-id-here"
