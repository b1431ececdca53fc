"""DRIVE under Tune: registered name, resource request, stop criteria, checkpoints."""

from __future__ import annotations

import pathlib

import pytest
from ray import tune

from drive_rllib.algorithm import DRIVE, register
from drive_rllib.algorithm.drive import REPLAY_FILE

pytestmark = pytest.mark.ray


def test_resource_request_fits_two_learners_on_two_cores(tiny_config):
    config = tiny_config(num_env_runners=0, num_learners=2)
    request = DRIVE.default_resource_request(config)
    # The driver (1 CPU) and two Learners of 0.5 CPU; the replay actor needs no bundle.
    assert request.required_resources == {"CPU": 2.0}
    config = tiny_config(num_env_runners=1, num_learners=0)
    assert DRIVE.default_resource_request(config).required_resources == {"CPU": 2.0}


def test_tuner_runs_drive_by_name_until_the_env_step_budget(ray_instance, tiny_config, tmp_path):
    register()
    tuner = tune.Tuner(
        "DRIVE",
        param_space=tiny_config(num_env_runners=1),
        run_config=tune.RunConfig(
            name="drive",
            storage_path=str(tmp_path),
            stop={"num_env_steps_sampled_lifetime": 100},
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
            verbose=0,
        ),
    )
    (result,) = tuner.fit()
    assert result.error is None
    assert result.metrics["num_env_steps_sampled_lifetime"] == 100
    assert result.metrics["training_iteration"] == 2
    assert result.metrics["replay/size"] == 100
    checkpoint = pathlib.Path(result.checkpoint.path)
    assert (checkpoint / REPLAY_FILE).is_file()
