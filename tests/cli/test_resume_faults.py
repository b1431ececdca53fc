"""A save that fails (disk full) and a damaged newest checkpoint never strand a run.

One run (subprocesses, as a user would): the save at iteration 6 fails with ENOSPC,
the run ends with one line naming the error; the newest checkpoint (iteration 4)
is then truncated. `--resume` skips it (saying why), continues from iteration 2,
and reaches the stop with each iteration in the history once. `rllib evaluate`
evaluates the checkpoint whose replay is damaged and refuses, in one line naming
the file, one whose weights are missing.
"""

from __future__ import annotations

import pytest

from tests.cli.conftest import result_rows as rows
from tests.cli.conftest import rllib, train_with_a_failing_save
from tests.cli.test_commands import TINY

pytestmark = pytest.mark.ray

T = TINY["env_steps_per_iteration"]
STOP = 8


def test_a_failed_save_and_a_damaged_checkpoint_still_resume(tmp_path):
    # The third save (iterations 2, 4, 6) finds the disk full.
    first = train_with_a_failing_save(tmp_path, TINY, STOP, checkpoint_freq=2, fail_at=6)
    flag = tmp_path / "fail_save_at"
    assert first.returncode == 1, first.describe()
    assert "FAILED: OSError: [Errno 28] No space left on device" in first.stdout, first.describe()
    assert not flag.exists(), first.describe()
    (trial,) = (tmp_path / "runs" / "DRIVE_Pendulum-v1").glob("DRIVE_*/")
    assert sorted(path.name for path in trial.glob("checkpoint_*")) == [
        "checkpoint_000000",
        "checkpoint_000001",
    ]
    # Damage the newest checkpoint as a full disk or a bad copy would.
    replay = trial / "checkpoint_000001" / "replay.npz"
    replay.write_bytes(replay.read_bytes()[:200])

    experiment_file = tmp_path / "runs" / "DRIVE_Pendulum-v1" / "rllib_experiment.yaml"
    resumed = rllib("train", "file", experiment_file, "--resume")
    assert resumed.returncode == 0, resumed.describe()
    skip_lines = [line for line in resumed.stdout.splitlines() if "skips" in line]
    assert len(skip_lines) == 1, resumed.describe()
    assert (
        "skips checkpoint_000001: replay.npz has 200 bytes where the save wrote" in (skip_lines[0])
    )
    assert f"continues from checkpoint_000000: iteration 2, {2 * T} env steps" in (
        resumed.stdout
    ), resumed.describe()
    # Iterations 3..6 ran twice in all; the history holds each iteration once.
    history = rows(trial)
    assert [row["training_iteration"] for row in history] == list(range(1, STOP + 1))
    assert [row["num_env_steps_sampled_lifetime"] for row in history] == [
        T * (i + 1) for i in range(STOP)
    ]
    print("\nfailed save at 6, damaged checkpoint at 4: resumed from 2, iterations 3-6 redone")

    # Evaluation needs the weights only: the damaged replay does not stop it.
    evaluated = rllib("evaluate", trial / "checkpoint_000001", "--episodes", "1")
    assert evaluated.returncode == 0, evaluated.describe()
    weights = next((trial / "checkpoint_000000").rglob("module_state.pkl"))
    weights.unlink()
    refused = rllib("evaluate", trial / "checkpoint_000000", "--episodes", "1")
    assert refused.returncode != 0, refused.describe()
    error_lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1, refused.describe()
    assert "module_state.pkl is missing" in error_lines[0], refused.describe()
