"""Checkpoints restore weights, optimizers, statistics and the replay contents; training goes on."""

from __future__ import annotations

import numpy as np
import pytest
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm

from drive_rllib.algorithm import DRIVE
from drive_rllib.algorithm.drive import REPLAY_FILE
from drive_rllib.replay.storage import FIELDS
from tests.algorithm.helpers import (
    MODULE_ID,
    assert_same_optimizer_states,
    learner_module_states,
    learner_optimizer_states,
)

pytestmark = pytest.mark.ray

T, C = 50, 4


def test_checkpoint_round_trip_and_training_continues(
    ray_instance, tiny_config, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    algo = tiny_config(num_env_runners=1).build_algo()
    try:
        for _ in range(2):
            result = algo.train()
        sampled = result["num_env_steps_sampled_lifetime"]
        # A relative path works too (RLlib's own save_to_path needs an absolute one).
        path = algo.save_to_path("checkpoint")
        replay_state = ray.get(algo.replay_actor.get_state.remote())
        module_state = learner_module_states(algo)[0]
        optimizer_state = learner_optimizer_states(algo)[0]
    finally:
        algo.stop()
    assert path == str(tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint" / REPLAY_FILE).is_file()
    assert replay_state["size"] == sampled == 2 * T
    # The entropy floor's weight moved away from its initial 1.0 (log 0).
    assert module_state["nets.entropy_floor.log_weight"] != 0.0

    restored = Algorithm.from_checkpoint(path)
    try:
        assert isinstance(restored, DRIVE)
        assert_restored(restored, replay_state, module_state)
        assert_same_optimizer_states(learner_optimizer_states(restored)[0], optimizer_state)
        # The runners act with the restored pi_theta and normaliser.
        (runner_state,) = restored.env_runner_group.foreach_env_runner(
            lambda runner: {k: v.numpy().copy() for k, v in runner.module.state_dict().items()},
            local_env_runner=False,
        )
        for key, value in runner_state.items():
            np.testing.assert_array_equal(value, module_state[key], err_msg=key)

        # Training continues from where it stopped: no second warm-up, no lost rows.
        result = restored.train()
        assert result["num_env_steps_sampled_lifetime"] == sampled + T
        assert result["training/warmup"] == 0.0
        assert result["training/update_steps"] == C
        assert ray.get(restored.replay_actor.size.remote()) == sampled + T
        # The update counter (it schedules the ensemble ranking) was restored too.
        assert result["learners"][MODULE_ID]["training/update_steps_lifetime"] == 3 * C

        # Restoring into a running algorithm replaces what it learned and collected since.
        restored.restore_from_path("checkpoint")
        assert_restored(restored, replay_state, module_state)
        assert restored.train()["num_env_steps_sampled_lifetime"] == sampled + T
    finally:
        restored.stop()


def assert_restored(algo, replay_state, module_state) -> None:
    """The replay contents, counters and sampler state; weights, psi_bar, normaliser
    sums, elites, held-out errors, entropy weight and update counter."""
    restored_replay = ray.get(algo.replay_actor.get_state.remote())
    for name in FIELDS:
        np.testing.assert_array_equal(restored_replay[name], replay_state[name], err_msg=name)
    for name in ("size", "cursor", "total_added", "rng_state"):
        assert restored_replay[name] == replay_state[name], name
    restored_module = learner_module_states(algo)[0]
    assert set(restored_module) == set(module_state)
    for key, value in module_state.items():
        np.testing.assert_array_equal(restored_module[key], value, err_msg=key)


def test_a_restored_run_continues_the_rngs_and_does_not_repeat_the_first_episode(
    ray_instance, tiny_config, tmp_path
):
    algo = tiny_config(num_env_runners=0).build_algo()
    try:
        algo.train()
        path = algo.save_to_path(tmp_path / "checkpoint")
        # The local Learner lives in this process: its RNG state is torch's global one.
        saved_rng = torch.get_rng_state().clone()
    finally:
        algo.stop()
    torch.manual_seed(12345)

    restored = Algorithm.from_checkpoint(path)
    try:
        assert torch.equal(torch.get_rng_state(), saved_rng)
        restored.train()
        obs = ray.get(restored.replay_actor.get_state.remote())["obs"]
        # Row 0 is the run's first reset, row T the first reset after the restore: the same
        # env seed would give the same initial state.
        assert obs.shape[0] == 2 * T
        assert not np.allclose(obs[T], obs[0])
    finally:
        restored.stop()


CRASHING_SAVE = """
import os, sys, time
import ray
from ray.rllib.algorithms.algorithm import Algorithm
import drive_rllib.algorithm.drive as drive
from tests.algorithm.conftest import TINY_TRAINING
from drive_rllib.algorithm import DRIVEConfig

part, first, second = sys.argv[1:4]
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
config = (
    DRIVEConfig().environment("Pendulum-v1").debugging(seed=0).training(**TINY_TRAINING)
)
algo = config.build_algo()
algo.train()
algo.save_to_path(first)
algo.train()

def hang(where):
    print("KILL ME", where, flush=True)
    time.sleep(600)

if part == "rllib":
    rllib_save = Algorithm.save_to_path
    def save_rllib_then_hang(self, path, **kwargs):
        rllib_save(self, path, **kwargs)
        hang(path)
    Algorithm.save_to_path = save_rllib_then_hang
else:
    def write_half_a_replay_then_hang(replay, checkpoint, *args):
        with open(os.path.join(checkpoint, "replay.npz"), "wb") as file:
            file.write(b"PK half a file")
        hang(checkpoint)
    drive.save_replay = write_half_a_replay_then_hang
algo.save_to_path(second)
"""


@pytest.mark.parametrize("part, into", [("rllib", "a new folder"), ("replay", "the same folder")])
def test_a_save_killed_midway_leaves_the_previous_checkpoint_loadable(
    ray_instance, tmp_path, part, into
):
    import os
    import signal
    import subprocess
    import sys

    from drive_rllib.algorithm.checkpoint import newest_complete_checkpoint, read_marker
    from tests.cli.conftest import REPO

    first = tmp_path / "checkpoint_000001"
    second = first if into == "the same folder" else tmp_path / "checkpoint_000002"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_SAVE, part, str(first), str(second)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("KILL ME"), f"the child ended before its save: {line!r}"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=120)

    assert read_marker(str(first))["iteration"] == 1
    assert not (tmp_path / "checkpoint_000002").exists()
    assert newest_complete_checkpoint(str(tmp_path))[0] == str(first)
    restored = Algorithm.from_checkpoint(str(first))
    try:
        assert ray.get(restored.replay_actor.size.remote()) == T
        # Training continues from the complete checkpoint's rows and counters.
        assert restored.train()["num_env_steps_sampled_lifetime"] == 2 * T
    finally:
        restored.stop()
