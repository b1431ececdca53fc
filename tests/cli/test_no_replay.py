"""`rllib train file ... --resume --no-replay` restores weights and optimizers only.

A run fails at its second save (ENOSPC, iteration 2 of 3), leaving the checkpoint at
iteration 1;
its ``replay.npz`` is then removed. A plain ``--resume`` skips that checkpoint
(it holds no replay) and starts again; ``--no-replay`` continues from it with
an empty replay, says so in one line, and reaches the stop with each iteration
in the history once.
"""

from __future__ import annotations

import pytest

from drive_rllib import keys
from tests.cli.conftest import result_rows as rows
from tests.cli.conftest import rllib, train_with_a_failing_save
from tests.cli.test_commands import TINY

pytestmark = pytest.mark.ray

T = TINY["env_steps_per_iteration"]
STOP = 3


def test_no_replay_resumes_weights_with_an_empty_replay(tmp_path):
    # The second save (iterations 1, 2) finds the disk full.
    first = train_with_a_failing_save(tmp_path, TINY, STOP, checkpoint_freq=1, fail_at=2)
    assert first.returncode == 1, first.describe()
    experiment = tmp_path / "runs" / "DRIVE_Pendulum-v1"
    (trial,) = experiment.glob("DRIVE_*/")
    (trial / "checkpoint_000000" / "replay.npz").unlink()
    experiment_file = experiment / "rllib_experiment.yaml"

    refused = rllib("train", "file", experiment_file, "--no-replay")
    assert refused.returncode == 2, refused.describe()
    assert "--no-replay applies to --resume only" in refused.stderr, refused.describe()

    resumed = rllib("train", "file", experiment_file, "--resume", "--no-replay")
    assert resumed.returncode == 0, resumed.describe()
    lines = [line for line in resumed.stdout.splitlines() if line.startswith("resume:")]
    assert len(lines) == 1, resumed.describe()
    (line,) = lines
    assert f"continues from checkpoint_000000: iteration 1, {T} env steps" in line
    assert line.endswith("; weights and optimizers only, the replay starts empty (--no-replay)")
    history = rows(trial)
    assert [row["training_iteration"] for row in history] == list(range(1, STOP + 1))
    assert [row["num_env_steps_sampled_lifetime"] for row in history] == [
        T * (i + 1) for i in range(STOP)
    ]
    # The replay restarts empty at iteration 2 and holds the new rows only.
    assert [row[keys.REPLAY_SIZE] for row in history] == [T, T, 2 * T]
