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

**Surviving a crash.** `create_replay_actor(..., max_restarts=N)` lets Ray
restart a dead actor (and retry the calls that were in flight, so callers see
no error). A restarted actor reloads its newest snapshot (``snapshot_path``,
written by `snapshot` or linked to a checkpoint's file by `link_snapshot`); the
rows added since that snapshot are lost, and `status` tells the caller by how
many. A *hung* actor (stopped, swapping) is not restarted by Ray: every caller
waits through `call`, whose timeout turns the hang into one
`ReplayUnavailableError` that names the actor.

`ReplayActor` is a plain class; `create_replay_actor` makes it remote. Its
callers (the Algorithm, every EnvRunner and Learner) hold it as one
`ReplayHandle`: the actor, its name and the timeout of every call.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from drive_rllib.replay.storage import TEMPORARY_MARK, TRAIN, ReplayStorage, fsync_directory

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle


class ReplayActor:
    """Holds one `ReplayStorage`; made remote by `create_replay_actor`.

    Args:
        *storage_args: `ReplayStorage`'s arguments (capacity, S, A, ...).
        snapshot_path: `.npz` file of this actor's snapshots; an actor that Ray
            restarted after a crash reloads it. None: no snapshots.
        **storage_kwargs: `ReplayStorage`'s keyword arguments (``holdout_every``,
            ``seed``, and the bounds ``max_abs_obs`` / ``max_abs_reward`` /
            ``max_abs_action`` that `push` checks rows against).
    """

    def __init__(
        self, *storage_args: Any, snapshot_path: str | None = None, **storage_kwargs: Any
    ) -> None:
        self._storage = ReplayStorage(*storage_args, **storage_kwargs)
        self._snapshot_path = snapshot_path
        #: total_added of the snapshot a restarted actor reloaded (None: a fresh actor).
        self._restored_total_added: int | None = None
        #: The first error an EnvRunner reported that should end the run (one line).
        self._env_error: str | None = None
        if _was_restarted():
            self._restored_total_added = 0
            if snapshot_path is not None and os.path.isfile(snapshot_path):
                try:
                    self._storage.load(snapshot_path)
                except (OSError, ValueError) as error:
                    logger.error(
                        "Restarted replay actor: cannot reload %s (%s); it starts empty.",
                        snapshot_path,
                        error,
                    )
                self._restored_total_added = self._storage.total_added

    def add(self, batch: dict[str, np.ndarray]) -> int:
        """Adds `T` transitions; see `ReplayStorage.add` (the whole batch or nothing). Returns `T`."""
        return self._storage.add(batch)

    def push(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Adds the valid rows of a batch and drops the others; see `ReplayStorage.add_valid_rows`."""
        return self._storage.add_valid_rows(batch)

    def report_env_error(self, message: str) -> None:
        """Keeps an EnvRunner's error for the driver (the first one): a remote runner's
        exception ends its process, so its own log would be the only other trace."""
        if self._env_error is None:
            self._env_error = message

    def status(self) -> dict[str, Any]:
        """Counters the driver reads every iteration (small; no rows).

        Returns:
            ``size``, ``num_train``, ``num_holdout``, ``total_added`` (rows
            stored over the actor's lifetime, restored from a snapshot after a
            restart), ``rows_rejected``, ``pid``, and ``restored_total_added``:
            None for an actor that never crashed, else the ``total_added`` of
            the snapshot it reloaded (0 when there was none); ``env_error``: the
            first `report_env_error` message, or None.
        """
        storage = self._storage
        return {
            "size": storage.num_rows("all"),
            "num_train": storage.num_rows("train"),
            "num_holdout": storage.num_rows("holdout"),
            "total_added": storage.total_added,
            "rows_rejected": storage.rows_rejected,
            "pid": os.getpid(),
            "restored_total_added": self._restored_total_added,
            "env_error": self._env_error,
        }

    def snapshot(self) -> int:
        """Writes the contents to ``snapshot_path`` atomically; returns ``total_added`` saved."""
        if self._snapshot_path is None:
            raise ValueError("This replay actor was created without a snapshot_path.")
        self._storage.save(self._snapshot_path)
        return self._storage.total_added

    def link_snapshot(self, path: str) -> bool:
        """Makes a file `save` just wrote (a checkpoint's replay) the newest snapshot.

        A hard link, so no second copy is written; False (nothing changed) when
        there is no ``snapshot_path`` or the file is on another filesystem.
        """
        if self._snapshot_path is None:
            return False
        temporary = f"{self._snapshot_path}{TEMPORARY_MARK}link-{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self._snapshot_path)), exist_ok=True)
            if os.path.exists(temporary):
                os.remove(temporary)
            os.link(path, temporary)
            os.replace(temporary, self._snapshot_path)
        except OSError:
            if os.path.exists(temporary):
                os.remove(temporary)
            return False
        fsync_directory(os.path.dirname(os.path.abspath(self._snapshot_path)))
        return True

    def sample(self, batch_size: int, split: str = TRAIN) -> dict[str, np.ndarray]:
        """Samples `B` transitions of `split`; see `ReplayStorage.sample`."""
        return self._storage.sample(batch_size, split)

    def sample_recent(self, batch_size: int, window: int) -> dict[str, np.ndarray]:
        """Samples `B` of the last ``window`` rows; see `ReplayStorage.sample_recent`."""
        return self._storage.sample_recent(batch_size, window)

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


def _was_restarted() -> bool:
    """Whether this process is an actor that Ray restarted after a crash."""
    if not ray.is_initialized():
        return False
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except (AssertionError, AttributeError, RuntimeError):  # not inside an actor
        return False


class ReplayUnavailableError(RuntimeError):
    """The replay actor did not answer in time (hung or overloaded) or is dead for good."""


def call(
    actor: ActorHandle,
    method: str,
    *args: Any,
    timeout: float | None,
    name: str | None = None,
) -> Any:
    """``ray.get(actor.<method>.remote(*args), timeout=timeout)`` with one clear error.

    Args:
        actor: The replay actor.
        method: The name of its method, e.g. "push".
        *args: The method's arguments.
        timeout: Seconds to wait (None: forever).
        name: The actor's name, for the message.

    Raises:
        ReplayUnavailableError: no answer within ``timeout``, or the actor died
            and Ray could not restart it.
    """
    try:
        return ray.get(getattr(actor, method).remote(*args), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise ReplayUnavailableError(timeout_message(actor, method, timeout, name)) from None
    except ray.exceptions.RayActorError as error:
        raise ReplayUnavailableError(died_message(actor, method, name, error)) from error


@dataclass(frozen=True)
class ReplayHandle:
    """The replay actor as its callers hold it: the actor, its name, one timeout policy.

    Every call waits at most ``timeout_s`` seconds and fails with one
    `ReplayUnavailableError` that names the actor; retries after a crash are
    Ray's (`create_replay_actor`'s ``max_restarts``), so a caller never retries.

    Attributes:
        actor: The replay actor.
        name: Its name, for error messages (None: its id).
        timeout_s: Seconds every call may take (None: no limit).
    """

    actor: ActorHandle
    name: str | None = None
    timeout_s: float | None = None

    def call(self, method: str, *args: Any) -> Any:
        """``actor.<method>(*args)``, waited for under the timeout (see `call`)."""
        return call(self.actor, method, *args, timeout=self.timeout_s, name=self.name)

    def wait(self, refs: list[ObjectRef], method: str) -> None:
        """Waits for the results of calls already made, under the timeout.

        Raises:
            ReplayUnavailableError: not all of ``refs`` are ready within the timeout.
        """
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=self.timeout_s)
        if len(done) < len(refs):
            raise ReplayUnavailableError(
                timeout_message(self.actor, method, self.timeout_s, self.name)
            )

    @property
    def actor_id(self) -> str:
        """The actor's hex id (to tell two actors, or a recreated one, apart)."""
        return self.actor._actor_id.hex()


def timeout_message(
    actor: ActorHandle, method: str, timeout: float | None, name: str | None
) -> str:
    """The message of a replay call that did not return within ``timeout`` seconds."""
    who = f"replay actor {name or actor._actor_id.hex()}"
    return (
        f"The {who} did not answer `{method}` within {timeout} s: it is hung (e.g. stopped "
        "or swapping) or overloaded. Check its process (`ray list actors --detail`, its log "
        "under the Ray session's logs/ folder) and the node's memory; if it is only slow, "
        "raise config.training(replay_timeout_s=...)."
    )


def died_message(actor: ActorHandle, method: str, name: str | None, error: BaseException) -> str:
    """The message of a replay call whose actor died and was not restarted."""
    who = f"replay actor {name or actor._actor_id.hex()}"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"The {who} died during `{method}` and Ray did not restart it (its restarts are "
        f"used up, or its node is gone): {first_line}. Check the actor's log under the Ray "
        "session's logs/ folder and the node's memory (an out-of-memory kill is the usual "
        "cause); resume from the last checkpoint."
    )


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
    snapshot_path: str | None = None,
    max_restarts: int = 0,
    **bounds: float | None,
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
        snapshot_path: File of the actor's snapshots (see `ReplayActor`).
        max_restarts: How often Ray restarts the actor after a crash (-1: no
            limit). With restarts, the calls in flight are retried on the
            restarted actor, so callers see no error.
        **bounds: ``max_abs_obs``, ``max_abs_reward``, ``max_abs_action``.

    Returns:
        The actor handle. The actor lives as long as its owner (the process
        that created it) unless Ray options say otherwise.
    """
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if resources:
        options["resources"] = dict(resources)
    if name is not None:
        options.update(name=name, get_if_exists=True)
    if max_restarts:
        options.update(max_restarts=max_restarts, max_task_retries=-1)
    remote_class = ray.remote(ReplayActor)
    return remote_class.options(**options).remote(
        capacity,
        obs_dim,
        action_dim,
        holdout_every=holdout_every,
        seed=seed,
        snapshot_path=snapshot_path,
        **bounds,
    )


def get_replay_actor(name: str) -> ActorHandle:
    """Looks up a named replay actor (the DRIVE algorithm hands runners the handle instead).

    Raises:
        ValueError: If no live actor has that name in the current namespace.
    """
    return ray.get_actor(name)
