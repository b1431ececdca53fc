"""DRIVE's replay as Parquet with RLlib: export, import, and RLlib's own readers and writers.

(a) a live replay exported and imported into a new run equals it row for row;
(b) RLlib's BC trains on DRIVE's export through ``offline_data(input_=...)``;
(c) DRIVE starts from what RLlib's SAC recorded with ``output=``;
(d) bad datasets: a NaN row is dropped and counted, a missing column or a wrong
shape is one clear error and no run starts. Plus ``output=`` failing in
validate() and ``rllib export-experience`` on a checkpoint.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from drive_rllib import keys
from drive_rllib.replay import parquet
from drive_rllib.replay.storage import FIELDS

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PENDULUM = parquet.ActionBounds.of([-2.0], [2.0])


def replay_rows(algo) -> dict[str, np.ndarray]:
    import ray

    return parquet.chronological_rows(ray.get(algo.replay_actor.get_state.remote()))


def test_output_fails_in_validate_with_one_line(tiny_config):
    config = tiny_config().offline_data(output="/tmp/somewhere")
    with pytest.raises(ValueError, match="export-experience") as error:
        config.validate()
    assert "export-experience" in str(error.value).splitlines()[0]


def test_export_import_round_trip_and_the_warmup_it_replaces(ray_instance, tiny_config, tmp_path):
    source = tiny_config(num_warmup_steps=100, env_steps_per_iteration=100).build_algo()
    try:
        source.train()
        source.train()  # 200 rows: the warm-up, then policy actions
        from drive_rllib.algorithm.offline import export_experience

        summary = export_experience(source, str(tmp_path / "live"), max_rows_per_file=64)
        original = replay_rows(source)
        checkpoint = source.save_to_path(str(tmp_path / "checkpoint"))
    finally:
        source.stop()
    assert summary.rows == 200 and len(summary.files) == 4
    assert np.abs(original["action"]).max() <= 1.0
    # Actions in the env's units: Pendulum's [-2, 2].
    exported = pq.read_table(str(tmp_path / "live")).column("actions").to_pylist()
    np.testing.assert_array_equal(np.array(exported), original["action"] * 2)

    # The same rows from the checkpoint's replay.npz, through the command line.
    from drive_rllib.cli import main

    with pytest.raises(SystemExit) as exit_status:
        main(["export-experience", checkpoint, str(tmp_path / "from_checkpoint")])
    assert exit_status.value.code == 0
    for name in ("obs", "actions", "rewards", "terminateds", "truncateds"):
        assert (
            pq.read_table(str(tmp_path / "from_checkpoint"))
            .column(name)
            .equals(pq.read_table(str(tmp_path / "live")).column(name))
        )

    # (a) 200 imported rows replace a warm-up of 150: the first iteration learns.
    config = tiny_config(num_warmup_steps=150, env_steps_per_iteration=50).offline_data(
        input_=str(tmp_path / "live")
    )
    algo = config.build_algo()
    try:
        imported = replay_rows(algo)
        for name in FIELDS:
            np.testing.assert_array_equal(imported[name], original[name], err_msg=name)
        result = algo.train()
        assert result[keys.WARMUP] == 0.0
        assert result[keys.REPLAY_ROWS_IMPORTED] == 200
        assert result["num_env_steps_sampled_lifetime"] == 50  # env steps, not dataset rows
        assert result[keys.REPLAY_SIZE] == 250
        updates = result["learners"]["default_policy"][keys.UPDATE_STEPS_LIFETIME]
        assert updates == 4  # C: no catch-up over the imported rows
    finally:
        algo.stop()


def test_rllib_bc_trains_on_drives_export(ray_instance, tmp_path):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(257, 3)).astype(np.float32)
    rows = {
        "obs": obs[:-1],
        "action": rng.uniform(-1, 1, size=(256, 1)).astype(np.float32),
        "reward": rng.normal(size=256).astype(np.float32),
        "next_obs": obs[1:],
        "terminated": np.zeros(256, bool),
        "truncated": (np.arange(256) % 100) == 99,
    }
    parquet.write_rows(rows, str(tmp_path / "data"), PENDULUM, max_rows_per_file=100)
    import gymnasium as gym
    from ray.rllib.algorithms.bc import BCConfig

    env = gym.make("Pendulum-v1")
    config = (
        BCConfig()
        .environment(
            observation_space=env.observation_space,
            action_space=env.action_space,
            normalize_actions=False,  # the export's actions are in the env's units
        )
        .offline_data(
            input_=[str(tmp_path / "data")],
            dataset_num_iters_per_learner=1,
            # One pre-learner actor: with the read task it fits the test's 2 CPUs.
            map_batches_kwargs={"concurrency": 1, "num_cpus": 1},
        )
        .training(train_batch_size_per_learner=64)
        .rl_module(model_config={"fcnet_hiddens": [8]})
        .evaluation(evaluation_interval=None)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    learner = result["learners"]["default_policy"]
    assert np.isfinite(learner["policy_loss"])
    assert result["learners"]["__all_modules__"]["num_env_steps_trained_lifetime"] >= 64


def test_drive_starts_from_rllib_sacs_recording(ray_instance, tiny_config, tmp_path):
    from ray.rllib.algorithms.sac import SACConfig

    recording = str(tmp_path / "sac")
    sac = (
        SACConfig()
        .environment("Pendulum-v1")
        .env_runners(num_env_runners=0)
        .training(num_steps_sampled_before_learning_starts=300, train_batch_size_per_learner=32)
        .rl_module(model_config={"fcnet_hiddens": [8]})
        .reporting(min_sample_timesteps_per_iteration=300)
        .offline_data(output=recording, output_write_episodes=False, output_max_rows_per_file=300)
        .build_algo()
    )
    try:
        sac.train()
    finally:
        sac.stop()
    # RLlib compresses obs / new_obs and stores the module's [-1, 1] actions.
    assert pq.read_table(recording).schema.field("obs").type == pa.string()

    config = tiny_config(num_warmup_steps=200).offline_data(
        input_=recording, actions_in_input_normalized=True
    )
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result[keys.REPLAY_ROWS_IMPORTED] >= 300
    assert result[keys.WARMUP] == 0.0
    assert result["learners"]["default_policy"][keys.UPDATE_STEPS_LIFETIME] > 0


def test_bad_datasets(ray_instance, tiny_config, tmp_path):
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(121, 3)).astype(np.float32)
    rows = {
        "obs": obs[:-1].copy(),
        "action": rng.uniform(-1, 1, size=(120, 1)).astype(np.float32),
        "reward": rng.normal(size=120).astype(np.float32),
        "next_obs": obs[1:].copy(),
        "terminated": np.zeros(120, bool),
        "truncated": np.zeros(120, bool),
    }
    rows["next_obs"][5, 1] = np.nan
    parquet.write_rows(rows, str(tmp_path / "nan"), PENDULUM)
    algo = (
        tiny_config(max_rejected_share=0.05).offline_data(input_=str(tmp_path / "nan")).build_algo()
    )
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result[keys.REPLAY_ROWS_IMPORTED] == 119
    assert result[keys.REPLAY_ROWS_REJECTED] == 1

    table = pq.read_table(str(tmp_path / "nan"))
    wide = table.set_column(
        table.schema.get_field_index("obs"),
        "obs",
        pa.array(np.zeros((120, 4), np.float32).tolist(), type=pa.list_(pa.float32(), 4)),
    )
    os.makedirs(tmp_path / "wide")
    # One good file first: an error in a later file must not leave the replay half-filled.
    pq.write_table(table, tmp_path / "wide" / "a.parquet")
    pq.write_table(wide, tmp_path / "wide" / "b.parquet")
    from drive_rllib.algorithm.offline import DatasetError

    # (A missing column: tests/replay/test_parquet.py, and the rollback below.)
    with pytest.raises(
        DatasetError, match=r"column 'obs' has rows of shape \(4,\); expected \(3,\)"
    ):
        tiny_config().offline_data(input_=str(tmp_path / "wide")).build_algo()


@pytest.mark.parametrize("held_before", [0, 30])
def test_a_failed_import_leaves_the_replay_as_it_was(tmp_path, held_before):
    from drive_rllib.algorithm.offline import DatasetError, _fill_replay
    from drive_rllib.replay.actor import ReplayActor

    rng = np.random.default_rng(2)
    rows = {
        "obs": rng.normal(size=(50, 3)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(50, 1)).astype(np.float32),
        "reward": rng.normal(size=50).astype(np.float32),
        "next_obs": rng.normal(size=(50, 3)).astype(np.float32),
        "terminated": np.zeros(50, bool),
        "truncated": np.zeros(50, bool),
    }
    parquet.write_rows(rows, str(tmp_path / "good"), PENDULUM)
    table = pq.read_table(str(tmp_path / "good"))
    os.makedirs(tmp_path / "bad")
    pq.write_table(table, tmp_path / "bad" / "a.parquet")
    pq.write_table(table.drop_columns(["new_obs"]), tmp_path / "bad" / "b.parquet")
    replay = ReplayActor(100, 3, 1, holdout_every=10, seed=0)
    if held_before:
        replay.push({name: array[:held_before] for name, array in rows.items()})
    before = replay.get_state()
    with pytest.raises(DatasetError, match="new_obs"):
        _fill_replay(replay, str(tmp_path / "bad"), 3, PENDULUM, {}, 0.01)
    after = replay.get_state()
    assert after["size"] == held_before and after["total_added"] == before["total_added"]
    for name in FIELDS:
        np.testing.assert_array_equal(after[name], before[name])
