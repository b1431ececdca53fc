"""`rllib sweep-report` on a results folder written here (no Ray): the numbers by hand,
the tables, the figures, and what happens without matplotlib.

The synthetic sweep (budget 400 env steps, returns reported every other iteration
as with Pendulum-v1's 200-step episodes), with ``last=1`` (final return = the last
reported return):

| H, N | trials | final | AUC over 0..400 |
|---|---|---|---|
| 1, 1 | -1000@200 -600@400; -800@200 -400@400 | -600, -400 | -900, -700 |
| 1, 2 | -1200@200 -1100@400; a failed one | -1100 | -1175 |
| 5, 1 | -300@200 (ASHA-stopped); -300@200 -100@400 | -300, -100 | -300, -250 |
| 5, 2 | -700@200 (interrupted); -900..-500 every 100 (progress.csv only) | -700, -500 | -700, -775 |

AUC by hand: the curve is constant before its first point and after its last one.
H1 N1 first seed: 200 x -1000 + 200 x (-1000 - 600) / 2 = -360,000 over 400 = -900.
"""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest

from drive_rllib.cli.experiments import CLIError
from drive_rllib.cli.plot import read_curve
from drive_rllib.cli.results import read_rows, trial_status
from drive_rllib.cli.sweep_report import (
    FIGURE_FILES,
    area_under_curve,
    budget_of,
    final_return,
    marginal_table,
    markdown,
    read_sweep,
    read_trial,
    report,
    sweep_table,
    trials_table,
)
from tests.cli.conftest import REPO, rllib
from tests.sweep.conftest import RETURN, STEPS, write_trial

PENDULUM = {"env": "Pendulum-v1", "updates_per_iteration": 100}
PNG = b"\x89PNG\r\n\x1a\n"


def every_other(*returns: float) -> list[tuple[float, float | None]]:
    """Rows at 100, 200, ... env steps with a return every second iteration."""
    rows: list[tuple[float, float | None]] = []
    for index, value in enumerate(returns):
        rows += [(200.0 * index + 100, None), (200.0 * index + 200, value)]
    return rows


@pytest.fixture
def run_dir(tmp_path):
    root = tmp_path / "drive-sweep-h-n"

    def trial(name, horizon, samples, rows, **kwargs):
        params = dict(PENDULUM, horizon=horizon, num_samples=samples)
        return write_trial(root / name, params, rows, **kwargs)

    trial("t00", 1, 1, every_other(-1000, -600))
    trial("t01", 1, 1, every_other(-800, -400))
    trial("t02", 1, 2, every_other(-1200, -1100))
    trial("t03", 1, 2, every_other(-5000), done=False, error=True)
    trial("t04", 5, 1, every_other(-300))  # stopped by ASHA at 200 env steps: done
    trial("t05", 5, 1, every_other(-300, -100))
    trial("t06", 5, 2, [*every_other(-700), (300.0, None)], done=False)  # interrupted
    trial(
        "t07",
        5,
        2,
        [(100, -900), (200, -800), (300, -700), (400, -500)],
        result_json=False,  # an old run: progress.csv only
    )
    return root


def test_area_under_curve_by_hand():
    steps, returns = np.array([200.0, 400.0]), np.array([-1000.0, -600.0])
    assert area_under_curve(steps, returns, 400) == pytest.approx(-900)
    # Held constant after the last point (a trial that stopped early) ...
    assert area_under_curve(np.array([200.0]), np.array([-300.0]), 400) == pytest.approx(-300)
    assert area_under_curve(steps, returns, 800) == pytest.approx((-360_000 - 400 * 600) / 800)
    # ... cut at the budget, and a point at step 0 adds no area before it.
    assert area_under_curve(steps, returns, 300) == pytest.approx(
        (-200_000 + 100 * (-1000 - 800) / 2) / 300
    )
    assert area_under_curve(np.array([0.0, 100.0]), np.array([-10.0, -30.0]), 100) == -20
    assert math.isnan(area_under_curve(np.array([]), np.array([]), 400))


def test_final_return_is_the_mean_of_the_last_k_reported_returns():
    returns = np.array([-900.0, -500.0, -300.0, -100.0])
    assert final_return(returns, 1) == -100
    assert final_return(returns, 2) == -200
    assert final_return(returns, 10) == pytest.approx(-450)
    assert math.isnan(final_return(np.array([]), 5))


def test_returns_come_from_result_json_when_progress_csv_lacks_them(run_dir):
    # Tune's progress.csv takes the first result's columns: no return column at all.
    with open(run_dir / "t00" / "progress.csv") as file:
        assert RETURN not in next(csv.reader(file))
    trial = read_trial(str(run_dir / "t00"))
    assert (trial.horizon, trial.num_samples, trial.status) == (1, 1, "finished")
    assert list(trial.env_steps) == [200, 400]
    assert list(trial.returns) == [-1000, -600]
    assert (trial.final_env_steps, trial.wall_time_s) == (400, 40)
    # `rllib plot` reads the same way (it found no return in such runs before).
    curve = read_curve(str(run_dir / "t00"))
    assert list(curve.returns) == [-1000, -600]


def test_trial_states_and_a_torn_last_line(run_dir):
    assert trial_status(str(run_dir / "t03")) == "failed"
    assert trial_status(str(run_dir / "t04")) == "finished"
    assert trial_status(str(run_dir / "t06")) == "unfinished"
    assert trial_status(str(run_dir / "t07")) == "finished"  # from progress.csv's done
    with open(run_dir / "t00" / "result.json", "a") as file:
        file.write('{"training_iteration": 5, "num_env_st')  # killed mid-write
    assert len(read_rows(str(run_dir / "t00"), [STEPS])) == 4


def test_iterations_replayed_after_a_resume_count_once(tmp_path):
    # Interrupted after iteration 2, resumed from the checkpoint of iteration 1: Tune
    # appends iteration 2 again (and the time of the lost run is not counted).
    trial = write_trial(tmp_path / "t", {"horizon": 1, "num_samples": 1}, every_other(-900))
    with open(trial / "result.json", "a") as file:
        for iteration, steps, value in ((2, 200, -700), (3, 300, None), (4, 400, -500)):
            runners = {"episode_return_mean": math.nan if value is None else value}
            result = {"training_iteration": iteration, STEPS: steps, "env_runners": runners}
            file.write(json.dumps(result | {"time_total_s": 10 * iteration, "done": False}) + "\n")
    read = read_trial(str(trial))
    assert list(read.env_steps) == [200, 400]
    assert list(read.returns) == [-700, -500]
    assert read.wall_time_s == 40


def test_sweep_table_by_hand(run_dir):
    trials = read_sweep(str(run_dir))
    assert budget_of(trials) == 400
    per_trial = trials_table(trials, 400, last=1)
    assert len(per_trial) == 8
    table = sweep_table(per_trial)
    assert [(row.H, row.N) for row in table.itertuples()] == [(1, 1), (1, 2), (5, 1), (5, 2)]
    assert list(table["seeds"]) == [2, 1, 2, 2]
    assert list(table["failed"]) == [0, 1, 0, 0]
    assert list(table["unfinished"]) == [0, 0, 0, 1]
    np.testing.assert_allclose(table["final_return_mean"], [-500, -1100, -200, -600])
    np.testing.assert_allclose(table["auc_return_mean"], [-800, -1175, -275, -737.5])
    spread = math.sqrt(2 * 100**2)  # sample std of two values 200 apart
    np.testing.assert_allclose(table["final_return_std"], [spread, np.nan, spread, spread])
    np.testing.assert_allclose(
        table["auc_return_std"], [spread, np.nan, math.sqrt(2 * 25**2), math.sqrt(2 * 37.5**2)]
    )
    np.testing.assert_allclose(table["wall_time_s_mean"], [40, 40, 30, (30 + 40) / 2])
    np.testing.assert_allclose(table["env_steps_mean"], [400, 400, 300, 350])
    text = markdown(table, per_trial, str(run_dir), 400, 1, [])
    assert "8 trials (6 finished, 1 failed, 1 unfinished) in 4 (H, N) cells" in text
    assert "Highest final return: H=5, N=1 (-200.0 ± 141.4)" in text
    assert "| H \\ N | 1 | 2 |" in text
    assert "| **1** | -500.0 ± 141.4 | -1100.0 |" in text
    assert "| 1 | 2 | 1 (1 failed, 0 unfinished) | -1100.0 | -1175.0 | 40 | 400 |" in text


def test_report_writes_tables_and_figures(run_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the optional 'plot' extra is not installed")
    out = tmp_path / "report"
    assert report(str(run_dir), str(out), last=1) == 0
    with open(out / "sweep.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(row["H"], row["N"], row["seeds"]) for row in rows] == [
        ("1", "1", "2"),
        ("1", "2", "1"),
        ("5", "1", "2"),
        ("5", "2", "2"),
    ]
    assert float(rows[0]["final_return_mean"]) == -500
    with open(out / "sweep_trials.csv") as file:
        assert len(list(csv.DictReader(file))) == 8
    text = (out / "sweep.md").read_text()
    for figure in FIGURE_FILES:
        assert (out / figure).read_bytes()[:8] == PNG, figure
        assert f"({figure})" in text
    assert "4 (H, N) cells from 8 trials, budget 400 env steps" in capsys.readouterr().out


def test_missing_h_or_n_is_drive_configs_default(tmp_path):
    write_trial(tmp_path / "run" / "t0", {"env": "Pendulum-v1", "horizon": 3}, every_other(-5))
    (trial,) = read_sweep(str(tmp_path / "run"))
    assert (trial.horizon, trial.num_samples) == (3, 1)


def test_bad_folders_are_errors(tmp_path):
    with pytest.raises(CLIError, match="no such folder"):
        read_sweep(str(tmp_path / "missing"))
    with pytest.raises(CLIError, match="no trial folders"):
        read_sweep(str(tmp_path))
    write_trial(tmp_path / "t0", {"horizon": {"grid_search": [1, 2]}, "num_samples": 1}, [(100, 1)])
    with pytest.raises(CLIError, match="no integer 'horizon'"):
        read_sweep(str(tmp_path))


def test_without_matplotlib_the_tables_are_written_and_the_command_says_what_to_install(
    run_dir, tmp_path
):
    # A package named matplotlib that fails to import stands in for a missing one.
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow.parent), str(REPO)])}
    run = rllib("sweep-report", run_dir, "--out", tmp_path / "a", extra_env=env, timeout=120)
    assert run.returncode == 2, run.describe()
    assert run.stderr.strip().splitlines() == [
        (
            "rllib: error: the figures of rllib sweep-report need matplotlib: pip install "
            "'drive-rllib[plot]' (or pip install matplotlib); --no-plots writes the tables only"
        )
    ]
    assert sorted(os.listdir(tmp_path / "a")) == ["sweep.csv", "sweep.md", "sweep_trials.csv"]
    assert "## Figures" not in (tmp_path / "a" / "sweep.md").read_text()
    assert not run.ray_started

    run = rllib("sweep-report", run_dir, "--out", tmp_path / "b", "--no-plots", extra_env=env)
    assert run.returncode == 0, run.describe()
    assert sorted(os.listdir(tmp_path / "b")) == ["sweep.csv", "sweep.md", "sweep_trials.csv"]


def test_sweep_trials_csv_has_one_row_per_trial_with_its_status(run_dir, tmp_path):
    report(str(run_dir), str(tmp_path), last=1, plots=False)
    with open(tmp_path / "sweep_trials.csv") as file:
        rows = {row["trial"]: row for row in csv.DictReader(file)}
    assert rows["t03"]["status"] == "failed"
    assert rows["t06"]["status"] == "unfinished"
    assert float(rows["t04"]["env_steps"]) == 200
    assert json.loads(rows["t00"]["auc_return"]) == pytest.approx(-900)


def test_marginals_pool_every_usable_trial_with_that_h_or_n(run_dir):
    # Usable trials (final, AUC) with last=1, from the module docstring's table:
    # H1: (-600, -900) (-400, -700) (-1100, -1175); the failed H1 N2 trial is left out.
    # H5: (-300, -300) (-100, -250) (-700, -700) (-500, -775).
    per_trial = trials_table(read_sweep(str(run_dir)), 400, last=1)
    by_h = marginal_table(per_trial, "H")
    assert list(by_h["H"]) == [1, 5]
    assert list(by_h["trials"]) == [3, 4]
    np.testing.assert_allclose(by_h["final_return_mean"], [-700, -400])
    np.testing.assert_allclose(by_h["auc_return_mean"], [-925, -506.25])
    np.testing.assert_allclose(by_h["final_return_std"][0], np.std([-600, -400, -1100], ddof=1))
    by_n = marginal_table(per_trial, "N")
    assert list(by_n["trials"]) == [4, 3]
    np.testing.assert_allclose(by_n["final_return_mean"], [-350, -2300 / 3])
    np.testing.assert_allclose(by_n["auc_return_mean"], [-537.5, -2650 / 3])
    text = markdown(sweep_table(per_trial), per_trial, str(run_dir), 400, 1, [])
    assert "## By H (trials pooled over N and seeds)" in text
    # Wall times 20, 40, 30, 40 s (write_trial: 10 s per iteration): 32.5, printed 32.
    assert "| 5 | 4 | -400.0 ± 258.2 | -506.2 ± 269.5 | 32 |" in text
