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
    #: Still taking random warm-up actions (no update step yet).
    warmup: bool = False
    #: The ETA is a lower bound (the post-warm-up rate is not measured yet).
    eta_at_least: bool = False
    #: A one-time warning about this trial (an unreachable stop criterion), or None.
    warning: str | None = None


#: The Learner's update counter in a result (RLlib groups Learner metrics by module).
LEARNER_UPDATES = f"learners/default_policy/{keys.UPDATE_STEPS_LIFETIME}"
#: Episodes a trial must have finished before its returns say a target is implausible.
EPISODES_BEFORE_WARNING = 10


@dataclass
class _TrialState:
    steps: float
    time: float
    updates: float | None
    seconds_per_step: dict[str, float] = field(default_factory=dict)  # phase -> s/step
    seconds_per_iteration: dict[str, float] = field(default_factory=dict)
    best_return: float | None = None
    warned: bool = False


@dataclass
class ProgressTracker:
    """Per-trial rates and ETA from consecutive Tune results.

    Rates are measured per phase: warm-up iterations (random actions, no update step)
    and training iterations (env steps and update steps). Each phase's seconds per
    env step is smoothed over its own iterations only, so the fast warm-up does not
    make the ETA of the slow training phase look short. ETA = warm-up steps left x
    the warm-up rate + the other steps left x the training rate; until a training
    iteration has been measured it is only a lower bound (shown ``ETA >...``).
    Updates/s come from the Learner's update counter (every ``training_step`` of
    an iteration counts, not only the last).
    """

    budget: Budget
    #: Env steps of random warm-up (DRIVE's num_warmup_steps; read from the result's
    #: config when None).
    num_warmup_steps: float | None = None
    _trials: dict[str, _TrialState] = field(default_factory=dict)

    def update(self, trial: str, result: dict[str, Any]) -> TrialProgress:
        """The progress of ``trial`` after ``result`` (a Tune result dict, nested or flat)."""
        env_steps = finite(nested_get(result, keys.ENV_STEPS)) or 0.0
        total_time = finite(result.get(keys.TIME_TOTAL)) or 0.0
        iteration = int(result.get(keys.ITERATION) or 0)
        iteration_time = finite(result.get(keys.TIME_THIS_ITERATION))
        lifetime_updates = finite(nested_get(result, LEARNER_UPDATES))
        state = self._trials.get(trial)
        if state is None:
            state = _TrialState(0.0, total_time - (iteration_time or 0.0), 0.0)
            self._trials[trial] = state
        elapsed = total_time - state.time
        new_steps = env_steps - state.steps
        if lifetime_updates is not None:
            updates = lifetime_updates - (state.updates or 0.0)
        else:  # no Learner counter in the result: the last training_step's count
            updates = finite(nested_get(result, keys.UPDATE_STEPS))
        state.steps, state.time = env_steps, total_time
        if lifetime_updates is not None:
            state.updates = lifetime_updates

        phase = "train" if updates else "warmup"
        env_steps_per_s = new_steps / elapsed if elapsed > 0 and new_steps >= 0 else None
        updates_per_s = updates / elapsed if updates is not None and elapsed > 0 else None
        if elapsed > 0 and new_steps > 0:
            state.seconds_per_step[phase] = _smooth(
                state.seconds_per_step.get(phase), elapsed / new_steps
            )
        if elapsed > 0:
            state.seconds_per_iteration[phase] = _smooth(
                state.seconds_per_iteration.get(phase), elapsed
            )
        warmup_steps = self.num_warmup_steps
        if warmup_steps is None:
            warmup_steps = finite((result.get("config") or {}).get("num_warmup_steps")) or 0.0
        in_warmup = phase == "warmup" and (
            finite(nested_get(result, keys.WARMUP)) == 1.0 or env_steps < warmup_steps
        )

        remaining: list[tuple[float, float, bool]] = []  # (seconds left, fraction, at least)
        budget = self.budget
        if budget.env_steps:
            left = max(budget.env_steps - env_steps, 0.0)
            warm_left = min(max(warmup_steps - env_steps, 0.0), left) if in_warmup else 0.0
            seconds, at_least = 0.0, False
            if warm_left:
                seconds += warm_left * state.seconds_per_step.get("warmup", 0.0)
            if left - warm_left > 0:
                rate = state.seconds_per_step.get("train")
                if rate is None:
                    at_least = True
                else:
                    seconds += (left - warm_left) * rate
            if "warmup" in state.seconds_per_step or "train" in state.seconds_per_step:
                remaining.append((seconds, env_steps / budget.env_steps, at_least))
        if budget.iterations and state.seconds_per_iteration:
            left = max(budget.iterations - iteration, 0.0)
            rate = state.seconds_per_iteration.get("train")
            at_least = rate is None and left > 0
            rate = rate if rate is not None else state.seconds_per_iteration["warmup"]
            remaining.append((left * rate, iteration / budget.iterations, at_least))
        if budget.seconds:
            remaining.append(
                (max(budget.seconds - total_time, 0.0), total_time / budget.seconds, False)
            )
        eta, fraction, at_least = min(remaining) if remaining else (None, None, False)
        episode_return = finite(nested_get(result, keys.RETURN))
        return TrialProgress(
            trial=trial,
            iteration=iteration,
            env_steps=env_steps,
            episode_return=episode_return,
            env_steps_per_s=env_steps_per_s,
            updates_per_s=updates_per_s,
            eta_s=eta,
            fraction=None if fraction is None else min(fraction, 1.0),
            warmup=in_warmup,
            eta_at_least=at_least,
            warning=self._target_warning(state, result),
        )

    def _target_warning(self, state: _TrialState, result: dict[str, Any]) -> str | None:
        """Once per trial: a target return the returns so far make implausible (every
        episode <= 0 while the target is > 0: rewards that are costs, as Pendulum's)."""
        target = self.budget.target_return
        best = finite(nested_get(result, "env_runners/episode_return_max"))
        if best is not None:
            state.best_return = best if state.best_return is None else max(best, state.best_return)
        episodes = finite(nested_get(result, "env_runners/num_episodes_lifetime")) or 0.0
        if (
            state.warned
            or target is None
            or target <= 0
            or state.best_return is None
            or state.best_return > 0
            or episodes < EPISODES_BEFORE_WARNING
        ):
            return None
        state.warned = True
        return (
            f"warning: the stop return {target:g} looks unreachable: no episode of "
            f"{episodes:.0f} has returned more than {state.best_return:.1f} (every return <= 0, "
            "the rewards look like costs); the run ends only on its other criteria or Ctrl-C"
        )


def _smooth(previous: float | None, value: float) -> float:
    return value if previous is None else (1.0 - SMOOTHING) * previous + SMOOTHING * value


def format_progress(progress: TrialProgress, budget: Budget, bar: bool = False) -> str:
    """One compact line, e.g.

    ``it 12  3.1k/5k env steps  return -812.3  410 env steps/s  38 updates/s  ETA 5s  (trial 00000)``

    During warm-up a ``warm-up`` tag follows the iteration, and ``ETA >5s`` marks an
    ETA that cannot count the (not yet measured) training phase.

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
    if progress.warmup:
        fields.insert(1, "warm-up")
    eta = f"ETA {'>' if progress.eta_at_least else ''}{format_duration(progress.eta_s)}"
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
        progress = self.tracker.update(trial, result)
        if progress.warning:
            self.message(f"{progress.warning} (trial {trial})")
        line = format_progress(progress, self.budget, bar=self.tty)
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
