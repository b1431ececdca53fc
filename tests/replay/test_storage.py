"""Ray-free tests of ReplayStorage: values, ordering, splits, errors, persistence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from drive_rllib.replay.storage import (
    FIELDS,
    ReplayStorage,
    split_count,
    split_index_to_position,
)

S, A = 3, 2


def make_batch(ids: np.ndarray | list[int]) -> dict[str, np.ndarray]:
    """Transitions whose every field encodes its id, so rows can be identified."""
    ids = np.asarray(ids, dtype=np.int64)
    base = ids.astype(np.float32)
    return {
        "obs": base[:, None] + np.arange(S, dtype=np.float32) / 10,
        "action": -base[:, None] - np.arange(A, dtype=np.float32) / 10,
        "reward": base * 2,
        "next_obs": base[:, None] + 1 + np.arange(S, dtype=np.float32) / 10,
        "terminated": ids % 3 == 0,
        "truncated": ids % 5 == 0,
    }


def stored_ids(storage: ReplayStorage) -> np.ndarray:
    """Ids of the stored rows in position order."""
    return storage.get_state()["obs"][:, 0].astype(np.int64)


def assert_consistent(sample: dict[str, np.ndarray]) -> np.ndarray:
    """Checks every field of each sampled row belongs to the same id; returns ids."""
    ids = sample["obs"][:, 0].astype(np.int64)
    expected = make_batch(ids)
    for name in FIELDS:
        np.testing.assert_array_equal(sample[name], expected[name], err_msg=name)
    return ids


def assert_states_equal(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for key, value in left.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == right[key].dtype, key
            np.testing.assert_array_equal(value, right[key], err_msg=key)
        else:
            assert value == right[key], key


# --------------------------------------------------------------------- basics
def test_add_then_sample_returns_the_stored_rows_with_dtypes_and_shapes() -> None:
    storage = ReplayStorage(capacity=8, obs_dim=S, action_dim=A, holdout_every=0, seed=0)
    assert storage.add(make_batch([0, 1, 2, 3, 4])) == 5
    assert (storage.size, storage.capacity, storage.total_added) == (5, 8, 5)

    state = storage.get_state()
    for name in FIELDS:
        np.testing.assert_array_equal(state[name], make_batch(range(5))[name])

    sample = storage.sample(200, split="all")
    assert sample["obs"].shape == (200, S) and sample["obs"].dtype == np.float32
    assert sample["action"].shape == (200, A) and sample["action"].dtype == np.float32
    assert sample["reward"].shape == (200,) and sample["reward"].dtype == np.float32
    assert sample["next_obs"].shape == (200, S)
    assert sample["terminated"].dtype == bool and sample["truncated"].dtype == bool
    ids = assert_consistent(sample)
    assert set(ids.tolist()) == {0, 1, 2, 3, 4}


def test_sample_recent_draws_only_the_last_rows_written_across_the_wrap() -> None:
    storage = ReplayStorage(capacity=5, obs_dim=S, action_dim=A, holdout_every=0, seed=0)
    storage.add(make_batch([0, 1, 2]))
    # Fewer rows than the window: all of them.
    assert set(assert_consistent(storage.sample_recent(300, 10)).tolist()) == {0, 1, 2}
    storage.add(make_batch([3, 4, 5, 6]))  # rows 5 and 6 overwrite 0 and 1
    ids = assert_consistent(storage.sample_recent(300, 3))
    assert set(ids.tolist()) == {4, 5, 6}
    assert set(assert_consistent(storage.sample_recent(300, 1)).tolist()) == {6}
    # Holdout positions count as recent too (the floor's states, not the fit's).
    holdout = ReplayStorage(capacity=8, obs_dim=S, action_dim=A, holdout_every=2, seed=0)
    holdout.add(make_batch([0, 1, 2, 3]))
    assert set(assert_consistent(holdout.sample_recent(300, 2)).tolist()) == {2, 3}


@pytest.mark.parametrize("window", [0, -1, 2.5, True])
def test_sample_recent_refuses_a_bad_window(window) -> None:
    storage = ReplayStorage(capacity=5, obs_dim=S, action_dim=A, holdout_every=0, seed=0)
    storage.add(make_batch([0]))
    with pytest.raises(ValueError, match="window must be a positive int"):
        storage.sample_recent(4, window)


def test_sample_recent_from_an_empty_replay_says_so() -> None:
    storage = ReplayStorage(capacity=5, obs_dim=S, action_dim=A, holdout_every=0, seed=0)
    with pytest.raises(ValueError, match="holds none yet"):
        storage.sample_recent(4, 3)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        storage.sample_recent(0, 3)


def test_sample_returns_copies() -> None:
    storage = ReplayStorage(4, S, A, holdout_every=0, seed=0)
    storage.add(make_batch([7]))
    sample = storage.sample(1)
    sample["obs"][:] = -1
    assert storage.sample(1)["obs"][0, 0] == 7


def test_wrap_around_overwrites_oldest_in_order() -> None:
    storage = ReplayStorage(capacity=5, obs_dim=S, action_dim=A, holdout_every=0)
    storage.add(make_batch([0, 1, 2]))
    storage.add(make_batch([3, 4, 5, 6]))  # wraps: 5 -> pos 0, 6 -> pos 1
    np.testing.assert_array_equal(stored_ids(storage), [5, 6, 2, 3, 4])
    assert (storage.size, storage.total_added) == (5, 7)
    storage.add(make_batch([7]))
    np.testing.assert_array_equal(stored_ids(storage), [5, 6, 7, 3, 4])
    assert_consistent(storage.get_state())


def test_batch_larger_than_capacity_keeps_last_rows_at_sequential_positions() -> None:
    batched = ReplayStorage(capacity=4, obs_dim=S, action_dim=A, holdout_every=0)
    one_by_one = ReplayStorage(capacity=4, obs_dim=S, action_dim=A, holdout_every=0)
    batched.add(make_batch([100]))
    one_by_one.add(make_batch([100]))
    batched.add(make_batch(range(10)))
    for i in range(10):
        one_by_one.add(make_batch([i]))
    # Sequentially: ids 0..9 go to positions 1,2,3,0,1,2,3,0,1,2.
    np.testing.assert_array_equal(stored_ids(batched), [7, 8, 9, 6])
    assert_states_equal(
        {k: v for k, v in batched.get_state().items() if k != "rng_state"},
        {k: v for k, v in one_by_one.get_state().items() if k != "rng_state"},
    )
    assert batched.total_added == 11


def test_empty_add_is_a_no_op() -> None:
    storage = ReplayStorage(4, S, A)
    assert storage.add(make_batch([])) == 0
    assert (storage.size, storage.total_added) == (0, 0)


def test_read_only_inputs_are_accepted_and_copied() -> None:
    storage = ReplayStorage(4, S, A, holdout_every=0)
    batch = make_batch([1, 2])
    for array in batch.values():
        array.flags.writeable = False
    storage.add(batch)
    storage.add(make_batch([3, 4, 5]))  # overwrites position 0 in the buffer
    np.testing.assert_array_equal(batch["obs"][:, 0], [1, 2])  # input untouched
    np.testing.assert_array_equal(stored_ids(storage), [5, 2, 3, 4])


def test_other_numeric_dtypes_are_cast() -> None:
    storage = ReplayStorage(4, S, A, holdout_every=0)
    batch = {k: v.astype(np.float64) for k, v in make_batch([1, 2]).items()}
    batch["terminated"] = np.array([0, 1])
    storage.add(batch)
    state = storage.get_state()
    assert state["obs"].dtype == np.float32
    np.testing.assert_array_equal(state["terminated"], [False, True])


# --------------------------------------------------------------------- splits
@pytest.mark.parametrize("holdout_every", [0, 2, 3, 10])
@pytest.mark.parametrize("size", [0, 1, 2, 9, 10, 11, 29, 30])
def test_closed_form_maps_onto_exactly_the_split_positions(holdout_every: int, size: int) -> None:
    positions = np.arange(size)
    if holdout_every:
        is_holdout = positions % holdout_every == holdout_every - 1
    else:
        is_holdout = np.zeros(size, dtype=bool)
    for split, expected in (
        ("train", positions[~is_holdout]),
        ("holdout", positions[is_holdout]),
        ("all", positions),
    ):
        count = split_count(size, split, holdout_every)
        assert count == len(expected), (split, count)
        if count:
            mapped = split_index_to_position(np.arange(count), split, holdout_every)
            np.testing.assert_array_equal(mapped, expected, err_msg=split)


def test_train_and_holdout_samples_are_disjoint_and_cover_their_positions() -> None:
    k = 4
    storage = ReplayStorage(capacity=23, obs_dim=S, action_dim=A, holdout_every=k, seed=1)
    storage.add(make_batch(range(23)))  # id == position
    assert (storage.num_rows("train"), storage.num_rows("holdout"), storage.num_rows("all")) == (
        18,
        5,
        23,
    )
    train = assert_consistent(storage.sample(5000, "train"))
    holdout = assert_consistent(storage.sample(2000, "holdout"))
    every = assert_consistent(storage.sample(5000, "all"))
    holdout_positions = {3, 7, 11, 15, 19}
    assert set(holdout.tolist()) == holdout_positions
    assert set(train.tolist()) == set(range(23)) - holdout_positions
    assert set(every.tolist()) == set(range(23))
    # Uniform: each of the 18 train positions expected 5000/18 ~ 278 times.
    counts = np.bincount(train, minlength=23)[sorted(set(range(23)) - holdout_positions)]
    assert counts.min() > 200 and counts.max() < 360


def test_split_is_tied_to_position_across_wrap_around() -> None:
    storage = ReplayStorage(capacity=6, obs_dim=S, action_dim=A, holdout_every=3, seed=0)
    storage.add(make_batch(range(10)))  # ids 6..9 overwrite positions 0..3
    np.testing.assert_array_equal(stored_ids(storage), [6, 7, 8, 9, 4, 5])
    holdout = set(assert_consistent(storage.sample(500, "holdout")).tolist())
    train = set(assert_consistent(storage.sample(500, "train")).tolist())
    assert holdout == {8, 5}  # positions 2 and 5
    assert train == {6, 7, 9, 4}


def test_sampling_an_empty_split_raises() -> None:
    storage = ReplayStorage(capacity=10, obs_dim=S, action_dim=A, holdout_every=3)
    with pytest.raises(ValueError, match="'train' split: it holds no transitions"):
        storage.sample(4)
    storage.add(make_batch([0, 1]))  # positions 0, 1: both train
    with pytest.raises(ValueError, match="'holdout' split: it holds no transitions"):
        storage.sample(4, "holdout")
    no_holdout = ReplayStorage(capacity=10, obs_dim=S, action_dim=A, holdout_every=0)
    no_holdout.add(make_batch(range(10)))
    with pytest.raises(ValueError, match="holdout_every=0 disables the holdout split"):
        no_holdout.sample(4, "holdout")
    with pytest.raises(ValueError, match="split must be one of"):
        storage.sample(4, "test")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        storage.sample(0)


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, "capacity must be a positive int"),
        ({"obs_dim": 2.5}, "obs_dim must be a positive int"),
        ({"action_dim": -1}, "action_dim must be a positive int"),
        ({"holdout_every": 1}, r"holdout_every must be 0 \(no holdout split\) or an int >= 2"),
        ({"holdout_every": -2}, "holdout_every must be 0"),
    ],
)
def test_constructor_validation(kwargs: dict, message: str) -> None:
    arguments = {"capacity": 4, "obs_dim": S, "action_dim": A, **kwargs}
    with pytest.raises(ValueError, match=message):
        ReplayStorage(**arguments)


def _mutated(name: str, value: np.ndarray | None) -> dict[str, np.ndarray]:
    batch = make_batch([10, 11, 12])
    if value is None:
        del batch[name]
    else:
        batch[name] = value
    return batch


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (_mutated("truncated", None), r"missing \['truncated'\], unexpected \[\]"),
        (
            {**make_batch([1]), "infos": np.zeros(1)},
            r"missing \[\], unexpected \['infos'\]",
        ),
        (_mutated("obs", np.zeros((3, S + 1))), r"'obs': \(3, 4\)"),
        (_mutated("action", np.zeros(3)), r"'action': \(3,\)"),
        (_mutated("next_obs", np.zeros((2, S))), r"'next_obs': \(2, 3\)"),
        (_mutated("reward", np.zeros((3, 1))), "not 1-D"),
        (
            _mutated("obs", np.array([[0, 0, 0], [0, np.nan, 0], [0, 0, 0]])),
            r"batch\['obs'\] has NaN or inf in 1 of 3 rows \(first rows: \[1\]\)",
        ),
        (
            _mutated("reward", np.array([0.0, np.inf, -np.inf])),
            r"batch\['reward'\] has NaN or inf in 2 of 3 rows \(first rows: \[1, 2\]\)",
        ),
        (_mutated("next_obs", np.full((3, S), np.nan)), r"batch\['next_obs'\] has NaN or inf"),
        (_mutated("action", np.array([["a", "b"]] * 3)), r"batch\['action'\] is not convertible"),
    ],
)
def test_rejected_add_raises_and_leaves_the_storage_unchanged(batch: dict, message: str) -> None:
    storage = ReplayStorage(capacity=4, obs_dim=S, action_dim=A, holdout_every=0, seed=0)
    storage.add(make_batch([1, 2, 3]))
    before = storage.get_state()
    with pytest.raises(ValueError, match=message):
        storage.add(batch)
    assert_states_equal(storage.get_state(), before)
    # The rejected batch would have wrapped over position 0; it did not.
    np.testing.assert_array_equal(stored_ids(storage), [1, 2, 3])
    assert storage.total_added == 3


def test_nan_error_says_the_data_is_kept() -> None:
    storage = ReplayStorage(4, S, A)
    with pytest.raises(
        ValueError, match="whole batch was rejected and the stored data is unchanged"
    ):
        storage.add(_mutated("reward", np.array([np.nan, 0, 0])))


# ---------------------------------------------------------------------- stats
def test_stats_values() -> None:
    storage = ReplayStorage(capacity=10, obs_dim=S, action_dim=A, holdout_every=3)
    empty = storage.stats()
    assert empty["size"] == 0 and np.isnan(empty["reward_mean"]) and len(empty["obs_mean"]) == S
    storage.add(make_batch([0, 1, 2, 3, 4]))
    stats = storage.stats()
    # rewards 0, 2, 4, 6, 8: mean 4, population std sqrt(8); obs[:, d] = id + d/10.
    assert {
        k: stats[k] for k in ("size", "capacity", "total_added", "num_train", "num_holdout")
    } == {
        "size": 5,
        "capacity": 10,
        "total_added": 5,
        "num_train": 4,
        "num_holdout": 1,
    }
    assert stats["reward_mean"] == pytest.approx(4.0)
    assert stats["reward_std"] == pytest.approx(np.sqrt(8.0))
    assert stats["obs_mean"] == pytest.approx([2.0, 2.1, 2.2])
    assert stats["obs_std"] == pytest.approx([np.sqrt(2.0)] * S)
    assert isinstance(stats["obs_mean"], list)


# ---------------------------------------------------------------- persistence
def _filled(capacity: int = 7, rows: int = 12, seed: int = 3) -> ReplayStorage:
    storage = ReplayStorage(capacity, S, A, holdout_every=3, seed=seed)
    storage.add(make_batch(range(rows)))
    storage.sample(5)  # advance the generator
    return storage


def test_get_state_holds_only_filled_rows() -> None:
    storage = ReplayStorage(capacity=100, obs_dim=S, action_dim=A)
    storage.add(make_batch([0, 1, 2]))
    state = storage.get_state()
    assert state["obs"].shape == (3, S) and state["reward"].shape == (3,)
    assert (state["size"], state["cursor"], state["total_added"]) == (3, 3, 3)


def test_set_state_round_trip_is_exact_including_the_sampler() -> None:
    source = _filled()
    restored = ReplayStorage(7, S, A, holdout_every=3, seed=999)
    restored.set_state(source.get_state())
    assert_states_equal(restored.get_state(), source.get_state())
    for split in ("train", "holdout", "all"):
        left, right = source.sample(64, split), restored.sample(64, split)
        for name in FIELDS:
            np.testing.assert_array_equal(left[name], right[name])
    # Writing continues at the same cursor.
    source.add(make_batch([50, 51]))
    restored.add(make_batch([50, 51]))
    assert_states_equal(restored.get_state(), source.get_state())


def test_save_load_round_trip_is_exact(tmp_path) -> None:
    source = _filled()
    path = source.save(tmp_path / "nested" / "replay")
    assert path.endswith("replay.npz")
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert int(data["size"]) == 7
    restored = ReplayStorage(7, S, A, holdout_every=3)
    restored.load(path)
    assert_states_equal(restored.get_state(), source.get_state())
    np.testing.assert_array_equal(source.sample(32)["obs"], restored.sample(32)["obs"])
    assert not [p for p in (tmp_path / "nested").iterdir() if ".tmp" in p.name]


def test_load_into_larger_storage_keeps_positions_and_fills_free_space(tmp_path) -> None:
    source = _filled(capacity=7, rows=12)  # wrapped, cursor at 5
    np.testing.assert_array_equal(stored_ids(source), [7, 8, 9, 10, 11, 5, 6])
    larger = ReplayStorage(10, S, A, holdout_every=3)
    larger.load(source.save(tmp_path / "replay.npz"))
    np.testing.assert_array_equal(stored_ids(larger), [7, 8, 9, 10, 11, 5, 6])
    assert (larger.size, larger.total_added) == (7, 12)
    assert set(assert_consistent(larger.sample(500, "holdout")).tolist()) == {9, 5}
    larger.add(make_batch([20, 21, 22, 23]))
    np.testing.assert_array_equal(stored_ids(larger), [23, 8, 9, 10, 11, 5, 6, 20, 21, 22])

    partial = ReplayStorage(20, S, A, holdout_every=3)
    partial.add(make_batch([0, 1, 2]))
    exact_fit = ReplayStorage(3, S, A, holdout_every=3)
    exact_fit.set_state(partial.get_state())
    exact_fit.add(make_batch([3]))
    np.testing.assert_array_equal(stored_ids(exact_fit), [3, 1, 2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 6}, r"holds 7 transitions but this storage's capacity is 6"),
        ({"holdout_every": 4}, r"holdout_every=3 .* create the storage with holdout_every=3"),
        ({"obs_dim": S + 1}, "obs_dim=3 but this storage has obs_dim=4"),
    ],
)
def test_set_state_rejects_mismatches_without_changes(kwargs: dict, message: str) -> None:
    arguments = {"capacity": 7, "obs_dim": S, "action_dim": A, "holdout_every": 3, **kwargs}
    target = ReplayStorage(**arguments)
    with pytest.raises(ValueError, match=message):
        target.set_state(_filled().get_state())
    assert target.size == 0 and target.total_added == 0


def test_seeded_sampling_is_deterministic() -> None:
    def draw(seed: int) -> np.ndarray:
        storage = ReplayStorage(50, S, A, holdout_every=5, seed=seed)
        storage.add(make_batch(range(50)))
        return np.concatenate(
            [storage.sample(20, split)["obs"][:, 0] for split in ("train", "holdout", "all")]
        )

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))


def test_storage_and_package_import_neither_ray_nor_torch() -> None:
    code = (
        "import sys, drive_rllib.replay, drive_rllib.replay.storage; "
        "bad = {'ray', 'torch'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# ---------------------------------------------------------------- quarantine


def test_add_valid_rows_keeps_the_good_rows_of_a_batch_and_counts_the_bad() -> None:
    storage = ReplayStorage(10, S, A, holdout_every=0, max_abs_obs=100.0, max_abs_reward=1e6)
    batch = make_batch([0, 1, 2, 3, 4, 5])
    batch["obs"][1, 0] = np.nan
    batch["reward"][3] = 1e30  # finite, but beyond max_abs_reward
    batch["next_obs"][4, 2] = 1e3  # beyond max_abs_obs
    batch["action"][5, 1] = -np.inf

    report = storage.add_valid_rows(batch)

    assert report == {"added": 2, "rejected": 4, "first_rejected": 1, "reason": "obs is NaN or inf"}
    np.testing.assert_array_equal(stored_ids(storage), [0, 2])
    assert storage.rows_rejected == 4 and storage.total_added == 2
    # A clean batch stores everything; the counter survives a save and a load.
    assert storage.add_valid_rows(make_batch([6, 7]))["rejected"] == 0
    restored = ReplayStorage(10, S, A, holdout_every=0)
    path = storage.save(Path(__file__).parent / "_quarantine_state.npz")
    try:
        restored.load(path)
    finally:
        Path(path).unlink()
    assert restored.rows_rejected == 4
    np.testing.assert_array_equal(stored_ids(restored), [0, 2, 6, 7])


def test_add_valid_rows_reports_the_first_bad_row_by_position_not_by_field() -> None:
    storage = ReplayStorage(10, S, A, holdout_every=0, max_abs_reward=10.0)
    batch = make_batch([0, 1, 2])
    batch["reward"][1] = 50.0
    batch["next_obs"][2, 0] = np.inf
    report = storage.add_valid_rows(batch)
    assert report["first_rejected"] == 1 and report["reason"] == "reward exceeds 10"
    assert report["added"] == 1


def test_add_valid_rows_still_raises_on_a_malformed_batch() -> None:
    storage = ReplayStorage(10, S, A)
    with pytest.raises(ValueError, match="batch shapes must be"):
        storage.add_valid_rows({**make_batch([0, 1]), "reward": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="max_abs_obs must be None or a positive number"):
        ReplayStorage(10, S, A, max_abs_obs=0)
