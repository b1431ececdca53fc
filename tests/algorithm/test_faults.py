"""Fault injection on a private Ray instance: a killed or hung replay actor, bad env data.

Every test is bounded in time; the figures of the README's reliability table come from
these tests (T = 50 env steps per iteration).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import numpy as np
import pytest
import ray

from drive_rllib.algorithm.observations import ObservationShapeError
from drive_rllib.replay.actor import ReplayUnavailableError
from tests.algorithm import faulty_env
from tests.algorithm.helpers import MODULE_ID, learner_module_states

pytestmark = pytest.mark.ray

T = 50


@pytest.fixture(scope="module", autouse=True)
def ship_faulty_env():
    """Workers get the faulty env's module by value (they may not import tests/)."""
    ray.cloudpickle.register_pickle_by_value(faulty_env)
    yield
    ray.cloudpickle.unregister_pickle_by_value(faulty_env)


def test_a_killed_replay_actor_is_restarted_from_its_snapshot(ray_instance, tiny_config):
    algo = tiny_config(num_env_runners=1, replay_snapshot_interval=2).build_algo()
    try:
        for _ in range(3):  # the snapshot is written after iteration 2 (2 T rows)
            result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] == 3 * T
        old_pid = ray.get(algo.replay_actor.pid.remote())
        os.kill(old_pid, signal.SIGKILL)

        start = time.monotonic()
        result = algo.train()
        seconds = time.monotonic() - start
        assert seconds < 60, f"the iteration after the kill took {seconds:.0f} s"
        assert ray.get(algo.replay_actor.pid.remote(), timeout=30) != old_pid
        # Iteration 3's rows came after the snapshot: they are the ones lost, counted once.
        assert result["replay/restarts"] == 1
        assert result["replay/rows_lost"] == T
        size = ray.get(algo.replay_actor.size.remote())
        assert size == 2 * T + T
        # The counter counts rows that reached the replay: stored ones plus lost ones.
        assert result["num_env_steps_sampled_lifetime"] == size + T == 4 * T
        # The healthy EnvRunner kept running: its pushes were retried on the new actor.
        assert algo.env_runner_group.num_remote_worker_restarts() == 0
        assert result["training/update_steps"] > 0
        print(f"\nreplay kill: next iteration {seconds:.1f} s, rows lost {T} of {4 * T}")
    finally:
        algo.stop()


def test_a_hung_replay_actor_fails_with_one_clear_error(ray_instance, tiny_config):
    timeout = 5
    algo = tiny_config(num_env_runners=1, replay_timeout_s=timeout).build_algo()
    pid = ray.get(algo.replay_actor.pid.remote())
    try:
        algo.train()
        os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(ReplayUnavailableError, match=rf"did not answer `\w+` within {timeout}"):
            algo.train()
        seconds = time.monotonic() - start
        # One timeout in the runner's push, one in the driver's next call.
        assert seconds < 2 * timeout + 30, f"the hang was reported after {seconds:.0f} s"
        assert algo.env_runner_group.num_remote_worker_restarts() == 0
        print(f"\nreplay SIGSTOP: error after {seconds:.1f} s (replay_timeout_s={timeout})")
    finally:
        os.kill(pid, signal.SIGCONT)
        algo.stop()


def test_bad_env_values_are_dropped_row_by_row_and_the_run_goes_on(ray_instance, tiny_config):
    faults = {"nan_obs": [10], "inf_reward": [30], "huge_reward": [60], "huge_obs": [80]}
    config = tiny_config(num_env_runners=0).environment(
        faulty_env.FaultyPendulum, env_config=faults
    )
    algo = config.build_algo()
    try:
        before = learner_module_states(algo)[0]
        for _ in range(4):
            result = algo.train()
        stored = ray.get(algo.replay_actor.get_state.remote())
        # One row per fault: the NaN / 1e25 observation ended its episode (the next row
        # comes from a reset), the inf / 1e30 reward spoiled only its own row.
        assert result["replay/rows_rejected"] == 4
        assert stored["size"] == 4 * T - 4
        assert result["num_env_steps_sampled_lifetime"] == stored["size"]
        for name in ("obs", "reward", "next_obs", "action"):
            assert np.isfinite(stored[name]).all(), name
        assert np.abs(stored["reward"]).max() < 1e6
        after = learner_module_states(algo)[0]
        for key, value in after.items():
            if value.dtype.kind == "f":
                assert np.isfinite(value).all(), key
        assert after["nets.obs_normalizer.count"] > before["nets.obs_normalizer.count"]
        assert result["learners"][MODULE_ID]["training/skipped_steps"] == 0
    finally:
        algo.stop()


def test_too_many_bad_rows_fail_the_run_with_a_clear_error():
    from drive_rllib.algorithm.drive import check_rejected_share

    check_rejected_share(10, 1990, 0.01)  # 0.5 % of 2,000 rows: fine
    check_rejected_share(50, 500, 0.01)  # 9 % but too few rows to judge yet
    with pytest.raises(RuntimeError, match="more than max_rejected_share=0.01"):
        check_rejected_share(30, 1970, 0.01)


def test_a_raising_env_is_recreated_and_the_run_is_not_starved(ray_instance, tiny_config, caplog):
    """step() raises at every 70th call: each failure recreates the env and drops the
    unfinished episode; every iteration still collects its T steps. The EnvRunner logs the
    first exception once, the driver says once that env steps raised."""
    config = tiny_config(num_env_runners=0).environment(
        faulty_env.RaisingPendulum, env_config={"raise_every": 70}
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.WARNING, logger="drive_rllib"):
            for _ in range(4):
                result = algo.train()
        messages = [record.getMessage() for record in caplog.records]
        assert sum("environment step failed" in m for m in messages) == 1, messages
        assert sum("env step(s) raised so far" in m for m in messages) == 1, messages
        # 4 iterations of T = 50 stored steps: 200 stored, plus the calls that raised.
        assert result["num_env_steps_sampled_lifetime"] == 4 * T
        assert ray.get(algo.replay_actor.size.remote()) == 4 * T
        failures = result["env_runners"]["num_env_step_failures"]
        assert failures == (4 * T + failures) // 70
        print(f"\n{failures} env step failures in 4 iterations, 0 of {4 * T} steps lost")
    finally:
        algo.stop()


@pytest.mark.parametrize("num_env_runners", [0, 1])
def test_a_wrong_observation_shape_ends_the_run_with_one_error(
    ray_instance, tiny_config, num_env_runners
):
    """4 entries where the observation_space says 3: one error naming the env and both
    shapes, raised in the driver, whether the runner is local or remote (RLlib would
    recreate the env, or restart the remote runner, forever)."""
    config = tiny_config(num_env_runners=num_env_runners).environment(faulty_env.WrongShapePendulum)
    algo = config.build_algo()
    try:
        started = time.monotonic()
        with pytest.raises(ObservationShapeError) as raised:
            algo.train()
        assert str(raised.value) == (
            "The env WrongShapePendulum reset() returned an observation of the wrong shape: "
            "expected shape (3,) (float32, the observation_space), received shape (4,) (float32)"
        )
        assert algo.num_rows_counted == 0
        # Remote: the failed sample() returns once Ray notices the runner's exit (~60 s).
        assert time.monotonic() - started < 120
    finally:
        algo.stop()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
