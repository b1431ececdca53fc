"""`DRIVE` (the Algorithm) and `register()`; its config is `DRIVEConfig` (``config.py``).

Data flow of one iteration of `DRIVE` (``training_step``, Algorithm 1 of the spec):

1. The EnvRunners step their envs for ``env_steps_per_iteration`` (T) steps in
   total -- uniformly random actions in [-1, 1] during warm-up, pi_theta
   afterwards -- and each pushes its transitions to the replay actor; the
   driver receives only their metrics.
2. Once the replay holds ``num_warmup_steps`` rows (and at least one batch),
   the driver asks the replay actor for one batch of C x B rows per Learner
   (C = ``updates_per_iteration``, B = ``train_batch_size_per_learner``),
   made into RLlib's learner batch inside the actor's process
   (`drive_rllib.algorithm.batch`), and passes the ObjectRefs to
   ``learner_group.update(batch_refs=...,
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
import tempfile
import uuid
from typing import Any

import numpy as np
import pyarrow.fs
import ray
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.env.env_runner import NUM_ENV_STEP_FAILURES_LIFETIME
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
from ray.tune.execution.placement_groups import PlacementGroupFactory

from drive_rllib import keys
from drive_rllib.algorithm import offline
from drive_rllib.algorithm.batch import sample_learner_batch
from drive_rllib.algorithm.checkpoint import (
    NO_REPLAY_ENV,
    REPLAY_FILE,
    IncompleteCheckpointError,
    atomic_directory,
    check_complete,
    contents,
    filesystem_and_path,
    newest_loadable_checkpoint,
    read_marker,
    save_replay,
    write_marker,
)
from drive_rllib.algorithm.checkpoint import restore_replay as restore_replay_file

# DRIVEConfig is defined in config.py; configs pickled when it lived here name this module.
from drive_rllib.algorithm.config import DRIVEConfig
from drive_rllib.algorithm.learner import RESTART_OPTIMIZERS, VALUE_ONLY
from drive_rllib.algorithm.notices import Notifier, UpdateProgress, heartbeat, long_step
from drive_rllib.algorithm.observations import ObservationShapeError, observation_scale
from drive_rllib.algorithm.resources import (
    REPLAY_START_TIMEOUT_S,
    replay_start_error,
    resource_shortfall,
    with_replay_bundle,
)
from drive_rllib.algorithm.returns import RecentReturns, smooth_returns
from drive_rllib.mujoco_log import MUJOCO_LOG_FILE, redirect_mujoco_warnings
from drive_rllib.replay.actor import ReplayHandle, create_replay_actor

logger = logging.getLogger(__name__)

__all__ = [
    "DRIVE",
    "REPLAY_FILE",
    "DRIVEConfig",
    "check_rejected_share",
    "register",
    "update_chunks",
]

#: How often Ray restarts a crashed replay actor (each restart reloads its newest snapshot).
REPLAY_MAX_RESTARTS = 10
#: The replay actor's snapshot file, in the trial's folder (``Algorithm.logdir``).
REPLAY_SNAPSHOT_FILE = "replay_snapshot.npz"
#: The rejected-row share is checked once this many rows were pushed (one bad row among
#: the first few must not end a run).
REJECTED_SHARE_MIN_ROWS = 1000


class DRIVE(Algorithm):
    """DRIVE on RLlib: EnvRunners fill a replay actor, Learners train from it.

    Reliability (see the README's reliability table):

    - the replay actor is restarted by Ray when it dies and reloads its newest
      snapshot; the driver counts the rows lost (``replay/rows_lost``), and
      every call into the actor has a timeout (``replay_timeout_s``);
    - ``num_env_steps_sampled_lifetime`` counts rows that reached the replay
      actor (the rows it stored, plus those a crash lost), not the runners'
      step counters; warm-up and stop criteria read it;
    - checkpoints are written atomically (`drive_rllib.algorithm.checkpoint`),
      also those Tune writes into a trial's folder, and a Tune restore continues
      from the newest complete checkpoint in the trial's folder.
    """

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> DRIVEConfig:
        return DRIVEConfig()

    @override(Algorithm)
    def setup(self, config: DRIVEConfig) -> None:
        # Outside Tune (config.build_algo()), runners and learners that do not fit the
        # cluster would wait forever: say what to lower instead. Under Tune the trial's
        # placement group already holds them.
        if ray.is_initialized() and ray.util.get_current_placement_group() is None:
            shortfall = resource_shortfall(
                config, ray.cluster_resources(), include_main_process=False
            )
            if shortfall:
                raise ValueError(shortfall)
        # MuJoCo's warnings go to the run folder, not to the terminal and ./MUJOCO_LOG.TXT.
        # Under Tune the trial folder of the results (self.logdir is a working folder in
        # Ray's session folder, which Tune does not copy there).
        redirect_mujoco_warnings(os.path.join(self._trial_folder(), MUJOCO_LOG_FILE))
        # The smoothed training return (env_runners/episode_return_mean), see `step`.
        self._recent_returns = RecentReturns(config.metrics_num_episodes_for_smoothing)
        # Notices of the long steps (compile, catch-up, restore, evaluation) for `rllib train`,
        # from the trial folder's name (Tune's trial id is not passed on to the Algorithm).
        self._notify = Notifier(lambda: os.path.basename(os.path.normpath(self.logdir)))
        self._learned_in_process = False
        super().setup(config)
        observation_space, action_space = self.spaces[DEFAULT_MODULE_ID]
        name = f"drive_replay_{uuid.uuid4().hex[:12]}"
        self._snapshot_path = (
            os.path.join(self.logdir, REPLAY_SNAPSHOT_FILE)
            if self.config.replay_snapshot_interval
            else None
        )
        bound = float(self.config.max_abs_value)
        actor = create_replay_actor(
            self.config.replay_capacity,
            int(np.prod(observation_space.shape)),
            int(np.prod(action_space.shape)),
            name=name,
            holdout_every=self.config.holdout_every,
            seed=self.config.seed,
            num_cpus=0,
            resources=self.config.replay_actor_resources,
            snapshot_path=self._snapshot_path,
            max_restarts=REPLAY_MAX_RESTARTS,
            max_abs_obs=bound * observation_scale(observation_space),
            max_abs_reward=bound,
            max_abs_action=bound,
        )
        self._replay = ReplayHandle(actor, name, self.config.replay_timeout_s)
        try:
            # The actor imports RLlib's batch code now, within the start timeout, rather
            # than in its first `sample`, which has only `replay_timeout_s`.
            ray.get(
                actor.__ray_call__.remote(_import_batch_code),
                timeout=REPLAY_START_TIMEOUT_S,
            )
        except ray.exceptions.GetTimeoutError as error:
            raise RuntimeError(replay_start_error(self.config.replay_actor_resources)) from error
        self._rows_imported = offline.import_dataset(self)  # config.offline_data(input_=...)
        # What the driver knows of the replay actor (the counters are checkpointed).
        self._replay_pid: int | None = None
        self._replay_total_added = 0
        self._rows_lost = 0
        self._replay_restarts = 0
        # Rows counted before a restore that left the replay behind (restore_replay=False).
        self._rows_not_restored = 0
        self._read_replay_status(baseline=True)
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
        """RLlib's request, plus one bundle for the replay actor's custom resources."""
        return with_replay_bundle(super().default_resource_request(config), config)

    @property
    def replay_actor(self) -> ray.actor.ActorHandle:
        """The replay actor holding every transition the EnvRunners collected."""
        return self._replay.actor

    @property
    def num_rows_counted(self) -> int:
        """Rows that reached the replay actor: those it holds the count of, plus those a
        crash lost, and those counted before a restore without the replay.
        ``num_env_steps_sampled_lifetime``, warm-up and stop criteria use it."""
        return (
            self._replay_total_added
            + self._rows_lost
            + self._rows_not_restored
            - self._rows_imported
        )

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

    def _read_replay_status(self, baseline: bool = False) -> dict[str, Any]:
        """The replay actor's counters; notices (and logs once) a restart and its lost rows.

        With ``baseline`` (after setup or a restore) the counters are taken as they are.
        """
        status = self._replay.call("status")
        restarted = self._replay_pid is not None and status["pid"] != self._replay_pid
        if restarted and not baseline:
            restored = status["restored_total_added"] or 0
            lost = max(0, self._replay_total_added - restored)
            self._rows_lost += lost
            self._replay_restarts += 1
            logger.warning(
                "The replay actor %s died and Ray restarted it (pid %s -> %s); it reloaded "
                "%s: %d rows added after that snapshot were lost (replay/rows_lost is now "
                "%d). Training continues.",
                self._replay.name,
                self._replay_pid,
                status["pid"],
                f"its snapshot of {restored} rows" if restored else "no snapshot (empty)",
                lost,
                self._rows_lost,
            )
        self._replay_pid = status["pid"]
        self._replay_total_added = status["total_added"]
        return status

    @override(Algorithm)
    def step(self) -> dict[str, Any]:
        """RLlib's iteration, whose ``env_runners/episode_return_mean`` becomes the mean of
        the last ``metrics_num_episodes_for_smoothing`` finished episodes, carried across
        iterations and EnvRunners (`drive_rllib.algorithm.returns`)."""
        return smooth_returns(super().step(), self._recent_returns)

    @override(Algorithm)
    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """RLlib's evaluation; a notice every interval while it runs (`rllib train`)."""
        with heartbeat(self._notify, long_step("evaluating")):
            return super().evaluate(*args, **kwargs)

    @override(Algorithm)
    def training_step(self) -> None:
        """One iteration of Algorithm 1: T env steps, C update steps (after
        ``value_only_updates`` steps that fit psi alone; the optimizers restarted first
        under ``restart_optimizers``), weight sync."""
        config = self.config
        warmup = self.num_rows_counted + self._rows_imported < config.num_warmup_steps

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
        self._report_env_failures()

        status = self._read_replay_status()
        if status.get("env_error"):
            # A remote runner's process ended on it; RLlib would restart the runner forever.
            raise ObservationShapeError(status["env_error"])
        self._log_replay_metrics(status, warmup)
        check_rejected_share(
            status["rows_rejected"], status["total_added"], config.max_rejected_share
        )

        ready = (
            status["size"] >= max(config.num_warmup_steps, config.train_batch_size_per_learner)
            and status["num_train"] > 0
            and (status["num_holdout"] > 0 or not config.model_eval_interval)
        )
        if not ready:
            self.metrics.log_value(keys.UPDATE_STEPS, 0, window=1)
            self._maybe_snapshot()
            return

        num_updates = 0
        chunks = self._update_chunks(offline.catch_up_rows(status["size"], self._rows_imported))
        progress = UpdateProgress(
            chunks, not self._learned_in_process, config.torch_compile_learner, status["size"]
        )
        self._learned_in_process = True
        if progress.start_line():
            self._notify(progress.start_line())
        with (
            self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)),
            heartbeat(self._notify, progress.describe),
        ):
            restart = config.restart_optimizers
            if config.value_only_updates:
                self._update_learners(config.value_only_updates, value_only=True, restart=restart)
                num_updates += config.value_only_updates
                restart = False
            # One learner_group.update of C steps per chunk: the catch-up after warm-up
            # runs several, so no batch exceeds C x B rows.
            for chunk in chunks:
                self._update_learners(chunk, restart=restart)
                restart = False
                num_updates += chunk
                progress.chunk_done(chunk)
        if progress.end_line():
            self._notify(progress.end_line())
        self.metrics.log_value(keys.UPDATE_STEPS, num_updates, window=1)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                inference_only=True,
            )
        self._maybe_snapshot()

    def _update_learners(self, steps: int, value_only: bool = False, restart: bool = False) -> None:
        """``steps`` update steps on every Learner, each on its own replayed minibatch;
        ``value_only``: steps that fit psi alone (``value_only_updates``); ``restart``: the
        optimizers restart first (``restart_optimizers``)."""
        config = self.config
        batch_refs = [
            self._replay.actor.__ray_call__.remote(
                sample_learner_batch,
                steps * config.train_batch_size_per_learner,
                recent_rows=config.entropy_floor_recent_rows,
            )
            for _ in range(max(config.num_learners, 1))
        ]
        # The Learners resolve the refs without a timeout: wait for them here.
        self._replay.wait(batch_refs, "sample")
        timesteps: dict[str, Any] = {NUM_ENV_STEPS_SAMPLED_LIFETIME: self.num_rows_counted}
        if value_only:
            timesteps[VALUE_ONLY] = True
        if restart:
            timesteps[RESTART_OPTIMIZERS] = True
        learner_results = self.learner_group.update(
            batch_refs=batch_refs,
            minibatch_size=config.train_batch_size_per_learner,
            num_epochs=1,
            timesteps=timesteps,
        )
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

    def _update_chunks(self, replay_size: int) -> list[int]:
        """This iteration's update steps, in chunks of at most C (``update_chunks``)."""
        done = self.metrics.peek(
            (LEARNER_RESULTS, DEFAULT_MODULE_ID, keys.UPDATE_STEPS_LIFETIME), default=0
        )
        config = self.config
        return update_chunks(
            config.updates_per_iteration,
            config.env_steps_per_iteration,
            replay_size,
            catch_up=config.warmup_catch_up and not done,
        )

    def _log_replay_metrics(self, status: dict[str, Any], warmup: bool) -> None:
        self.metrics.log_dict(
            {
                # Rows that reached the replay, not the runners' step counters: a runner
                # that died after its push, or a dropped row, would make them differ.
                NUM_ENV_STEPS_SAMPLED_LIFETIME: self.num_rows_counted,
                keys.REPLAY_SIZE: status["size"],
                keys.REPLAY_ROWS_REJECTED: status["rows_rejected"],
                keys.REPLAY_ROWS_LOST: self._rows_lost,
                keys.REPLAY_ROWS_IMPORTED: self._rows_imported,
                keys.REPLAY_RESTARTS: self._replay_restarts,
                keys.WARMUP: float(warmup),
            },
            window=1,
        )

    def _maybe_snapshot(self) -> None:
        """Every ``replay_snapshot_interval`` iterations the replay actor writes its snapshot."""
        interval = self.config.replay_snapshot_interval
        if self._snapshot_path and interval and (self.iteration + 1) % interval == 0:
            self._replay.call("snapshot")

    # -- checkpoints: RLlib's state plus the replay contents, written atomically ---------

    def _marker(self) -> dict[str, Any]:
        """What ``drive_checkpoint.json`` records: where a restore continues from."""
        return {
            "format_version": 1,
            "iteration": int(self.iteration),
            "env_steps": int(self.num_rows_counted),
            "replay_total_added": int(self._replay_total_added),
            "rows_lost": int(self._rows_lost),
            "rows_imported": int(self._rows_imported),
            "rows_not_restored": int(self._rows_not_restored),
            "replay_restarts": int(self._replay_restarts),
            "time_total_s": float(getattr(self, "_time_total", 0.0) or 0.0),
            "recent_returns": self._recent_returns.get_state(),
        }

    @override(Algorithm)
    def save_to_path(
        self,
        path: str | pathlib.Path | None = None,
        *,
        state: dict[str, Any] | None = None,
        filesystem: pyarrow.fs.FileSystem | None = None,
        use_msgpack: bool = False,
    ) -> str:
        """Saves RLlib's checkpoint, ``replay.npz`` and ``drive_checkpoint.json``, atomically.

        On a local filesystem everything is written into a hidden sibling folder,
        fsynced, and renamed to ``path`` (replacing an existing checkpoint there
        in one step): a crash leaves the previous checkpoint as it was. On other
        filesystems the marker file is written last, and loading a folder
        without it fails.
        """
        if path is None:
            path = tempfile.mkdtemp()
        if filesystem is None:
            filesystem, path = filesystem_and_path(path)
        self._read_replay_status()
        if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
            path = super().save_to_path(
                path, state=state, filesystem=filesystem, use_msgpack=use_msgpack
            )
            save_replay(self._replay, path, filesystem)
            write_marker(path, self._marker(), filesystem)
            return path
        with atomic_directory(path) as temporary:
            super().save_to_path(
                temporary, state=state, filesystem=filesystem, use_msgpack=use_msgpack
            )
            save_replay(self._replay, temporary, filesystem)
            # The file list and row count let a resume tell a damaged copy from this one.
            write_marker(temporary, {**self._marker(), **contents(temporary)})
        if self._snapshot_path:
            # The checkpoint's replay file is the newest snapshot too (a hard link).
            self._replay.call("link_snapshot", os.path.join(path, REPLAY_FILE))
        return path

    @override(Algorithm)
    def restore_from_path(
        self,
        path: str | pathlib.Path,
        *args: Any,
        restore_replay: bool = True,
        **kwargs: Any,
    ) -> None:
        """Restores RLlib's state and, from a full checkpoint, the replay and the counters.

        Args:
            path: A checkpoint folder written by `save_to_path` (or a component's).
            restore_replay: False loads the weights and starts with an empty
                replay on purpose, also from a checkpoint without ``replay.npz``.
            *args, **kwargs: RLlib's arguments (``component``, ``filesystem``, ...).

        Raises:
            IncompleteCheckpointError: the checkpoint has no ``replay.npz`` (and
                ``restore_replay`` is True).
        """
        if kwargs.get("filesystem") is None:
            kwargs["filesystem"], path = filesystem_and_path(path)
        filesystem = kwargs["filesystem"]
        full = kwargs.get("component") is None
        marker = check_complete(path, filesystem, restore_replay) if full else None
        super().restore_from_path(path, *args, **kwargs)
        if not full:
            return
        if restore_replay:
            with heartbeat(self._notify, long_step(f"restoring the replay from {path}")):
                restore_replay_file(self._replay, path, filesystem)
        self._read_replay_status(baseline=True)
        if marker is not None:
            self._recent_returns.set_state(marker.get("recent_returns"))
        if marker is not None and restore_replay:
            self._rows_lost = int(marker.get("rows_lost", 0))
            self._replay_restarts = int(marker.get("replay_restarts", 0))
            self._rows_imported = int(marker.get("rows_imported", 0))
            self._rows_not_restored = int(marker.get("rows_not_restored", 0))
        else:
            self._rows_lost = self._replay_restarts = 0
            # The env steps go on from the checkpoint's, though its rows were left behind.
            self._rows_not_restored = int(marker["env_steps"]) if marker is not None else 0
        # New episodes, not a replay of the run's first ones (the Learner's RNG states
        # came back with its state).
        generation = 1 + int(marker["iteration"] if marker is not None else self.iteration)
        self.env_runner_group.foreach_env_runner(
            lambda runner: runner.advance_seeds(generation), local_env_runner=True
        )

    @override(Algorithm)
    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Tune's save: writes the trial folder's checkpoint atomically, in place.

        Tune has the checkpoint written into a temporary folder and then copies
        it into the trial folder file by file, so a crash during the copy would
        leave a partial checkpoint under its final name. With local storage the
        checkpoint is written straight to its final folder by `save_to_path`;
        Tune's copy of the (empty) temporary folder then adds nothing.
        """
        destination = self._tune_checkpoint_destination()
        if destination is None:
            super().save_checkpoint(checkpoint_dir)
            return
        self.save_to_path(destination, use_msgpack=self.config._use_msgpack_checkpoints)

    @override(Algorithm)
    def load_checkpoint(self, checkpoint_dir: str) -> None:
        """Tune's restore: continues from the newest complete checkpoint of the trial.

        Tune restores the checkpoint it recorded last; after a crash a newer
        complete one may be on disk (saved, but not yet recorded in Tune's
        experiment state). That one is loaded instead, and the iteration
        counter continues from it. With ``NO_REPLAY_ENV`` set the replay is not
        restored (and a damaged one does not make a checkpoint unloadable).
        """
        restore_replay = os.environ.get(NO_REPLAY_ENV) != "1"
        path = os.path.abspath(checkpoint_dir)
        storage = getattr(self, "_storage", None)
        trial_dir = getattr(storage, "trial_fs_path", None)
        if trial_dir is not None and os.path.dirname(path) == os.path.abspath(trial_dir):
            newest, skipped = newest_loadable_checkpoint(trial_dir, need_replay=restore_replay)
            for name, problem in skipped:
                logger.warning("Skipping checkpoint %s: %s.", name, problem)
            if newest is None:
                raise IncompleteCheckpointError(
                    f"No loadable checkpoint in {trial_dir}: "
                    + "; ".join(f"{name}: {problem}" for name, problem in skipped)
                )
            if newest[0] != path:
                logger.warning(
                    "Tune recorded checkpoint %s; continuing from %s, the newest loadable one.",
                    path,
                    newest[0],
                )
                path = newest[0]
        marker = read_marker(path)
        if marker is not None:
            self._iteration = int(marker["iteration"])
            self._time_total = float(marker.get("time_total_s", self._time_total or 0.0))
            logger.warning(
                "Continuing from %s: iteration %d, %d env steps.",
                path,
                marker["iteration"],
                marker["env_steps"],
            )
        if not restore_replay:
            logger.warning(
                "The replay starts empty (%s=1): weights and optimizers only.", NO_REPLAY_ENV
            )
        self.restore_from_path(path, restore_replay=restore_replay)

    def _report_env_failures(self) -> None:
        """Once per process, in the driver's output: env steps that raised (each sub-env
        recreated and its episode dropped; the EnvRunner logs the first exception)."""
        failures = self.metrics.peek(
            (ENV_RUNNER_RESULTS, NUM_ENV_STEP_FAILURES_LIFETIME), default=0
        )
        if failures and not getattr(self, "_env_failures_reported", False):
            self._env_failures_reported = True
            logger.warning(
                "%d env step(s) raised so far: the sub-env was recreated and its episode "
                "dropped each time (restart_failed_sub_environments); the EnvRunner's log has "
                "the first exception, env_runners/num_env_step_failures counts them.",
                int(failures),
            )

    def _trial_folder(self) -> str:
        """The trial folder of the results under Tune with local storage, else ``logdir``."""
        storage = getattr(self, "_storage", None)
        if storage is not None and isinstance(
            storage.storage_filesystem, pyarrow.fs.LocalFileSystem
        ):
            os.makedirs(storage.trial_fs_path, exist_ok=True)
            return storage.trial_fs_path
        return self.logdir

    def _tune_checkpoint_destination(self) -> str | None:
        """The trial folder's next checkpoint folder when Tune saves to local storage."""
        storage = getattr(self, "_storage", None)
        if storage is None or not isinstance(
            storage.storage_filesystem, pyarrow.fs.LocalFileSystem
        ):
            return None
        from ray.train._internal.storage import StorageContext

        name = StorageContext._make_checkpoint_dir_name(storage.current_checkpoint_index + 1)
        return os.path.join(storage.trial_fs_path, name)

    @override(Algorithm)
    def cleanup(self) -> None:
        super().cleanup()
        replay = getattr(self, "_replay", None)
        if replay is not None:
            ray.kill(replay.actor)
            self._replay = None


def update_chunks(
    updates_per_iteration: int, env_steps_per_iteration: int, replay_size: int, catch_up: bool
) -> list[int]:
    """Update steps of one learning iteration, in chunks of at most C = ``updates_per_iteration``.

    C steps; with ``catch_up`` (the first learning iteration under
    ``warmup_catch_up``) max(C, round(C / T * replay_size)), so that the
    update-to-data ratio C / T also covers the warm-up's env steps.
    """
    total = updates_per_iteration
    if catch_up:
        total = max(total, round(updates_per_iteration / env_steps_per_iteration * replay_size))
    chunks = [updates_per_iteration] * (total // updates_per_iteration)
    if total % updates_per_iteration:
        chunks.append(total % updates_per_iteration)
    return chunks


def _import_batch_code(_replay: Any) -> bool:
    """Runs in the replay actor: imports what `sample_learner_batch` needs (RLlib)."""
    import drive_rllib.algorithm.batch  # noqa: F401

    return True


def check_rejected_share(rows_rejected: int, rows_stored: int, max_share: float) -> None:
    """Fails the run when more than ``max_share`` of the rows pushed were rejected.

    Checked from `REJECTED_SHARE_MIN_ROWS` rows pushed on, so that a few bad rows
    among the first ones do not end a run.

    Raises:
        RuntimeError: the share is exceeded (the message says what to change).
    """
    pushed = rows_rejected + rows_stored
    if pushed < REJECTED_SHARE_MIN_ROWS or rows_rejected <= max_share * pushed:
        return
    raise RuntimeError(
        f"{rows_rejected} of {pushed} rows ({rows_rejected / pushed:.1%}) pushed to the "
        f"replay were rejected (NaN/inf, or beyond max_abs_value), more than "
        f"max_rejected_share={max_share}: the env emits bad data. The EnvRunners' logs name "
        "the first rejected row (episode, step, field). Fix or wrap the env; raise "
        "config.training(max_abs_value=...) if such magnitudes are genuine, or "
        "max_rejected_share to accept more dropped rows."
    )


def register() -> None:
    """Registers DRIVE with Tune as "DRIVE", so ``tune.Tuner("DRIVE")`` and YAML ``run: DRIVE`` work."""
    from ray.tune.registry import register_trainable

    register_trainable("DRIVE", DRIVE)
