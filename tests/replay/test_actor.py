"""ReplayActor in a private local Ray instance: concurrency, files, names (RLlib batches of its
rows: tests/algorithm/test_batch.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import ray

from drive_rllib.replay import create_replay_actor, get_replay_actor

pytestmark = pytest.mark.ray

S, A = 3, 2
REPO_ROOT = Path(__file__).resolve().parents[2]


def make_batch(ids: np.ndarray | list[int] | range) -> dict[str, np.ndarray]:
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


@pytest.fixture(scope="module")
def ray_instance():
    """A private Ray instance (never attaches to another cluster on the machine)."""
    with pytest.MonkeyPatch.context() as patch:
        # Token auth is on by default in Ray 2.60; a throwaway local test
        # cluster needs none, and an explicit value silences the warning.
        patch.setenv("RAY_AUTH_MODE", "disabled")
        # Workers get the driver's cwd on sys.path: start from the repo root so
        # they import drive_rllib even when pytest runs from elsewhere.
        patch.chdir(REPO_ROOT)
        # Tasks defined in this test module are shipped by value, since the
        # workers cannot import the test module.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            resources={"replay_node": 1},
            log_to_driver=False,
        )
        patch.undo()
        try:
            yield ray
        finally:
            ray.shutdown()
            ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@ray.remote(num_cpus=1)
def push(name: str, first_id: int, num_batches: int, batch_size: int) -> int:
    """An EnvRunner stand-in: finds the actor by name and adds batches."""
    actor = get_replay_actor(name)
    added = 0
    for batch_index in range(num_batches):
        start = first_id + batch_index * batch_size
        added += ray.get(actor.add.remote(make_batch(range(start, start + batch_size))))
    return added


def test_add_from_two_concurrent_tasks(ray_instance) -> None:
    actor = create_replay_actor(1000, S, A, name="concurrent", holdout_every=0, seed=0)
    added = ray.get([push.remote("concurrent", 0, 20, 7), push.remote("concurrent", 500, 20, 7)])
    assert added == [140, 140]
    assert ray.get(actor.size.remote()) == 280

    state = ray.get(actor.get_state.remote())
    ids = state["obs"][:, 0].astype(np.int64)
    assert sorted(ids.tolist()) == list(range(140)) + list(range(500, 640))
    # Each batch of 7 landed as one contiguous block, and each pusher's batches
    # kept their order.
    blocks = ids.reshape(-1, 7)
    np.testing.assert_array_equal(blocks - blocks[:, :1], np.tile(np.arange(7), (40, 1)))
    for low, high in ((0, 140), (500, 640)):
        starts = blocks[:, 0][(blocks[:, 0] >= low) & (blocks[:, 0] < high)]
        np.testing.assert_array_equal(starts, np.arange(low, high, 7))
    for name, column in make_batch(ids).items():
        np.testing.assert_array_equal(state[name], column, err_msg=name)


def test_save_and_load_through_actors(ray_instance, tmp_path) -> None:
    source = create_replay_actor(8, S, A, holdout_every=3, seed=2)
    ray.get(source.add.remote(make_batch(range(11))))  # wrapped
    path = ray.get(source.save.remote(str(tmp_path / "replay")))
    assert path == str(tmp_path / "replay.npz") and Path(path).is_file()

    target = create_replay_actor(16, S, A, holdout_every=3, seed=99)
    ray.get(target.load.remote(path))
    saved, restored = ray.get([source.get_state.remote(), target.get_state.remote()])
    for key in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        np.testing.assert_array_equal(restored[key], saved[key], err_msg=key)
    assert (restored["size"], restored["total_added"], restored["rng_state"]) == (
        8,
        11,
        saved["rng_state"],
    )
    source_sample, target_sample = ray.get(
        [source.sample.remote(32, "holdout"), target.sample.remote(32, "holdout")]
    )
    np.testing.assert_array_equal(source_sample["obs"], target_sample["obs"])
    assert ray.get(target.stats.remote())["reward_mean"] == pytest.approx(
        float(np.mean(saved["reward"]))
    )


def test_rejected_add_raises_value_error_through_the_actor(ray_instance) -> None:
    actor = create_replay_actor(8, S, A)
    ray.get(actor.add.remote(make_batch([1, 2])))
    bad = make_batch([3])
    bad["reward"][0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        ray.get(actor.add.remote(bad))
    assert ray.get(actor.size.remote()) == 2
    assert ray.get(actor.ping.remote()) is True  # the actor survives the error


def test_named_actor_is_found_by_name_and_placed_by_custom_resource(ray_instance) -> None:
    first = create_replay_actor(10, S, A, name="shared", resources={"replay_node": 0.001})
    assert ray.get(first.ping.remote(), timeout=60) is True
    ray.get(first.add.remote(make_batch([4, 5, 6])))

    # A second creation with the same name returns the live actor, whatever
    # the arguments; a lookup finds it too.
    again = create_replay_actor(99, S, A, name="shared")
    found = get_replay_actor("shared")
    pids = ray.get([first.pid.remote(), again.pid.remote(), found.pid.remote()])
    assert len(set(pids)) == 1
    assert ray.get(found.stats.remote())["capacity"] == 10
    assert ray.get(found.size.remote()) == 3
    with pytest.raises(ValueError):
        get_replay_actor("no-such-replay")


def test_large_batch_from_the_object_store_is_copied_in(ray_instance) -> None:
    # Large arrays reach the actor zero-copy and read-only from the object store.
    batch_ref = ray.put(make_batch(range(20_000)))
    actor = create_replay_actor(30_000, S, A, holdout_every=0)
    assert ray.get(actor.add.remote(batch_ref)) == 20_000
    ray.get(actor.add.remote(make_batch(range(20_000, 30_001))))  # wraps over position 0
    state = ray.get(actor.get_state.remote())
    assert state["obs"][0, 0] == 30_000
    np.testing.assert_array_equal(state["obs"][1:, 0], np.arange(1, 30_000, dtype=np.float32))


def test_one_handle_calls_waits_and_names_the_actor_when_it_hangs(ray_instance) -> None:
    from drive_rllib.replay import ReplayHandle, ReplayUnavailableError

    actor = create_replay_actor(100, S, A, holdout_every=0, seed=0)
    handle = ReplayHandle(actor, "replay_under_test", timeout_s=30.0)
    handle.call("push", make_batch(range(4)))
    assert handle.call("size") == 4
    handle.wait([actor.size.remote()], "size")
    assert handle.actor_id == actor._actor_id.hex()
    # A hung actor: the call and the wait each fail within the timeout, naming the actor.
    hung = ReplayHandle(actor, "replay_under_test", timeout_s=0.5)
    sleeping = actor.__ray_call__.remote(lambda _actor: __import__("time").sleep(3))
    with pytest.raises(ReplayUnavailableError, match="replay_under_test.*`size` within 0.5 s"):
        hung.call("size")
    with pytest.raises(ReplayUnavailableError, match="replay_under_test.*`sample` within 0.5 s"):
        hung.wait([actor.size.remote()], "sample")
    ray.get(sleeping)
    ray.kill(actor)
