"""A trial's progress.csv across resumes, and the lock of an experiment folder (no Ray)."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import socket
import subprocess
import sys

import pandas as pd
import pytest

from drive_rllib.cli import history
from drive_rllib.cli.experiments import CLIError
from tests.cli.conftest import rllib

# Iteration 1 before the replay reported its size; iterations 2-3 after a resume.
RESULTS = [
    {"training_iteration": 1, "env_steps": 50, "config": {"h": 5}},
    {"training_iteration": 2, "env_steps": 100, "replay": {"size": 100.0}, "loss": 0.5},
    {"training_iteration": 3, "env_steps": 150, "replay": {"size": 150.0}, "loss": 0.25},
]


def broken_trial(folder) -> str:
    """A trial folder in the shape Tune 2.60 leaves after a resume: the first run's header
    (2 columns), its row, then the resumed rows with 4 columns and no header."""
    trial_dir = folder / "DRIVE_a_00000"
    trial_dir.mkdir()
    (trial_dir / "params.json").write_text("{}")
    with open(trial_dir / "result.json", "w") as file:
        file.writelines(json.dumps(result) + "\n" for result in RESULTS)
    (trial_dir / "progress.csv").write_text(
        "training_iteration,env_steps\n1,50\n2,100,100.0,0.5\n3,150,150.0,0.25\n"
    )
    return str(trial_dir)


def test_tune_leaves_a_progress_file_pandas_cannot_read(tmp_path):
    trial_dir = broken_trial(tmp_path)
    with pytest.raises(pd.errors.ParserError, match="Expected 2 fields in line 3, saw 4"):
        pd.read_csv(os.path.join(trial_dir, "progress.csv"))


def test_a_resumed_progress_file_is_one_table_with_every_column_by_name(tmp_path):
    trial_dir = broken_trial(tmp_path)
    history.rebuild_progress_files(str(tmp_path))
    table = pd.read_csv(os.path.join(trial_dir, "progress.csv"))
    assert list(table.columns) == ["training_iteration", "env_steps", "replay/size", "loss"]
    assert table["training_iteration"].tolist() == [1, 2, 3]
    assert table["replay/size"].tolist()[1:] == [100.0, 150.0]
    assert pd.isna(table["replay/size"][0])
    with open(os.path.join(trial_dir, "progress.csv"), newline="") as file:
        lines = list(csv.reader(file))
    assert len(lines) == 4 and all(len(line) == 4 for line in lines)


def test_a_trial_without_results_keeps_its_progress_file(tmp_path):
    (tmp_path / "progress.csv").write_text("a\n1\n")
    assert not history.rebuild_progress(str(tmp_path))
    assert (tmp_path / "progress.csv").read_text() == "a\n1\n"


def test_a_second_run_into_a_locked_folder_refuses_and_the_lock_goes_at_exit(tmp_path):
    folder = str(tmp_path / "experiment")
    with history.experiment_locks([folder]) as notes:
        assert notes == []
        lock = os.path.join(folder, history.LOCK_FILE)
        assert pathlib.Path(lock).read_text().split() == [str(os.getpid()), socket.gethostname()]
        with pytest.raises(CLIError, match=rf"another rllib train \(PID {os.getpid()} on "):
            history.acquire_lock(folder)
    assert not os.path.exists(lock)


def test_a_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(finished.stdout)
    (tmp_path / history.LOCK_FILE).write_text(f"{dead} {socket.gethostname()}\n")
    note = history.acquire_lock(str(tmp_path))
    assert note == (
        f"took over the lock {tmp_path / history.LOCK_FILE} of PID {dead}, which is no "
        "longer running"
    )
    history.release_lock(str(tmp_path))
    assert not (tmp_path / history.LOCK_FILE).exists()


def test_a_lock_held_on_another_host_refuses(tmp_path):
    (tmp_path / history.LOCK_FILE).write_text("1 another-host\n")
    with pytest.raises(CLIError, match="PID 1 on another-host"):
        history.acquire_lock(str(tmp_path))


def test_rllib_train_into_a_locked_folder_refuses_before_ray_starts(tmp_path):
    (tmp_path / "a.yaml").write_text("a:\n  run: DRIVE\n  env: Pendulum-v1\n")
    folder = tmp_path / "results" / "a"
    folder.mkdir(parents=True)
    (folder / history.LOCK_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    run = rllib("train", "file", "a.yaml", "--storage-path", "results", cwd=tmp_path)
    assert run.returncode == 2, run.describe()
    (line,) = [line for line in run.stderr.splitlines() if line.strip()]
    assert line.startswith(f"rllib: error: another rllib train (PID {os.getpid()} on "), line
    assert not run.ray_started
    assert (folder / history.LOCK_FILE).exists()  # the holder's lock stays
