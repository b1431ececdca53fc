"""The live progress line: rates, ETA and the two output forms (terminal bar, plain lines)."""

from __future__ import annotations

import csv
import io

import pytest

from drive_rllib import keys
from drive_rllib.cli import progress
from drive_rllib.cli.progress import (
    Budget,
    ProgressPrinter,
    ProgressTracker,
    format_count,
    format_duration,
    format_progress,
)
from tests.cli.conftest import REPO


def result(
    iteration: int,
    env_steps: float,
    total_s: float,
    iteration_s: float,
    episode_return: float | None = None,
    updates: float = 100,
) -> dict:
    """A Tune result as DRIVE reports it (nested groups)."""
    env_runners = {"num_env_steps_sampled_lifetime": env_steps}
    if episode_return is not None:
        env_runners["episode_return_mean"] = episode_return
    return {
        "training_iteration": iteration,
        "num_env_steps_sampled_lifetime": env_steps,
        "time_total_s": total_s,
        "time_this_iter_s": iteration_s,
        "training/update_steps": updates,
        "env_runners": env_runners,
    }


def test_update_steps_key_is_the_one_drive_logs():
    # The progress line and the Algorithm take the key from drive_rllib.keys (which
    # imports no RLlib), so they cannot drift apart; the line reads that key.
    from drive_rllib.algorithm import drive

    assert progress.keys is keys and drive.keys is keys
    assert keys.UPDATE_STEPS == "training/update_steps"
    tracker = ProgressTracker(Budget())
    assert tracker.update("t0", result(1, 10, 2.0, 2.0, updates=30)).updates_per_s == 15.0


def test_rates_and_eta_against_an_env_step_budget():
    tracker = ProgressTracker(Budget(env_steps=1000))
    # The first learning iteration (compile, catch-up) has rates but sets no ETA.
    first = tracker.update("t0", result(1, 100, total_s=20.0, iteration_s=20.0))
    assert first.phase == "first"
    assert first.env_steps_per_s == pytest.approx(5.0)  # 100 steps in 20 s
    assert first.updates_per_s == pytest.approx(5.0)  # 100 updates in 20 s
    assert first.eta_s is None and first.fraction == pytest.approx(0.1)
    assert first.episode_return is None

    second = tracker.update("t0", result(2, 200, total_s=22.0, iteration_s=2.0))
    assert second.phase == "train"
    assert second.env_steps_per_s == pytest.approx(50.0)
    assert second.eta_s == pytest.approx(800 * 0.02)  # 800 steps left at 0.02 s each
    third = tracker.update(
        "t0", result(3, 300, total_s=23.0, iteration_s=1.0, episode_return=-800.0)
    )
    assert third.env_steps_per_s == pytest.approx(100.0)
    # Seconds per step smoothed: 0.5 * 0.02 + 0.5 * 0.01 = 0.015.
    assert third.eta_s == pytest.approx(700 * 0.015)
    assert third.episode_return == -800.0


def test_the_budget_that_ends_first_sets_the_eta():
    tracker = ProgressTracker(Budget(env_steps=10_000, iterations=4, seconds=100.0))
    first = tracker.update("t0", result(1, 100, total_s=10.0, iteration_s=10.0))
    # Rates not measured yet: the time budget bounds the ETA (90 s left).
    assert first.eta_s == pytest.approx(90.0) and first.eta_at_most
    assert "ETA <=1m30s" in format_progress(first, tracker.budget)
    progress = tracker.update("t0", result(2, 200, total_s=12.0, iteration_s=2.0))
    # Steps: 9,800 x 0.02 s = 196 s; iterations: 2 x 2 s = 4 s; time: 88 s.
    assert progress.eta_s == pytest.approx(4.0) and not progress.eta_at_most
    assert progress.fraction == pytest.approx(2 / 4)


def test_trials_are_tracked_separately_and_no_budget_means_no_eta():
    tracker = ProgressTracker(Budget(target_return=-200))
    tracker.update("a", result(1, 100, 1.0, 1.0))
    other = tracker.update("b", result(1, 300, 1.0, 1.0))
    assert other.env_steps_per_s == pytest.approx(300.0)
    assert other.eta_s is None and other.fraction is None


def test_line_formats():
    budget = Budget(env_steps=5000, target_return=-200)
    tracker = ProgressTracker(budget)
    tracker.update("0000", result(11, 2000, 9.0, 5.0, updates=500))
    progress = tracker.update(
        "0000", result(12, 3100, 10.0, 1.0, episode_return=-812.34, updates=38)
    )
    line = format_progress(progress, budget)
    assert line == (
        "it 12  3.1k/5k env steps  return -812.3 (stop at -200)  "
        "1.1k env steps/s  38 updates/s  ETA 2s  (trial 0000)"
    )
    # On a terminal the bar and the ETA come first: a narrow terminal cuts the trial name.
    assert format_progress(progress, budget, bar=True) == (
        "[#######.....]  62% ETA 2s  it 12  3.1k/5k env steps  return -812.3 (stop at -200)  "
        "1.1k env steps/s  38 updates/s  (trial 0000)"
    )
    assert (
        format_count(950) == "950"
        and format_count(12_345) == "12.3k"
        and format_count(1_234_567) == "1.23M"
    )
    assert format_duration(None) == "?" and format_duration(42) == "42s"
    assert format_duration(185) == "3m05s" and format_duration(7620) == "2h07m"


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    printer = ProgressPrinter(Budget(env_steps=400), stream=stream, tty=False)
    printer.result("t0", result(1, 200, 2.0, 2.0))
    printer.result("t0", result(2, 400, 3.0, 1.0))
    printer.message("trial t0 finished")
    lines = stream.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines[:2]] == ["it 1", "it 2"]
    assert lines[2] == "trial t0 finished"
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_one_updating_bar_on_a_terminal():
    stream = io.StringIO()
    printer = ProgressPrinter(Budget(env_steps=400), stream=stream, tty=True)
    printer.result("t0", result(1, 200, 2.0, 2.0))
    printer.result("t0", result(2, 400, 3.0, 1.0))
    printer.message("trial t0 finished")
    text = stream.getvalue()
    # Both updates rewrite the same line (carriage return, erase to end of line);
    # the message ends that line first.
    assert text.count("\r") == 2 and text.count("\x1b[K") == 2
    assert text.count("\n") == 2 and text.endswith("\ntrial t0 finished\n")
    assert "[######......]  50% ETA ? (measured from the 2nd learning iteration)" in text
    assert "[############] 100% ETA 0s" in text


def drive_result(
    iteration, env_steps, total_s, lifetime_updates, warmup, iteration_s=1.0, **env_runners
):
    """A result with the Learner's update counter and the warm-up flag, as DRIVE reports."""
    return {
        "training_iteration": iteration,
        "num_env_steps_sampled_lifetime": env_steps,
        "time_total_s": total_s,
        "time_this_iter_s": iteration_s,
        "training": {"warmup": float(warmup), "update_steps": 0},
        "learners": {"default_policy": {"training": {"update_steps_lifetime": lifetime_updates}}},
        "env_runners": {"num_env_steps_sampled_lifetime": env_steps, **env_runners},
        "config": {"num_warmup_steps": 200},
    }


def test_eta_comes_from_training_iterations_only_and_tags_the_warm_up():
    tracker = ProgressTracker(Budget(env_steps=1000))
    # Warm-up: 100 steps per second, no update yet: the run's ETA is not known.
    first = tracker.update("t0", drive_result(1, 100, 1.0, None, warmup=True))
    assert first.warmup and first.phase == "warmup" and first.eta_s is None
    line = format_progress(first, Budget(env_steps=1000))
    assert line.startswith("it 1  warm-up  100/1k env steps")
    assert "ETA ? (measured from the 2nd learning iteration)" in line
    second = tracker.update("t0", drive_result(2, 200, 2.0, None, warmup=False))
    # The first learning iteration: compile and catch-up, 100 env steps in 100 s.
    third = tracker.update("t0", drive_result(3, 300, 102.0, 400, warmup=False))
    assert second.warmup is False and second.eta_s is None
    assert third.phase == "first" and third.eta_s is None
    # Training: 100 steps and 100 updates in 10 s: 0.1 s per env step from now on.
    fourth = tracker.update("t0", drive_result(4, 400, 112.0, 500, warmup=False))
    assert fourth.phase == "train"
    assert fourth.eta_s == pytest.approx(600 * 0.1)  # neither warm-up nor catch-up rates
    assert fourth.updates_per_s == pytest.approx(10.0)


def test_after_a_restore_rates_are_the_new_process_own():
    tracker = ProgressTracker(Budget(env_steps=20_000))
    for iteration in range(1, 11):  # the first process: 10 iterations of 1k env steps
        tracker.update("t0", history_row(iteration, since_restore=iteration))
    # --resume: a new process continues from iteration 10 (its time and steps restored).
    resumed = [tracker.update("t0", history_row(i, since_restore=i - 10)) for i in (11, 12, 13)]
    # Its first iteration's env steps only (1k in 102 s, not the 11k restored ones)...
    assert resumed[0].env_steps_per_s == pytest.approx(1000 / 102)
    assert resumed[0].updates_per_s == pytest.approx(1000 / 102)
    # ...and it compiles again: no ETA from it; the next ones give this process's rate.
    assert resumed[0].phase == "first" and resumed[0].eta_s is None
    assert resumed[1].phase == "train"
    assert resumed[1].eta_s == pytest.approx(8 * 60.0)
    assert resumed[2].eta_s == pytest.approx(7 * 60.0)


def history_row(iteration: int, since_restore: int) -> dict:
    """Iterations of 1k env steps: warm-up 1-2, learning from 3; a learning iteration takes
    60 s, the first of each process 102 s (compile)."""
    learning = iteration >= 3
    first = learning and (iteration == 3 or since_restore == 1)
    seconds = 102.0 if first else 60.0 if learning else 1.0
    total = sum(
        102.0 if i in (3, iteration - since_restore + 1) and i >= 3 else 60.0 if i >= 3 else 1.0
        for i in range(1, iteration + 1)
    )
    return {
        "training_iteration": iteration,
        "iterations_since_restore": since_restore,
        "num_env_steps_sampled_lifetime": 1000.0 * iteration,
        "time_total_s": total,
        "time_this_iter_s": seconds,
        "training": {"warmup": float(not learning), "update_steps": 1000 if learning else 0},
        "learners": {
            "default_policy": {"training": {"update_steps_lifetime": 1000 * max(iteration - 2, 0)}}
        },
        "env_runners": {"num_env_steps_sampled": 1000.0},
    }


#: Recorded runs of the headline file (tuned_examples/drive_halfcheetah.yaml, seed 0):
#: compiled, eager, and with one or two torch threads; each its own progress.csv.
RECORDED_RUNS = [
    "compiled_s0",
    "eager_s0",
    "main_process_cpus_1_s0_10k",
    "main_process_cpus_2_s0_10k",
]


@pytest.mark.parametrize("run", RECORDED_RUNS)
def test_eta_of_a_recorded_run_is_within_30_percent_from_the_second_learning_iteration(run):
    """Replays the iteration timings of a real run into the tracker; the run's budget is
    taken as the env steps it ended at, so that the true remaining time is known."""
    path = REPO / "benchmarks" / "results" / "headline_file" / run / "progress.csv"
    with open(path, newline="") as file:
        rows = [
            {key: float(value) for key, value in row.items() if _number(value)}
            for row in csv.DictReader(file)
        ]
    end_steps, end_time = rows[-1][keys.ENV_STEPS], rows[-1][keys.TIME_TOTAL]
    tracker = ProgressTracker(Budget(env_steps=end_steps))
    learning = 0
    checked = 0
    for row in rows:
        progress = tracker.update("t0", row)
        learning += progress.phase != "warmup"
        true_left = end_time - row[keys.TIME_TOTAL]
        if learning < 2:
            assert progress.eta_s is None, row  # warm-up, compile and catch-up: not known
        elif true_left > 0:
            assert progress.eta_s == pytest.approx(true_left, rel=0.3), row
            checked += 1
    assert checked >= 3


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_updates_per_second_come_from_the_learners_counter():
    tracker = ProgressTracker(Budget())
    tracker.update("t0", drive_result(1, 100, 10.0, 50, warmup=False))
    # Several training_steps in one iteration: 520 updates, while the last step's
    # training/update_steps would say far fewer.
    progress = tracker.update("t0", drive_result(2, 200, 20.0, 570, warmup=False))
    assert progress.updates_per_s == pytest.approx(52.0)


def test_an_unreachable_target_return_gets_one_warning():
    budget = Budget(target_return=100.0)
    tracker = ProgressTracker(budget)
    warnings = [
        tracker.update(
            "t0",
            drive_result(
                i,
                200 * i,
                float(i),
                10 * i,
                warmup=False,
                episode_return_max=-150.0,
                num_episodes_lifetime=5 * i,
            ),
        ).warning
        for i in range(1, 5)
    ]
    assert warnings[0] is None  # 5 episodes: too few to judge
    assert warnings[1].startswith("warning: the stop return 100 looks unreachable")
    assert warnings[2:] == [None, None]  # once
    reachable = ProgressTracker(Budget(target_return=-100.0))
    assert all(
        reachable.update(
            "t0",
            drive_result(
                i, 200 * i, float(i), 0, False, episode_return_max=-150.0, num_episodes_lifetime=50
            ),
        ).warning
        is None
        for i in range(1, 4)
    )
