"""Live progress of `rllib train`: one compact line per training iteration.

`ProgressTracker` turns Tune results into lines (pure, no Ray); `ProgressPrinter`
writes them: on a terminal one bar that updates in place, otherwise (CI logs,
pipes) one plain line per iteration. ``drive_rllib.cli.train`` feeds it from a
Tune callback.
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from drive_rllib import keys
from drive_rllib.keys import nested_get

#: Weight of the newest iteration in the smoothed seconds per env step and per iteration.
SMOOTHING = 0.3
BAR_WIDTH = 12


def finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def format_duration(seconds: float | None) -> str:
    """``"42s"``, ``"3m05s"``, ``"2h07m"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_count(value: float) -> str:
    """``1234567`` -> ``"1.23M"``, ``12345`` -> ``"12.3k"``, ``950`` -> ``"950"``."""
    value = float(value)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            scaled = value / size
            return f"{scaled:.3g}{suffix}" if abs(scaled) < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}"


@dataclass
class Budget:
    """The stop criteria the progress line measures against (None: not a criterion)."""

    env_steps: float | None = None
    iterations: float | None = None
    seconds: float | None = None
    target_return: float | None = None

    @classmethod
    def from_stop(cls, stop: dict[str, Any]) -> Budget:
        return cls(
            env_steps=stop.get(keys.ENV_STEPS),
            iterations=stop.get(keys.ITERATION),
            seconds=stop.get(keys.TIME_TOTAL),
            target_return=stop.get(keys.RETURN),
        )


@dataclass
class TrialProgress:
    """What one line says about one trial after one iteration."""

    trial: str
    iteration: int
    env_steps: float
    episode_return: float | None
    env_steps_per_s: float | None
    updates_per_s: float | None
    eta_s: float | None
    fraction: float | None  # of the budget that ends the trial first, when known


@dataclass
class ProgressTracker:
    """Per-trial rates and ETA from consecutive Tune results."""

    budget: Budget
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)  # trial -> (steps, time)
    _seconds_per_step: dict[str, float] = field(default_factory=dict)
    _seconds_per_iteration: dict[str, float] = field(default_factory=dict)

    def update(self, trial: str, result: dict[str, Any]) -> TrialProgress:
        """The progress of ``trial`` after ``result`` (a Tune result dict, nested or flat)."""
        env_steps = finite(nested_get(result, keys.ENV_STEPS)) or 0.0
        total_time = finite(result.get(keys.TIME_TOTAL)) or 0.0
        iteration = int(result.get(keys.ITERATION) or 0)
        iteration_time = finite(result.get(keys.TIME_THIS_ITERATION))
        previous_steps, previous_time = self._last.get(
            trial, (0.0, total_time - (iteration_time or 0.0))
        )
        self._last[trial] = (env_steps, total_time)
        elapsed = total_time - previous_time
        new_steps = env_steps - previous_steps

        env_steps_per_s = new_steps / elapsed if elapsed > 0 and new_steps >= 0 else None
        updates = finite(nested_get(result, keys.UPDATE_STEPS))
        updates_per_s = updates / elapsed if updates is not None and elapsed > 0 else None
        if elapsed > 0 and new_steps > 0:
            self._seconds_per_step[trial] = _smooth(
                self._seconds_per_step.get(trial), elapsed / new_steps
            )
        if elapsed > 0:
            self._seconds_per_iteration[trial] = _smooth(
                self._seconds_per_iteration.get(trial), elapsed
            )

        remaining: list[tuple[float, float]] = []  # (seconds left, fraction done)
        budget = self.budget
        if budget.env_steps and trial in self._seconds_per_step:
            left = max(budget.env_steps - env_steps, 0.0)
            remaining.append((left * self._seconds_per_step[trial], env_steps / budget.env_steps))
        if budget.iterations and trial in self._seconds_per_iteration:
            left = max(budget.iterations - iteration, 0.0)
            remaining.append(
                (left * self._seconds_per_iteration[trial], iteration / budget.iterations)
            )
        if budget.seconds:
            remaining.append((max(budget.seconds - total_time, 0.0), total_time / budget.seconds))
        eta, fraction = min(remaining) if remaining else (None, None)
        return TrialProgress(
            trial=trial,
            iteration=iteration,
            env_steps=env_steps,
            episode_return=finite(nested_get(result, keys.RETURN)),
            env_steps_per_s=env_steps_per_s,
            updates_per_s=updates_per_s,
            eta_s=eta,
            fraction=None if fraction is None else min(fraction, 1.0),
        )


def _smooth(previous: float | None, value: float) -> float:
    return value if previous is None else (1.0 - SMOOTHING) * previous + SMOOTHING * value


def format_progress(progress: TrialProgress, budget: Budget, bar: bool = False) -> str:
    """One compact line, e.g.

    ``it 12  3.1k/5k env steps  return -812.3  410 env steps/s  38 updates/s  ETA 5s  (trial 00000)``

    With ``bar`` (a terminal) a bar of the budget fraction and the ETA lead the
    line, so that a narrow terminal cuts the trial name first.
    """
    steps = format_count(progress.env_steps)
    if budget.env_steps:
        steps += f"/{format_count(budget.env_steps)}"
    episode_return = "-" if progress.episode_return is None else f"{progress.episode_return:.1f}"
    if budget.target_return is not None:
        episode_return += f" (stop at {budget.target_return:g})"
    fields = [
        f"it {progress.iteration}",
        f"{steps} env steps",
        f"return {episode_return}",
        f"{_rate(progress.env_steps_per_s)} env steps/s",
        f"{_rate(progress.updates_per_s)} updates/s",
    ]
    eta = f"ETA {format_duration(progress.eta_s)}"
    trial = f"(trial {progress.trial})"
    if not bar:
        return "  ".join([*fields, eta, trial])
    fraction = progress.fraction or 0.0
    filled = round(fraction * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%} {eta}  " + "  ".join(
        [*fields, trial]
    )


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 10 else format_count(value)


class ProgressPrinter:
    """Writes progress lines: an updating bar on a terminal, plain lines otherwise."""

    def __init__(
        self, budget: Budget, stream: TextIO | None = None, tty: bool | None = None
    ) -> None:
        self.budget = budget
        self.tracker = ProgressTracker(budget)
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._open_line = False

    def result(self, trial: str, result: dict[str, Any]) -> None:
        line = format_progress(self.tracker.update(trial, result), self.budget, bar=self.tty)
        if self.tty:
            width = shutil.get_terminal_size((120, 24)).columns
            self.stream.write("\r" + line[: width - 1] + "\x1b[K")
            self._open_line = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that stays (trial finished or failed): ends the updating bar first."""
        self.end_line()
        self.stream.write(text + "\n")
        self.stream.flush()

    def end_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False
