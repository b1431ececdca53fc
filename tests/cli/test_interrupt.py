"""Ctrl-C during `rllib train` writes a checkpoint; `--resume` continues from it (subprocesses)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from drive_rllib import keys
from drive_rllib.algorithm.checkpoint import newest_complete_checkpoint
from tests.cli.conftest import REPO, rllib
from tests.cli.test_commands import TINY

pytestmark = pytest.mark.ray

#: TINY with iterations long enough (about a second each on a quiet 2-core machine) for
#: the SIGINT to land mid-run: with TINY's 5 updates all iterations can end before
#: Tune's result.json shows the second one. Tune writes result.json late: on a fast
#: machine the second row showed only as iteration 7 ran, so 8 iterations ended before
#: the SIGINT could stop them; 20 leave room.
CONFIG = {**TINY, "updates_per_iteration": 150}
T = CONFIG["env_steps_per_iteration"]
ITERATIONS = 20


def rows(trial: pathlib.Path) -> list[dict]:
    path = trial / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_ctrl_c_writes_a_checkpoint_and_resume_continues_the_history(tmp_path):
    args = [
        "train",
        "--algo",
        "DRIVE",
        "--env",
        "Pendulum-v1",
        "--config",
        json.dumps(CONFIG),
        "--stop",
        json.dumps({"training_iteration": ITERATIONS}),
        "--storage-path",
        str(tmp_path),
    ]
    ray_tmpdir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_TMPDIR=ray_tmpdir,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "drive_rllib", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    experiment = tmp_path / "DRIVE_Pendulum-v1"
    try:
        deadline = time.monotonic() + 900
        trial = None
        while time.monotonic() < deadline and process.poll() is None:
            trials = [path.parent for path in experiment.glob("*/result.json")]
            if trials and len(rows(trials[0])) >= 2:
                trial = trials[0]
                break
            time.sleep(0.2)
        assert trial is not None, "no second iteration within 900 s"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(ray_tmpdir, ignore_errors=True)
    describe = f"--- stdout\n{stdout}\n--- stderr\n{stderr[-4000:]}"
    assert process.returncode == 130, describe
    assert "SIGINT: finishing the current iteration" in stdout, describe

    # The checkpoint holds the last logged iteration: nothing was lost.
    logged = rows(trial)
    newest = newest_complete_checkpoint(str(trial))
    assert newest is not None, describe
    interrupted_at = newest[1]["iteration"]
    assert 2 <= interrupted_at == len(logged) < ITERATIONS, describe
    assert newest[1]["env_steps"] == interrupted_at * T
    # The hint names a command that works: the --env run wrote its experiment file.
    experiment_file = experiment / "rllib_experiment.yaml"
    assert f"Resume: rllib train file {experiment_file} --resume" in stdout, describe

    resumed = rllib("train", "file", experiment_file, "--resume")
    assert resumed.returncode == 0, resumed.describe()
    assert (
        f"continues from {pathlib.Path(newest[0]).name}: iteration {interrupted_at}, "
        f"{interrupted_at * T} env steps" in resumed.stdout
    ), resumed.describe()
    history = rows(trial)
    assert [row["training_iteration"] for row in history] == list(range(1, ITERATIONS + 1))
    # Env steps and the replay continue from the checkpoint, no second warm-up.
    assert [row["num_env_steps_sampled_lifetime"] for row in history] == [
        T * (i + 1) for i in range(ITERATIONS)
    ]
    assert [row[keys.REPLAY_SIZE] for row in history] == [T * (i + 1) for i in range(ITERATIONS)]
    print(f"\nCtrl-C after {interrupted_at} iterations: checkpoint at {interrupted_at}, 0 lost")
