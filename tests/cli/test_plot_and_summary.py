"""`rllib plot` on run folders written here, and the closing summary of `rllib train`."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from drive_rllib.cli.experiments import CLIError
from drive_rllib.cli.plot import (
    evaluation_labels,
    group_by_config,
    plot,
    read_curve,
    read_evaluations,
)
from drive_rllib.cli.train import TrialSummary, error_line, summary_lines
from tests.cli.conftest import REPO, rllib


def write_trial(folder, params: dict, rows: list[tuple[float, float | None]]) -> None:
    """A trial folder as Tune writes it: params.json and progress.csv (flattened keys)."""
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params))
    with open(folder / "progress.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "training_iteration",
                "num_env_steps_sampled_lifetime",
                "env_runners/episode_return_mean",
            ]
        )
        for iteration, (steps, value) in enumerate(rows, 1):
            writer.writerow([iteration, steps, "" if value is None else value])


@pytest.fixture
def run_dir(tmp_path):
    """Two configs (horizon 1 and 5); horizon 5 with two seeds. An evaluation file."""
    experiment = tmp_path / "exp"
    write_trial(
        experiment / "t0",
        {"env": "Pendulum-v1", "horizon": 5, "seed": 0},
        [(100, None), (200, -1000.0), (300, -800.0)],
    )
    write_trial(
        experiment / "t1",
        {"env": "Pendulum-v1", "horizon": 5, "seed": 1},
        [(100, -1200.0), (200, -900.0), (300, -600.0), (400, -500.0)],
    )
    write_trial(
        experiment / "t2",
        {"env": "Pendulum-v1", "horizon": 1, "seed": 0},
        [(100, -1300.0), (200, -1250.0)],
    )
    checkpoint = experiment / "t1" / "checkpoint_000000"
    checkpoint.mkdir()
    (checkpoint / "evaluation.json").write_text(
        json.dumps(
            {
                "checkpoint": str(checkpoint),
                "gamma": 0.99,
                "per_episode": [
                    {"predicted_mean": -50.0, "predicted_sigma": 5.0, "discounted_return": -55.0},
                    {"predicted_mean": -40.0, "predicted_sigma": 4.0, "discounted_return": -38.0},
                ],
            }
        )
    )
    return experiment


def test_seeds_of_one_config_are_aggregated(run_dir):
    curves = [read_curve(str(run_dir / name)) for name in ("t0", "t1", "t2")]
    assert list(curves[0].env_steps) == [200, 300]  # rows before the first episode are skipped
    groups = {group.label: group for group in group_by_config(curves)}
    assert set(groups) == {"horizon=5 (2 seeds)", "horizon=1 (1 seed)"}
    steps, mean, low, high = groups["horizon=5 (2 seeds)"].aggregate()
    assert list(steps) == [100, 200, 300, 400]
    # At 100 and 400 only seed 1 has data (no extrapolation of seed 0).
    np.testing.assert_allclose(mean, [-1200, -950, -700, -500])
    np.testing.assert_allclose(low, [-1200, -1000, -800, -500])
    np.testing.assert_allclose(high, [-1200, -900, -600, -500])


def test_plot_writes_a_png_with_returns_and_calibration(run_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the optional 'plot' extra is not installed")
    out = tmp_path / "plot.png"
    assert plot(str(run_dir), str(out)) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "2 configuration(s) from 3 trial(s), calibration of 1 evaluation(s)" in printed
    assert len(read_evaluations(str(run_dir))) == 1


def test_two_evaluations_of_one_checkpoint_get_two_legend_entries(run_dir, tmp_path):
    checkpoint = run_dir / "t1" / "checkpoint_000000"
    first = json.loads((checkpoint / "evaluation.json").read_text())
    second = dict(first, per_episode=[dict(e, seed=7) for e in first["per_episode"]])
    (checkpoint / "evaluation_20261206-100000_seed7.json").write_text(json.dumps(second))
    (checkpoint / "evaluation_20261206-110000_seed7.json").write_text(json.dumps(second))
    labels = evaluation_labels(read_evaluations(str(run_dir)))
    assert len(labels) == len(set(labels)) == 3
    assert labels[0] == "checkpoint_000000 (2 episodes)"  # evaluation.json: no seeds recorded
    assert labels[1].startswith("checkpoint_000000 (2 episodes, seed 7, evaluation_20261206-10")
    # Evaluations of different checkpoints keep the short label.
    other = dict(first, checkpoint="/x/checkpoint_000001")
    assert evaluation_labels([first, other]) == [
        "checkpoint_000000 (2 episodes)",
        "checkpoint_000001 (2 episodes)",
    ]
    pytest.importorskip("matplotlib", reason="the optional 'plot' extra is not installed")
    import matplotlib.pyplot as plt

    shown = []
    original = plt.Axes.legend

    def legend(axis, *args, **kwargs):
        shown.append([text.get_text() for text in original(axis, *args, **kwargs).get_texts()])

    plt.Axes.legend = legend
    try:
        plot(str(run_dir), str(tmp_path / "plot.png"))
    finally:
        plt.Axes.legend = original
    assert sorted(shown[-1]) == sorted([*labels, "obtained = predicted"])


def test_plot_of_a_folder_without_returns_is_an_error(tmp_path):
    with pytest.raises(CLIError, match="no returns to plot"):
        plot(str(tmp_path), None)
    with pytest.raises(CLIError, match="no such folder"):
        plot(str(tmp_path / "missing"), None)


def test_plot_without_matplotlib_says_how_to_install(run_dir, tmp_path):
    # A package named matplotlib that fails to import stands in for a missing one.
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    pythonpath = os.pathsep.join([str(shadow.parent), str(REPO)])
    run = rllib("plot", run_dir, extra_env={"PYTHONPATH": pythonpath}, timeout=120)
    assert run.returncode == 2, run.describe()
    assert run.stderr.strip().splitlines() == [
        "rllib: error: rllib plot needs matplotlib: pip install 'drive-rllib[plot]' (or pip install matplotlib)"
    ]


def summary(
    trial: str, error: str | None = None, checkpoint_return: float | None = None
) -> TrialSummary:
    return TrialSummary(
        experiment="exp",
        trial=trial,
        path=f"/runs/exp/{trial}",
        error=error,
        env_steps=600.0,
        episode_return=-500.0,
        checkpoint=None if error else f"/runs/exp/{trial}/checkpoint_000001",
        checkpoint_return=checkpoint_return,
        checkpoint_env_steps=600.0,
    )


def test_summary_names_the_best_checkpoint_last():
    lines, status = summary_lines(
        [summary("a", checkpoint_return=-900.0), summary("b", checkpoint_return=-300.0)], 12.0
    )
    assert status == 0
    assert (
        lines[-2]
        == "Best checkpoint: /runs/exp/b/checkpoint_000001  (return -300.0 at 600 env steps)"
    )
    assert lines[-1] == "Evaluate it: rllib evaluate /runs/exp/b/checkpoint_000001"
    assert "Results: /runs/exp   (plot them: rllib plot /runs/exp)" in lines


def test_a_failed_trial_gives_exit_status_1():
    lines, status = summary_lines(
        [summary("a", checkpoint_return=-900.0), summary("b", error="ValueError: boom")], 5.0
    )
    assert status == 1
    assert "exp trial b: FAILED: ValueError: boom  (see /runs/exp/b/error.txt)" in lines
    assert "1 of 2 trials finished in 5 s, 1 failed" in lines
    assert lines[-1] == "Evaluate it: rllib evaluate /runs/exp/a/checkpoint_000001"


def test_the_error_line_is_the_cause_not_the_wrapper():
    traceback = (
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "TypeError: unsupported operand type(s) for /: 'str' and 'float'\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        '  File "env_runner.py", line 291, in _try_env_step\n    raise RuntimeError from e\nRuntimeError\n'
    )
    assert (
        error_line(traceback) == "TypeError: unsupported operand type(s) for /: 'str' and 'float'"
    )
    assert error_line("something odd\n") == "something odd"
