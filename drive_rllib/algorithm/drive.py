"""`DRIVE`: the RLlib Algorithm running Algorithm 1 of the spec, and `register()`.

Data flow of one iteration (``training_step``):

1. The EnvRunners step their envs for ``env_steps_per_iteration`` (T) steps in
   total -- uniformly random actions in [-1, 1] during warm-up, pi_theta
   afterwards -- and each pushes its transitions to the replay actor; the
   driver receives only their metrics.
2. Once the replay holds ``num_warmup_steps`` rows (and at least one batch),
   the driver asks the replay actor for one batch of C x B rows per Learner
   (C = ``updates_per_iteration``, B = ``train_batch_size_per_learner``) and
   passes the ObjectRefs to ``learner_group.update(batch_refs=...,
   minibatch_size=B)``: each Learner resolves its own ref and runs C update
   steps. The driver holds refs only (with ``num_learners=0`` the Learner lives
   in the driver process).
3. The EnvRunners receive the new inference-only weights (pi_theta and the
   normaliser).

The replay actor is created in ``setup`` (0 CPUs, no resource bundle needed)
and handed to every EnvRunner and Learner, and again to EnvRunners that RLlib
restores after a failure. Its contents are written next to every checkpoint
(``replay.npz``) and loaded on restore.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import tempfile
import uuid
from typing import Any

import numpy as np
import pyarrow.fs
import ray
from ray.tune.execution.placement_groups import PlacementGroupFactory
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.env.env_runner_group import EnvRunnerGroup
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from drive_rllib.algorithm import metrics as keys
from drive_rllib.algorithm.config import DRIVEConfig
from drive_rllib.replay.actor import create_replay_actor
from drive_rllib.replay.storage import ReplayStorage

logger = logging.getLogger(__name__)

#: The replay contents inside a checkpoint directory.
REPLAY_FILE = "replay.npz"
#: How long setup() waits for the replay actor to be scheduled.
REPLAY_START_TIMEOUT_S = 120


class DRIVE(Algorithm):
    """DRIVE on RLlib: EnvRunners fill a replay actor, Learners train from it."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> DRIVEConfig:
        return DRIVEConfig()

    @override(Algorithm)
    def setup(self, config: DRIVEConfig) -> None:
        super().setup(config)
        observation_space, action_space = self.spaces[DEFAULT_MODULE_ID]
        self._replay = create_replay_actor(
            self.config.replay_capacity,
            int(np.prod(observation_space.shape)),
            int(np.prod(action_space.shape)),
            name=f"drive_replay_{uuid.uuid4().hex[:12]}",
            holdout_every=self.config.holdout_every,
            seed=self.config.seed,
            num_cpus=0,
            resources=self.config.replay_actor_resources,
        )
        try:
            ray.get(self._replay.ping.remote(), timeout=REPLAY_START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as error:
            raise RuntimeError(
                f"The replay actor did not start within {REPLAY_START_TIMEOUT_S} s: no node "
                f"offers its resources {self.config.replay_actor_resources}. Start a node "
                "with them (e.g. the head of cluster/aws.yaml offers `head: 1`) or change "
                "config.training(replay_actor_resources=...)."
            ) from error
        self._connect_env_runners()
        replay = self._replay
        for result in self.learner_group.foreach_learner(
            lambda learner: learner.set_replay_actor(replay)
        ):
            result.get()

    @classmethod
    @override(Algorithm)
    def default_resource_request(
        cls, config: DRIVEConfig | dict[str, Any]
    ) -> PlacementGroupFactory:
        """RLlib's request, plus one bundle for the replay actor's custom resources.

        Under Tune every actor of a trial is scheduled in the trial's placement
        group, so an actor asking for e.g. ``{"head": 0.01}`` only starts if a
        bundle carries that resource.
        """
        factory = super().default_resource_request(config)
        resources = (
            config.get("replay_actor_resources")
            if isinstance(config, dict)
            else config.replay_actor_resources
        )
        if not resources:
            return factory
        return PlacementGroupFactory(
            bundles=[*factory.bundles, {"CPU": 0, **resources}], strategy=factory.strategy
        )

    @property
    def replay_actor(self) -> ray.actor.ActorHandle:
        """The replay actor holding every transition the EnvRunners collected."""
        return self._replay

    def _connect_env_runners(self, remote_worker_ids: list[int] | None = None) -> None:
        """Hands the replay actor to all training EnvRunners (or only the given ones)."""
        replay = self._replay
        self.env_runner_group.foreach_env_runner(
            lambda env_runner: env_runner.set_replay_actor(replay),
            local_env_runner=remote_worker_ids is None,
            remote_worker_ids=remote_worker_ids,
        )

    @override(Algorithm)
    def restore_env_runners(self, env_runner_group: EnvRunnerGroup) -> list[int]:
        """Restores failed EnvRunners as RLlib does, then hands them the replay actor."""
        restored = super().restore_env_runners(env_runner_group)
        if restored and env_runner_group is self.env_runner_group:
            self._connect_env_runners(remote_worker_ids=restored)
        return restored

    @override(Algorithm)
    def training_step(self) -> None:
        """One iteration of Algorithm 1: T env steps, C update steps, weight sync."""
        config = self.config
        env_steps = self.metrics.peek(
            (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0
        )
        warmup = env_steps < config.num_warmup_steps

        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            _, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=config.env_steps_per_iteration,
                sample_timeout_s=config.sample_timeout_s,
                random_actions=warmup,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)

        size, num_train, num_holdout = ray.get(
            [self._replay.size.remote(split) for split in ("all", "train", "holdout")]
        )
        self.metrics.log_value(keys.REPLAY_SIZE, size, window=1)
        self.metrics.log_value(keys.WARMUP, float(warmup), window=1)

        ready = (
            size >= max(config.num_warmup_steps, config.train_batch_size_per_learner)
            and num_train > 0
            and (num_holdout > 0 or not config.model_eval_interval)
        )
        if not ready:
            self.metrics.log_value(keys.UPDATE_STEPS, 0, window=1)
            return

        num_updates = config.updates_per_iteration
        batch_size = config.train_batch_size_per_learner
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            batch_refs = [
                self._replay.sample_learner_batch.remote(num_updates * batch_size)
                for _ in range(max(config.num_learners, 1))
            ]
            learner_results = self.learner_group.update(
                batch_refs=batch_refs,
                minibatch_size=batch_size,
                num_epochs=1,
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0
                    )
                },
            )
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        self.metrics.log_value(keys.UPDATE_STEPS, num_updates, window=1)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                inference_only=True,
            )

    # -- checkpoints: RLlib's state plus the replay contents ----------------------------

    @override(Algorithm)
    def save_to_path(
        self,
        path: str | pathlib.Path | None = None,
        *,
        state: dict[str, Any] | None = None,
        filesystem: pyarrow.fs.FileSystem | None = None,
        use_msgpack: bool = False,
    ) -> str:
        """Saves RLlib's checkpoint, plus the replay contents as ``replay.npz`` inside it."""
        if path is not None and filesystem is None:
            filesystem, path = _filesystem_and_path(path)
        path = super().save_to_path(
            path, state=state, filesystem=filesystem, use_msgpack=use_msgpack
        )
        target = os.path.join(path, REPLAY_FILE)
        if _is_local(filesystem) and self._replay_is_on_this_node():
            # The actor writes the file itself: the rows never pass through here.
            ray.get(self._replay.save.remote(target))
            return path
        replay_state = ray.get(self._replay.get_state.remote())
        with tempfile.TemporaryDirectory() as directory:
            storage = _storage_for(replay_state)
            storage.set_state(replay_state)
            written = storage.save(os.path.join(directory, REPLAY_FILE))
            if _is_local(filesystem):
                shutil.copyfile(written, target)
            else:
                pyarrow.fs.copy_files(written, target, destination_filesystem=filesystem)
        return path

    @override(Algorithm)
    def restore_from_path(self, path: str | pathlib.Path, *args: Any, **kwargs: Any) -> None:
        """Restores RLlib's state and, from a full checkpoint, the replay contents."""
        if kwargs.get("filesystem") is None:
            kwargs["filesystem"], path = _filesystem_and_path(path)
        super().restore_from_path(path, *args, **kwargs)
        if kwargs.get("component") is not None:
            return
        filesystem = kwargs["filesystem"]
        source = os.path.join(path, REPLAY_FILE)
        if filesystem.get_file_info(source).type == pyarrow.fs.FileType.NotFound:
            logger.warning(
                "Checkpoint %s holds no %s; the replay actor stays empty.", path, REPLAY_FILE
            )
            return
        if _is_local(filesystem) and self._replay_is_on_this_node():
            ray.get(self._replay.load.remote(source))
            return
        with tempfile.TemporaryDirectory() as directory:
            local = os.path.join(directory, REPLAY_FILE)
            pyarrow.fs.copy_files(source, local, source_filesystem=filesystem)
            replay_state = _load_state(local)
        ray.get(self._replay.set_state.remote(replay_state))

    def _replay_is_on_this_node(self) -> bool:
        node_of_replay = ray.get(
            self._replay.__ray_call__.remote(lambda _actor: ray.get_runtime_context().get_node_id())
        )
        return node_of_replay == ray.get_runtime_context().get_node_id()

    @override(Algorithm)
    def cleanup(self) -> None:
        super().cleanup()
        replay = getattr(self, "_replay", None)
        if replay is not None:
            ray.kill(replay)
            self._replay = None


def _filesystem_and_path(path: str | pathlib.Path) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem of a path or URI, and the path within it (local paths made absolute)."""
    path = str(path)
    if "://" not in path:
        path = os.path.abspath(path)
    return pyarrow.fs.FileSystem.from_uri(path)


def _is_local(filesystem: pyarrow.fs.FileSystem | None) -> bool:
    return filesystem is None or isinstance(filesystem, pyarrow.fs.LocalFileSystem)


def _storage_for(replay_state: dict[str, Any]) -> ReplayStorage:
    return ReplayStorage(
        int(replay_state["capacity"]),
        int(replay_state["obs_dim"]),
        int(replay_state["action_dim"]),
        holdout_every=int(replay_state["holdout_every"]),
    )


def _load_state(file: str) -> dict[str, Any]:
    """The replay state in a file written by `ReplayStorage.save`, read in this process."""
    with np.load(file, allow_pickle=False) as data:
        header = {
            name: int(data[name]) for name in ("capacity", "obs_dim", "action_dim", "holdout_every")
        }
    storage = _storage_for(header)
    storage.load(file)
    return storage.get_state()


def register() -> None:
    """Registers DRIVE with Tune as "DRIVE", so ``tune.Tuner("DRIVE")`` and YAML ``run: DRIVE`` work."""
    from ray.tune.registry import register_trainable

    register_trainable("DRIVE", DRIVE)
