"""The replay actor: a thin Ray shell around `ReplayStorage` (Ray, but no RLlib).

How data flows:

- **EnvRunners push.** Each runner converts its sampled episodes to flat numpy
  transitions (`obs`, `action` in module space, `reward`, `next_obs`,
  `terminated`, `truncated`) and calls `actor.add.remote(batch)` once per
  `sample()` call, so remote-call cost is paid per batch, not per step. The
  Algorithm hands every runner the actor's handle, also runners Ray recreated
  after a failure. `get_replay_actor` looks a named actor up (e.g. from a
  task that was handed no handle).
- **Learners pull.** `actor.sample.remote(B)` returns plain numpy rows under
  the storage's field names. The Algorithm turns rows into RLlib's learner
  batch inside this actor's process (`actor.__ray_call__.remote(fn, B)` with
  `drive_rllib.algorithm.batch.sample_learner_batch`) and passes the
  ObjectRefs to `learner_group.update(batch_refs=[...])` (one per learner);
  each learner resolves its own, so the data goes actor -> object store ->
  learner.
- **The driver holds only refs** (and small `size()` / `stats()` results);
  transitions never pass through it. Checkpoints use `save(path)` so the
  actor writes its own file next to the checkpoint.

Ray runs one call at a time on this actor (no `max_concurrency`), so
concurrent `add` calls from many runners are serialised and each batch lands
as one contiguous block.

`ReplayActor` is a plain class; `create_replay_actor` makes it remote.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from drive_rllib.replay.storage import TRAIN, ReplayStorage

if TYPE_CHECKING:
    from ray.actor import ActorHandle


class ReplayActor:
    """Holds one `ReplayStorage`; made remote by `create_replay_actor`.

    Args:
        capacity: Maximum number of stored transitions.
        obs_dim: Observation dim `S`.
        action_dim: Action dim `A`.
        holdout_every: Every `k`-th position is held out of the train split;
            0 disables the holdout split.
        seed: Seed of the sampling generator; None draws fresh entropy.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        action_dim: int,
        holdout_every: int = 10,
        seed: int | None = None,
    ) -> None:
        self._storage = ReplayStorage(
            capacity, obs_dim, action_dim, holdout_every=holdout_every, seed=seed
        )

    def add(self, batch: dict[str, np.ndarray]) -> int:
        """Adds `T` transitions; see `ReplayStorage.add`. Returns `T`."""
        return self._storage.add(batch)

    def sample(self, batch_size: int, split: str = TRAIN) -> dict[str, np.ndarray]:
        """Samples `B` transitions of `split`; see `ReplayStorage.sample`."""
        return self._storage.sample(batch_size, split)

    def size(self, split: str = "all") -> int:
        """Number of stored transitions in `split` (default: all)."""
        return self._storage.num_rows(split)

    def stats(self) -> dict[str, Any]:
        """Summary for logging; see `ReplayStorage.stats`."""
        return self._storage.stats()

    def get_state(self) -> dict[str, Any]:
        """Contents and counters; see `ReplayStorage.get_state`.

        This passes every stored row through the object store; for large
        buffers prefer `save(path)`.
        """
        return self._storage.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        """Replaces the contents; see `ReplayStorage.set_state`."""
        self._storage.set_state(state)

    def save(self, path: str) -> str:
        """Writes one `.npz` file on the actor's node; returns the path written."""
        return self._storage.save(path)

    def load(self, path: str) -> None:
        """Restores from a file written by `save`, read on the actor's node."""
        self._storage.load(path)

    def ping(self) -> bool:
        """Returns True; `ray.get(actor.ping.remote())` waits until the actor is up."""
        return True

    def pid(self) -> int:
        """The actor's process id (to tell two actors, or a recreated one, apart)."""
        return os.getpid()


def create_replay_actor(
    capacity: int,
    obs_dim: int,
    action_dim: int,
    *,
    name: str | None = None,
    holdout_every: int = 10,
    seed: int | None = None,
    resources: dict[str, float] | None = None,
    num_cpus: float = 0,
) -> ActorHandle:
    """Starts a `ReplayActor` in the connected Ray cluster.

    Args:
        capacity: Maximum number of stored transitions.
        obs_dim: Observation dim `S`.
        action_dim: Action dim `A`.
        name: If given, the actor is named (in the current Ray namespace) and
            an existing live actor of that name is returned instead of a new
            one (`get_if_exists`); its capacity and dims are then those it was
            created with, not the arguments.
        holdout_every: Every `k`-th position is held out; 0 disables holdout.
        seed: Seed of the sampling generator.
        resources: Custom resources pinning the actor to a node, e.g.
            `{"head": 0.001}`.
        num_cpus: CPUs reserved for the actor. The default 0 needs no bundle
            in the algorithm's resource request; the actor only copies arrays.

    Returns:
        The actor handle. The actor lives as long as its owner (the process
        that created it) unless Ray options say otherwise.
    """
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if resources:
        options["resources"] = dict(resources)
    if name is not None:
        options.update(name=name, get_if_exists=True)
    remote_class = ray.remote(ReplayActor)
    return remote_class.options(**options).remote(
        capacity, obs_dim, action_dim, holdout_every=holdout_every, seed=seed
    )


def get_replay_actor(name: str) -> ActorHandle:
    """Looks up a named replay actor (the DRIVE algorithm hands runners the handle instead).

    Raises:
        ValueError: If no live actor has that name in the current namespace.
    """
    return ray.get_actor(name)
