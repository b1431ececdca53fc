"""Replay rows as Parquet (`drive_rllib.replay.parquet`): round trips, units, bad datasets.

Ray-free: plain `ReplayStorage`s and pyarrow files in a temporary folder.
"""

from __future__ import annotations

import base64
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest

from drive_rllib.replay import parquet
from drive_rllib.replay.storage import FIELDS, ReplayStorage

OBS_DIM, ACTION_DIM = 3, 2
PENDULUM_LIKE = parquet.ActionBounds.of([-2.0, -2.0], [2.0, 2.0])


def episodes(num_rows: int, seed: int = 0, episode_length: int = 40) -> dict[str, np.ndarray]:
    """Rows of consecutive episodes: next_obs of a step is obs of the next one."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(num_rows + 1, OBS_DIM)).astype(np.float32)
    ends = (np.arange(num_rows) + 1) % episode_length == 0
    return {
        "obs": obs[:-1].copy(),
        "action": rng.uniform(-1, 1, size=(num_rows, ACTION_DIM)).astype(np.float32),
        "reward": rng.normal(size=num_rows).astype(np.float32),
        "next_obs": obs[1:],
        "terminated": ends & (np.arange(num_rows) % 80 < 40),
        "truncated": ends & (np.arange(num_rows) % 80 >= 40),
    }


def storage(capacity: int = 100) -> ReplayStorage:
    return ReplayStorage(capacity, OBS_DIM, ACTION_DIM, holdout_every=10, seed=0)


def assert_same_rows(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


@pytest.mark.parametrize("actions", ["env", "normalized"])
def test_round_trip_of_a_wrapped_replay_is_row_for_row(tmp_path, actions):
    original = storage(100)
    original.add(episodes(130))  # wrapped: the oldest row sits at the cursor
    summary = parquet.write_rows(
        parquet.chronological_rows(original.get_state()),
        str(tmp_path / "out"),
        PENDULUM_LIKE,
        actions=actions,
        max_rows_per_file=40,
    )
    assert summary.rows == 100 and len(summary.files) == 3  # 40 + 40 + 20 rows
    assert [pq.ParquetFile(f).metadata.num_rows for f in summary.files] == [40, 40, 20]
    copy = storage(100)
    result = parquet.read_into(copy.add_valid_rows, str(tmp_path / "out"), OBS_DIM, PENDULUM_LIKE)
    assert (result.rows_read, result.added, result.rejected) == (100, 100, 0)
    assert_same_rows(
        parquet.chronological_rows(original.get_state()),
        parquet.chronological_rows(copy.get_state()),
    )
    # The last 100 of the 130 rows, oldest first.
    assert_same_rows(
        parquet.chronological_rows(copy.get_state()),
        {k: v[30:] for k, v in episodes(130).items()},
    )


def test_columns_are_rllibs_and_actions_in_env_units(tmp_path):
    rows = episodes(80)
    summary = parquet.write_rows(rows, str(tmp_path / "out"), PENDULUM_LIKE)
    table = pq.read_table(summary.files[0])
    assert table.column_names == [
        "eps_id",
        "agent_id",
        "module_id",
        "obs",
        "actions",
        "rewards",
        "new_obs",
        "terminateds",
        "truncateds",
        "t",
    ]
    actions = np.array(table.column("actions").to_pylist())
    np.testing.assert_array_equal(actions, rows["action"] * 2)  # [-1, 1] -> [-2, 2]
    assert table.schema.field("actions").type.value_type == pa.float32()
    assert parquet.file_info(table.schema)["actions"] == "env"
    # Two episodes of 40 steps: the first ends terminated, the second truncated.
    eps_id = table.column("eps_id").to_pylist()
    assert len(set(eps_id[:40])) == 1 and len(set(eps_id)) == 2
    assert table.column("t").to_pylist()[38:42] == [38, 39, 0, 1]
    assert table.column("terminateds").to_pylist()[39] is True
    assert table.column("truncateds").to_pylist()[79] is True
    assert sum(table.column("terminateds").to_pylist()) == 1


def test_bounds_without_an_exact_float32_map_write_float64_actions(tmp_path):
    bounds = parquet.ActionBounds.of([-0.4, 0.0], [0.4, 3.0])  # Humanoid-like, offset
    assert not bounds.exact_in_float32 and PENDULUM_LIKE.exact_in_float32
    original = storage(100)
    original.add(episodes(60))
    summary = parquet.write_rows(
        parquet.chronological_rows(original.get_state()), str(tmp_path / "o"), bounds
    )
    assert pq.read_schema(summary.files[0]).field("actions").type.value_type == pa.float64()
    copy = storage(100)
    parquet.read_into(copy.add_valid_rows, str(tmp_path / "o"), OBS_DIM, bounds)
    assert_same_rows(original.get_state(), copy.get_state())


def test_segments_split_at_episode_ends_and_gaps():
    rows = episodes(10, episode_length=4)
    rows["obs"][6] += 1  # a gap: row 5's next_obs is not row 6's obs
    segment, t = parquet.episode_segments(rows)
    assert segment.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert t.tolist() == [0, 1, 2, 3, 0, 1, 0, 1, 0, 1]


def test_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "old.parquet").write_bytes(b"x")
    with pytest.raises(ValueError, match="not empty"):
        parquet.write_rows(episodes(4), str(tmp_path), PENDULUM_LIKE)


def test_writes_through_a_pyarrow_filesystem(tmp_path):
    filesystem = pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem())
    summary = parquet.write_rows(
        episodes(30), "bucket/run", PENDULUM_LIKE, filesystem=filesystem, max_rows_per_file=25
    )
    assert summary.files == ["bucket/run/part-000000.parquet", "bucket/run/part-000001.parquet"]
    copy = storage()
    result = parquet.read_into(
        copy.add_valid_rows, "bucket/run", OBS_DIM, PENDULUM_LIKE, filesystem=filesystem
    )
    assert result.added == 30


def rllib_like_table(rows: dict[str, np.ndarray], compressed: bool) -> pa.Table:
    """Columns as RLlib's output writer leaves them: obs compressed, actions a list column."""

    def pack(vector: np.ndarray) -> str:  # stand-in for ray.rllib.utils.compression.pack
        return base64.b64encode(pickle.dumps(vector)).decode("ascii")

    obs = [pack(o) for o in rows["obs"]] if compressed else rows["obs"].tolist()
    next_obs = [pack(o) for o in rows["next_obs"]] if compressed else rows["next_obs"].tolist()
    return pa.table(
        {
            "eps_id": ["e"] * len(rows["reward"]),
            "obs": obs,
            "actions": pa.array(rows["action"].tolist(), type=pa.large_list(pa.float32())),
            "rewards": rows["reward"].astype(np.float64),
            "new_obs": next_obs,
            "terminateds": rows["terminated"],
            "truncateds": rows["truncated"],
            "action_logp": np.zeros(len(rows["reward"]), np.float32),
        }
    )


def test_reads_rllibs_compressed_columns_with_normalized_actions(tmp_path):
    rows = episodes(50)
    pq.write_table(rllib_like_table(rows, compressed=True), tmp_path / "a.parquet")
    copy = storage()

    def decode(cell: str) -> np.ndarray:
        return pickle.loads(base64.b64decode(cell))

    with pytest.raises(parquet.DatasetError, match="compressed strings"):
        parquet.read_into(copy.add_valid_rows, str(tmp_path), OBS_DIM, PENDULUM_LIKE)
    assert copy.size == 0
    parquet.read_into(
        copy.add_valid_rows,
        str(tmp_path),
        OBS_DIM,
        PENDULUM_LIKE,
        decode=decode,
        actions_normalized=True,
    )
    assert_same_rows(rows, copy.get_state())


def test_a_nan_row_is_dropped_and_counted(tmp_path):
    rows = episodes(50)
    rows["reward"][7] = np.nan
    pq.write_table(rllib_like_table(rows, compressed=False), tmp_path / "a.parquet")
    copy = storage()
    result = parquet.read_into(
        copy.add_valid_rows, str(tmp_path), OBS_DIM, PENDULUM_LIKE, actions_normalized=True
    )
    assert (result.rows_read, result.added, result.rejected) == (50, 49, 1)
    assert (result.first_rejected, result.reason) == (7, "reward is NaN or inf")
    assert copy.rows_rejected == 1


def test_env_unit_actions_beyond_the_bounds_are_clipped_and_counted(tmp_path):
    rows = episodes(20)
    table = rllib_like_table(rows, compressed=False)
    env_actions = rows["action"] * 2
    env_actions[3] = [5.0, 0.0]
    table = table.set_column(
        table.schema.get_field_index("actions"), "actions", pa.array(env_actions.tolist())
    )
    pq.write_table(table, tmp_path / "a.parquet")
    copy = storage()
    result = parquet.read_into(copy.add_valid_rows, str(tmp_path), OBS_DIM, PENDULUM_LIKE)
    assert result.actions_clipped == 1 and result.added == 20
    np.testing.assert_array_equal(copy.get_state()["action"][3], [1.0, 0.0])


def test_a_wrong_observation_shape_is_one_error_naming_column_and_shape(tmp_path):
    rows = episodes(20)
    pq.write_table(rllib_like_table(rows, compressed=False), tmp_path / "a.parquet")
    copy = storage()
    copy_dims = ReplayStorage(100, OBS_DIM + 1, ACTION_DIM, holdout_every=10)
    with pytest.raises(parquet.DatasetError, match=r"column 'obs' row 0 has shape \(3,\); "):
        parquet.read_into(copy_dims.add_valid_rows, str(tmp_path), OBS_DIM + 1, PENDULUM_LIKE)
    with pytest.raises(parquet.DatasetError, match=r"expected \(1,\), the env's action shape"):
        parquet.read_into(
            copy.add_valid_rows, str(tmp_path), OBS_DIM, parquet.ActionBounds.of([-1], [1])
        )
    assert copy.size == 0 and copy_dims.size == 0


def test_one_short_row_among_many_is_found(tmp_path):
    rows = episodes(20)
    table = rllib_like_table(rows, compressed=False)
    obs = rows["obs"].tolist()
    obs[13] = obs[13][:2]
    table = table.set_column(table.schema.get_field_index("obs"), "obs", pa.array(obs))
    pq.write_table(table, tmp_path / "a.parquet")
    with pytest.raises(parquet.DatasetError, match=r"'obs' row 13 has shape \(2,\)"):
        parquet.read_into(storage().add_valid_rows, str(tmp_path), OBS_DIM, PENDULUM_LIKE)


def test_a_missing_column_is_one_error_and_a_mapping_fixes_it(tmp_path):
    rows = episodes(20)
    table = rllib_like_table(rows, compressed=False).rename_columns(
        ["eps_id", "observation", "actions", "rewards", "new_obs", "terminateds", "truncateds", "x"]
    )
    pq.write_table(table, tmp_path / "a.parquet")
    copy = storage()
    with pytest.raises(parquet.DatasetError, match=r"lacks the column\(s\) \['obs'\]"):
        parquet.read_into(copy.add_valid_rows, str(tmp_path), OBS_DIM, PENDULUM_LIKE)
    result = parquet.read_into(
        copy.add_valid_rows,
        str(tmp_path),
        OBS_DIM,
        PENDULUM_LIKE,
        column_names={"obs": "observation"},
        actions_normalized=True,
    )
    assert result.added == 20


def test_missing_paths_and_empty_folders_are_errors(tmp_path):
    with pytest.raises(parquet.DatasetError, match="no such file"):
        parquet.parquet_files(str(tmp_path / "nothing"))
    with pytest.raises(parquet.DatasetError, match="no .parquet file"):
        parquet.parquet_files(str(tmp_path))


def test_reading_streams_in_batches(tmp_path):
    parquet.write_rows(episodes(300), str(tmp_path / "o"), PENDULUM_LIKE, max_rows_per_file=128)
    sizes = [
        len(batch["reward"])
        for batch, _ in parquet.iter_batches(
            str(tmp_path / "o"), OBS_DIM, PENDULUM_LIKE, batch_rows=50
        )
    ]
    assert max(sizes) <= 50 and sum(sizes) == 300


def test_importing_the_parquet_module_imports_no_ray():
    import subprocess
    import sys

    probe = (
        "import sys, drive_rllib.replay.parquet\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_dataset_larger_than_the_replay_leaves_its_last_rows(tmp_path):
    rows = episodes(1000)
    parquet.write_rows(rows, str(tmp_path / "o"), PENDULUM_LIKE, max_rows_per_file=100)
    small = storage(100)
    result = parquet.read_into(
        small.add_valid_rows, str(tmp_path / "o"), OBS_DIM, PENDULUM_LIKE, batch_rows=64
    )
    assert (result.files, result.rows_read, small.size) == (10, 1000, 100)
    assert_same_rows(
        parquet.chronological_rows(small.get_state()), {k: v[-100:] for k, v in rows.items()}
    )
