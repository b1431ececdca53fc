"""A tiny 2 x 2 sweep over H and N through `rllib train file`, interrupted with Ctrl-C
after the first iterations and continued with `--resume`, then `rllib sweep-report` on
its output; each command a subprocess with its own private Ray instance.

One sweep serves every test of this module (module-scoped fixtures): on two CPUs its
first two trials are interrupted mid-way (resumed from their checkpoints) and the other
two have not started (started by the resumed run).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pytest
import yaml

from drive_rllib.tiny import TINY_NETWORKS
from tests.cli.conftest import REPO, Run, rllib

pytestmark = pytest.mark.ray

#: Debug-sized DRIVE on Pendulum-v1: 100 env steps and 5 update steps per iteration, one
#: CPU per trial (two trials at once on two cores).
TINY = {
    **TINY_NETWORKS,
    "env_steps_per_iteration": 100,
    "updates_per_iteration": 5,
    "num_warmup_steps": 100,
    "model_eval_interval": 5,
    "num_env_runners": 0,
    "num_learners": 0,
    "num_cpus_for_main_process": 1,
}
GRID = {(1, 1), (1, 2), (2, 1), (2, 2)}
#: Each trial's stop (8 iterations). The first run is interrupted when a trial logs its 2nd
#: iteration, and the trials must all still be short of the stop by then: a trial whose
#: last result reaches the stop just before Tune handles Ctrl-C keeps a checkpoint at the
#: stop but no result marked done, and Tune's resume then runs it one more iteration.
#: With a stop of 4 iterations a CI machine hit that race (a trial ended at 500 env steps).
BUDGET = 800
PNG = b"\x89PNG\r\n\x1a\n"


def sweep_file(
    folder: pathlib.Path, name: str, budget: int, horizons: list[int], samples: list[int], **spec
) -> str:
    """An experiment file of a grid over horizon x num_samples (DRIVE's N), one seed each
    (Tune's num_samples: 1)."""
    experiment = {
        "run": "DRIVE",
        "env": "Pendulum-v1",
        "num_samples": 1,
        "stop": {"num_env_steps_sampled_lifetime": budget},
        "config": {
            "horizon": {"grid_search": horizons},
            "num_samples": {"grid_search": samples},
            **TINY,
        },
        **spec,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({name: experiment}, sort_keys=False))
    return str(path)


def trial_folders(experiment: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in experiment.iterdir() if (p / "params.json").exists())


def last_result(trial: pathlib.Path) -> dict:
    return json.loads((trial / "result.json").read_text().strip().splitlines()[-1])


def start_rllib(*args: str) -> tuple[subprocess.Popen, pathlib.Path]:
    """`python -m drive_rllib ARGS` in the background, set up as `tests.cli.conftest.rllib`."""
    ray_tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_TMPDIR=str(ray_tmpdir),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "drive_rllib", *map(str, args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, ray_tmpdir


@dataclass
class Interrupted:
    """The first, interrupted run of the sweep."""

    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-3000:]}"
        )


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("sweeps")


@pytest.fixture(scope="module")
def sweep_path(storage) -> str:
    return sweep_file(
        storage, "tiny-sweep", BUDGET, [1, 2], [1, 2], checkpoint_config={"checkpoint_frequency": 1}
    )


@pytest.fixture(scope="module")
def interrupted(sweep_path, storage) -> Interrupted:
    """`rllib train file` stopped by SIGINT (Ctrl-C) once a trial finished its 2nd iteration."""
    process, ray_tmpdir = start_rllib("train", "file", sweep_path, "--storage-path", storage)
    lines = []
    try:
        deadline = time.monotonic() + 300
        for line in process.stdout:
            lines.append(line)
            if line.startswith("it 2 ") or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        shutil.rmtree(ray_tmpdir, ignore_errors=True)
    return Interrupted(process.returncode, "".join(lines) + rest, stderr)


@pytest.fixture(scope="module")
def resumed(interrupted, sweep_path, storage) -> Run:
    return rllib("train", "file", sweep_path, "--storage-path", storage, "--resume", timeout=400)


def test_ctrl_c_saves_the_sweep_and_says_how_to_resume(interrupted, sweep_path, storage):
    assert interrupted.returncode == 130, interrupted.describe()
    last = interrupted.stdout.strip().splitlines()[-1]
    assert last.startswith("Interrupted: "), interrupted.describe()
    command = f"rllib train file {sweep_path} --storage-path {storage} --resume"
    assert last.endswith(f"Resume: {command}"), interrupted.describe()
    steps = re.findall(r"trial \w+: interrupted after (\d+) env steps", interrupted.stdout)
    assert steps, interrupted.describe()
    # Every interrupted trial is short of its stop (see BUDGET): the resume is tested.
    assert all(int(n) < BUDGET for n in steps), interrupted.describe()


def test_resume_runs_every_grid_point_to_the_end_in_the_same_trials(resumed, storage):
    assert resumed.returncode == 0, resumed.describe()
    assert "resuming" in resumed.stdout.splitlines()[0], resumed.describe()
    assert "4 of 4 trials finished" in resumed.stdout, resumed.describe()
    trials = trial_folders(storage / "tiny-sweep")
    assert len(trials) == 4, trials  # continued, not started again
    params = [json.loads((trial / "params.json").read_text()) for trial in trials]
    # The grid values reached the trials' configs.
    assert {(p["horizon"], p["num_samples"]) for p in params} == GRID
    for trial, p in zip(trials, params):
        assert f"horizon={p['horizon']},num_samples={p['num_samples']}" in trial.name
        result = last_result(trial)
        assert result["done"] and result["num_env_steps_sampled_lifetime"] == BUDGET
    assert f"rllib sweep-report {storage / 'tiny-sweep'}" in resumed.stdout


def test_sweep_report_of_the_sweep(resumed, storage, tmp_path):
    pytest.importorskip("matplotlib", reason="the optional 'plot' extra is not installed")
    assert resumed.returncode == 0, resumed.describe()
    report = rllib("sweep-report", storage / "tiny-sweep", "--out", tmp_path, timeout=120)
    assert report.returncode == 0, report.describe()
    assert not report.ray_started
    with open(tmp_path / "sweep.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 4
    assert {(int(row["H"]), int(row["N"])) for row in rows} == GRID
    for row in rows:
        assert row["seeds"] == "1" and row["failed"] == "0" and row["unfinished"] == "0"
        assert float(row["env_steps_mean"]) == BUDGET
        # Pendulum's returns lie in [-16.3 * 200, 0]; the first episode ends at 200 steps.
        assert -3300 < float(row["final_return_mean"]) < 0
        assert -3300 < float(row["auc_return_mean"]) < 0
        assert float(row["wall_time_s_mean"]) > 0
    text = (tmp_path / "sweep.md").read_text()
    assert "4 trials (4 finished, 0 failed, 0 unfinished) in 4 (H, N) cells" in text
    for name in ("heatmap", "curves_by_H", "curves_by_N", "wall_time"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG, name
