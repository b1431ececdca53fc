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

#: Weight of the newest iteration in the smoothed seconds per env step and per iteration:
#: high enough that the ETA follows a machine whose load changes within a run (0.3 lagged
#: 38-59% behind a headline run whose iterations sped up from 119 s to 72 s).
SMOOTHING = 0.5
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
    #: The ETA is an upper bound: a budget's rate is not measured yet (only the time
    #: budget, or another budget, bounds it).
    eta_at_most: bool = False
    #: A one-time warning about this trial (an unreachable stop criterion), or None.
    warning: str | None = None
    #: The phase the iteration's rates belong to: "warmup", "first" (the first learning
    #: iteration of the trial's process: the compile and the warm-up catch-up) or "train".
    phase: str = "train"


#: The Learner's update counter in a result (RLlib groups Learner metrics by module).
LEARNER_UPDATES = f"learners/default_policy/{keys.UPDATE_STEPS_LIFETIME}"
#: Env steps the EnvRunners sampled in the last iteration (RLlib's key).
ITERATION_ENV_STEPS = "env_runners/num_env_steps_sampled"
#: Tune's count of iterations run by the trial's current process (1 after a restore).
ITERATIONS_SINCE_RESTORE = "iterations_since_restore"
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
    #: `ITERATIONS_SINCE_RESTORE` of the last result (a drop: the process was restarted).
    since_restore: int = 0
    #: Whether the trial's current process has run a learning iteration (its first one
    #: compiles, and the run's first one catches up on the warm-up).
    learned: bool = False
    #: Whether the trial's current process continues a restored one.
    restored: bool = False


@dataclass
class ProgressTracker:
    """Per-trial rates and ETA from consecutive Tune results.

    Each iteration belongs to one phase, measured separately: ``warmup`` (random
    actions, no update step), ``first`` (the first learning iteration of the trial's
    process: it compiles the update step, and the run's first one also catches up on
    the warm-up's env steps, C/T x the warm-up steps) and ``train`` (the rest). The
    ETA comes from the ``train`` rate alone (seconds per env step, or per iteration,
    smoothed over ``train`` iterations only), so it is known from the second learning
    iteration of the process on; before that it is unknown (``ETA ?``), or bounded
    by a time budget (``ETA <=...``).

    Rates are per process: after a restore (``--resume``, or Tune restarting a failed
    trial, seen from Tune's ``iterations_since_restore``) the first result's env
    steps and updates are the iteration's own, not the restored totals, and the
    first learning iteration is a ``first`` again (the update step compiles anew).
    Updates/s come from the Learner's update counter (every ``training_step`` of an
    iteration counts, not only the last).
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
        since_restore = result.get(ITERATIONS_SINCE_RESTORE)
        since_restore = int(since_restore) if since_restore is not None else iteration
        state = self._trials.get(trial)
        if state is None or since_restore <= state.since_restore:
            # The first result of this process: only its own iteration counts.
            state = self._new_process(trial, state, total_time, iteration_time)
            restored = state.restored = since_restore < iteration
            own_steps = finite(nested_get(result, ITERATION_ENV_STEPS))
            new_steps = own_steps if restored else env_steps
            updates = finite(nested_get(result, keys.UPDATE_STEPS))
        else:
            new_steps = env_steps - state.steps
            if lifetime_updates is not None and (state.updates is not None or not state.restored):
                # (no counter before, in a process that started afresh: none were run)
                updates = lifetime_updates - (state.updates or 0.0)
            else:  # no Learner counter in the result: the last training_step's count
                updates = finite(nested_get(result, keys.UPDATE_STEPS))
        elapsed = total_time - state.time
        state.steps, state.time, state.since_restore = env_steps, total_time, since_restore
        state.updates = lifetime_updates

        if not updates:
            phase = "warmup"
        elif not state.learned:
            phase, state.learned = "first", True
        else:
            phase = "train"
        env_steps_per_s = (
            new_steps / elapsed
            if elapsed > 0 and new_steps is not None and new_steps >= 0
            else None
        )
        updates_per_s = updates / elapsed if updates is not None and elapsed > 0 else None
        if elapsed > 0 and new_steps:
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

        # (seconds left or None when not measured yet, fraction of the budget done)
        remaining: list[tuple[float | None, float]] = []
        budget = self.budget
        if budget.env_steps:
            left = max(budget.env_steps - env_steps, 0.0)
            rate = state.seconds_per_step.get("train")
            seconds = 0.0 if not left else None if rate is None else left * rate
            remaining.append((seconds, env_steps / budget.env_steps))
        if budget.iterations:
            left = max(budget.iterations - iteration, 0.0)
            rate = state.seconds_per_iteration.get("train")
            seconds = 0.0 if not left else None if rate is None else left * rate
            remaining.append((seconds, iteration / budget.iterations))
        if budget.seconds:
            remaining.append((max(budget.seconds - total_time, 0.0), total_time / budget.seconds))
        known = [(seconds, fraction) for seconds, fraction in remaining if seconds is not None]
        eta, fraction = min(known) if known else (None, None)
        if fraction is None and remaining:
            fraction = max(fraction for _, fraction in remaining)
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
            eta_at_most=eta is not None and eta > 0 and len(known) < len(remaining),
            warning=self._target_warning(state, result),
            phase=phase,
        )

    def _new_process(
        self,
        trial: str,
        previous: _TrialState | None,
        total_time: float,
        iteration_time: float | None,
    ) -> _TrialState:
        """The state of a trial whose (new) process reports its first result: rates start
        afresh; a one-time warning given before stays given."""
        state = _TrialState(0.0, total_time - (iteration_time or 0.0), None)
        if previous is not None:
            state.best_return, state.warned = previous.best_return, previous.warned
        self._trials[trial] = state
        return state

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

    During warm-up a ``warm-up`` tag follows the iteration. Until the training rate
    is measured (the second learning iteration) the ETA reads ``ETA ?`` with what it
    waits for, or ``ETA <=...`` when a time budget bounds it.

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
    if progress.eta_s is None and progress.fraction is not None:
        eta = "ETA ? (measured from the 2nd learning iteration)"
    else:
        eta = f"ETA {'<=' if progress.eta_at_most else ''}{format_duration(progress.eta_s)}"
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
