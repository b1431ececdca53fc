"""`DRIVEEnvRunner`: collects experience and pushes it straight to the replay actor.

A training runner turns the episode chunks of each ``sample()`` call into flat
numpy transitions, adds them to the replay actor in one remote call, and
returns no episodes: the driver only receives the runner's metrics (episode
returns, steps sampled) through ``get_metrics()``.

Actions are stored in module space [-1, 1]: the RLModule emits them there and
RLlib's module-to-env connector rescales a copy to the env's bounds. Random
warm-up actions are drawn uniformly in [-1, 1] by the RLModule too (instead of
``env.action_space.sample()``, which RLlib would store in env units), so the
whole buffer has one action scale.

Bad data: every sub-env is wrapped in `EndEpisodeOnBadObservation`, so an
observation with NaN or inf (or beyond the configured bound) ends its episode
(the vector env resets that sub-env; the action computed for the bad
observation is never applied). The replay actor drops the rows that carry bad
values and keeps the others (``push``); the runner logs the first dropped row
(episode id, step) once.

A remote runner whose push times out logs the error and returns: the driver
reports the hung replay actor (one clear error), and RLlib does not restart a
healthy runner for it. The local runner (``num_env_runners=0``) raises directly.

Lean collection (``DRIVEConfig.lean_collection``, default on): a training
runner steps its ``num_envs_per_env_runner`` vectorised envs (RLlib's own
gymnasium vector env) in a loop of its own: one batched forward of pi_theta
per vector step, the actions rescaled to the env's bounds as RLlib's
connector does, the transitions written into preallocated numpy arrays, and
one push of the whole chunk to the replay actor. It skips what DRIVE does not
use: RLlib's connector pipelines, the episode objects and the per-episode
callbacks. It logs RLlib's EnvRunner metrics (env steps, episodes, episode
return / length / duration). RLlib's own loop runs instead where the lean one
would change behaviour: on evaluation runners, with user connectors,
episode callbacks or ``on_sample_end``, with ``num_episodes`` or
``batch_mode="complete_episodes"``, and with an env that does not autoreset
on the next step.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers.vector import DictInfoToList
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.env_runner import ENV_STEP_FAILURE, NUM_ENV_STEP_FAILURES_LIFETIME
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import SAMPLE_TIMER, WEIGHTS_SEQ_NO

from drive_rllib import keys
from drive_rllib.algorithm.observations import (
    ObservationShapeError,
    bad_observation_env_creator,
)
from drive_rllib.algorithm.returns import RETURNS_KEY
from drive_rllib.mujoco_log import redirect_mujoco_warnings
from drive_rllib.replay.actor import ReplayHandle, ReplayUnavailableError

logger = logging.getLogger(__name__)

#: Callbacks RLlib's sampling loop makes and the lean loop does not.
_SAMPLING_CALLBACKS = (
    "on_episode_created",
    "on_episode_start",
    "on_episode_step",
    "on_episode_end",
    "on_sample_end",
)

#: The gymnasium id under which an EnvRunner registers its wrapped env creator.
WRAPPED_ENV_ID = "drive-bad-observation-wrapped-v0"

#: Seed distance between the generations of a restored run's EnvRunners (RLlib's runners
#: of one generation are `worker_index * 10000` apart).
SEED_STRIDE = 1_000_003


def row_origin(episodes: Sequence[SingleAgentEpisode], row: int) -> tuple[str, int]:
    """(episode id, env step) of row ``row`` of `episodes_to_transitions` (episodes)."""
    for episode in episodes:
        num_steps = len(episode)
        if row < num_steps:
            return str(episode.id_), int(episode.t_started + row)
        row -= num_steps
    raise IndexError(f"row {row} beyond the episodes' steps")


def episodes_to_transitions(episodes: Sequence[SingleAgentEpisode]) -> dict[str, np.ndarray]:
    """Flat transitions of episode chunks, in the replay actor's batch format.

    Each chunk of ``n`` env steps contributes ``n`` rows. Only the last row of
    a finished chunk carries its ``terminated`` / ``truncated`` flag; an
    unfinished chunk (cut at the end of a ``sample()`` call) has none, and its
    continuation arrives with the next call (chunks do not overlap).

    Args:
        episodes: Episode chunks as returned by ``SingleAgentEnvRunner.sample``.

    Returns:
        obs [T, S], action [T, A], reward [T], next_obs [T, S] (float32),
        terminated [T], truncated [T] (bool), with T the total env steps.
    """
    parts: dict[str, list[np.ndarray]] = {
        key: [] for key in ("obs", "action", "reward", "next_obs", "terminated", "truncated")
    }
    for episode in episodes:
        num_steps = len(episode)
        if num_steps == 0:
            continue
        observations = np.asarray(episode.get_observations(), dtype=np.float32)
        observations = observations.reshape(num_steps + 1, -1)
        actions = np.asarray(episode.get_actions(), dtype=np.float32).reshape(num_steps, -1)
        terminated = np.zeros(num_steps, dtype=bool)
        truncated = np.zeros(num_steps, dtype=bool)
        terminated[-1] = episode.is_terminated
        truncated[-1] = episode.is_truncated
        parts["obs"].append(observations[:-1])
        parts["next_obs"].append(observations[1:])
        parts["action"].append(actions)
        parts["reward"].append(np.asarray(episode.get_rewards(), dtype=np.float32))
        parts["terminated"].append(terminated)
        parts["truncated"].append(truncated)
    if not parts["obs"]:
        return {}
    return {key: np.concatenate(values) for key, values in parts.items()}


class DRIVEEnvRunner(SingleAgentEnvRunner):
    """A `SingleAgentEnvRunner` that adds its samples to DRIVE's replay actor.

    The Algorithm hands every training runner the replay actor's handle
    (``set_replay_actor``), also runners Ray recreated after a failure.
    Evaluation runners get no handle and return their episodes as usual.
    """

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        # Before the envs are made: MuJoCo's warnings to logging, not to the terminal and
        # ./MUJOCO_LOG.TXT (in the Algorithm's process, keep DRIVE.setup's run-folder log).
        redirect_mujoco_warnings(replace=False)
        self._replay: ReplayHandle | None = None
        self.num_transitions_pushed = 0
        self.num_transitions_rejected = 0
        self._rejection_logged = False
        self._lean: LeanState | None = None
        #: Wrong observation shapes seen by the envs (`EndEpisodeOnBadObservation`).
        self.env_errors: list[ObservationShapeError] = []
        super().__init__(config=config, **kwargs)

    def set_replay_actor(self, replay: ReplayHandle) -> None:
        """Sets the replay actor this runner adds its transitions to."""
        self._replay = replay

    def advance_seeds(self, generation: int) -> None:
        """Moves the env and sampling seeds on by ``generation`` (a restore's iteration).

        A runner built for a restored run starts from the config's seed, as the
        original run did; without this, its first episodes would repeat the run's
        first episodes.
        """
        base = getattr(self, "_base_seed", self._seed)
        self._base_seed = base
        if base is None:
            return
        self._seed = int(base + SEED_STRIDE * generation)
        self._needs_initial_reset = True
        if self.worker_index:
            # A remote runner's own sampling noise; the local runner shares the driver's
            # RNGs with the local Learner, whose restored states must stand.
            torch.manual_seed(self._seed)
            np.random.seed(self._seed % 2**32)

    @override(SingleAgentEnvRunner)
    def _log_episode_metrics(self, length: Any, ret: Any, sec: Any) -> None:
        """RLlib's episode metrics, plus the episode's return in a list the driver folds into
        the smoothed return of the last K episodes (`drive_rllib.algorithm.returns`)."""
        super()._log_episode_metrics(length, ret, sec)
        self.metrics.log_value(
            RETURNS_KEY,  # under env_runners/ in the driver's results
            float(ret),
            reduce="item_series",
            window=self.config.metrics_num_episodes_for_smoothing,
        )

    def make_env(self) -> None:
        """RLlib's vector env, each sub-env wrapped in `EndEpisodeOnBadObservation`.

        RLlib builds the vector env from ``config.env`` with no hook for per-sub-env
        wrappers. The wrapped creator (`bad_observation_env_creator`) is registered
        with gymnasium as `WRAPPED_ENV_ID` (adding no wrappers of its own), and RLlib
        builds that id, named in this runner's own copy of the config; ``config.env``
        is put back afterwards. A vector entry point makes the whole vector env
        itself and stays unwrapped.

        Raises:
            ObservationShapeError: an env returned an observation of the wrong shape
                (RLlib recreates an env that raised; this one would raise again).
        """
        if self.env_errors:
            raise self.env_errors[0]
        env = self.config.env
        mode = gym.VectorizeMode(self.config.gym_env_vectorize_mode)
        if not env or mode is gym.VectorizeMode.VECTOR_ENTRY_POINT:
            super().make_env()
            return
        env_context = self.config.env_config
        if not isinstance(env_context, EnvContext):  # as RLlib's make_env makes it
            env_context = EnvContext(
                env_context,
                worker_index=self.worker_index,
                num_workers=self.num_workers,
                remote=self.config.remote_worker_envs,
            )
        create = bad_observation_env_creator(
            env, getattr(self.config, "max_abs_value", math.inf), self.env_errors
        )
        gym.registry.pop(WRAPPED_ENV_ID, None)  # this runner's env, not an earlier one's
        gym.register(
            WRAPPED_ENV_ID,
            # RLlib passes env_config as keywords too; the creator takes it as the context.
            entry_point=lambda **_env_config: create(env_context),
            order_enforce=False,
            disable_env_checker=True,
        )
        self.config.env = WRAPPED_ENV_ID
        try:
            super().make_env()
        finally:
            self.config.env = env

    def replay_actor_id(self) -> str | None:
        """Hex id of the replay actor this runner pushes to (None: no handle)."""
        return None if self._replay is None else self._replay.actor_id

    @override(SingleAgentEnvRunner)
    def sample(
        self,
        *,
        num_timesteps: int | None = None,
        num_episodes: int | None = None,
        explore: bool | None = None,
        random_actions: bool = False,
        force_reset: bool = False,
    ) -> list[SingleAgentEpisode]:
        """Samples like `SingleAgentEnvRunner.sample`, then pushes to the replay actor.

        ``random_actions=True`` draws actions uniformly from the module's
        [-1, 1] space (not from the env's action space).

        Returns:
            ``[]`` on a training runner (the data went to the replay actor);
            the episodes on an evaluation runner.

        Raises:
            RuntimeError: a training runner without a replay actor handle.
            ObservationShapeError: an env's observation does not fit its space; it is
                reported to the replay actor first, where the driver reads it (RLlib
                ends a remote runner's process on an exception).
        """
        try:
            return self._sample_and_push(
                num_timesteps, num_episodes, explore, random_actions, force_reset
            )
        except ObservationShapeError as error:
            if self._replay is not None:
                self._replay.call("report_env_error", str(error))
            raise

    # Not `_sample`: RLlib's own `sample`, which this one calls off the lean path, calls
    # `self._sample` with its own arguments.
    def _sample_and_push(
        self,
        num_timesteps: int | None,
        num_episodes: int | None,
        explore: bool | None,
        random_actions: bool,
        force_reset: bool,
    ) -> list[SingleAgentEpisode]:
        if self._replay is None and not self.config.in_evaluation:
            raise RuntimeError(
                "DRIVEEnvRunner has no replay actor: the DRIVE algorithm hands it over in "
                "setup() and after restoring a failed runner; call set_replay_actor() when "
                "using the runner outside DRIVE."
            )
        if self._replay is not None and num_episodes is None and self.lean_collection():
            transitions = self._lean_sample(num_timesteps, explore, random_actions, force_reset)
            self._push(transitions, self._lean.chunk_origin)
            return []
        module = self.module
        if random_actions:
            module.act_uniformly = True
            explore = True
        try:
            episodes = super().sample(
                num_timesteps=num_timesteps,
                num_episodes=num_episodes,
                explore=explore,
                random_actions=False,
                force_reset=force_reset,
            )
        finally:
            module.act_uniformly = False
        if self._replay is None:
            return episodes
        self._push(episodes_to_transitions(episodes), lambda row: row_origin(episodes, row))
        return []

    def _push(
        self, transitions: dict[str, np.ndarray], origin: Callable[[int], tuple[str, int]]
    ) -> None:
        """Pushes the rows to the replay actor; ``origin(row)`` is (episode, env step) of a row."""
        if not transitions or not len(transitions["reward"]):
            return
        # Wait for the push: once sample() returns, the data is in the replay, so the
        # driver's next learner batch (and its replay size) includes it.
        try:
            report = self._replay.call("push", transitions)
        except ReplayUnavailableError as error:
            if self.worker_index == 0:
                raise
            # Raising here would make RLlib restart this healthy runner; the driver's
            # next call into the replay actor reports the failure instead.
            logger.error("EnvRunner %d: %s", self.worker_index, error)
            self.metrics.log_value(keys.REPLAY_PUSH_FAILURES, 1, reduce="sum")
            return
        self.num_transitions_pushed += report["added"]
        if report["rejected"]:
            self.num_transitions_rejected += report["rejected"]
            if not self._rejection_logged:
                self._rejection_logged = True
                episode_id, step = origin(report["first_rejected"])
                logger.warning(
                    "EnvRunner %d: the replay dropped %d of %d rows; the first: episode %s, "
                    "env step %d (%s). Rows with NaN/inf or beyond max_abs_value are dropped "
                    "and counted as replay/rows_rejected; this message is shown once.",
                    self.worker_index,
                    report["rejected"],
                    len(transitions["reward"]),
                    episode_id,
                    step,
                    report["reason"],
                )

    # -- lean collection ----------------------------------------------------------------------

    def lean_collection(self) -> bool:
        """Whether ``sample`` runs the lean loop (see the module docstring)."""
        config = self.config
        if not getattr(config, "lean_collection", False) or config.in_evaluation:
            return False
        why_not = []
        if config._env_to_module_connector is not None or config._module_to_env_connector:
            why_not.append("custom connectors")
        if not (
            config.add_default_connectors_to_env_to_module_pipeline
            and config.add_default_connectors_to_module_to_env_pipeline
        ):
            why_not.append("connector pipelines without RLlib's defaults")
        callbacks = config.callbacks_class
        classes = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
        if any(
            getattr(config, f"callbacks_{name}", None) is not None
            or any(
                isinstance(cls, type)
                and getattr(cls, name, None) is not getattr(RLlibCallback, name)
                for cls in classes
            )
            for name in _SAMPLING_CALLBACKS
        ):
            why_not.append("episode or sample callbacks")
        if config.batch_mode != "truncate_episodes":
            why_not.append(f"batch_mode={config.batch_mode!r}")
        autoreset = getattr(self.env, "metadata", {}).get("autoreset_mode")
        if autoreset is not None and autoreset != gym.vector.AutoresetMode.NEXT_STEP:
            why_not.append(f"autoreset mode {autoreset}")
        if why_not:
            if self._lean is None:
                logger.info("lean collection off (%s): RLlib's sampling loop runs", why_not)
                self._lean = LeanState(active=False)
            return False
        return True

    def _lean_sample(
        self,
        num_timesteps: int | None,
        explore: bool | None,
        random_actions: bool,
        force_reset: bool,
    ) -> dict[str, np.ndarray]:
        """At least ``num_timesteps`` env steps over the vector env, as flat transitions."""
        config = self.config
        num_envs = self.num_envs
        if num_timesteps is None:
            num_timesteps = config.get_rollout_fragment_length(self.worker_index) * num_envs
        explore = config.explore if explore is None else explore
        if self._lean is None or not self._lean.active or force_reset:
            self._lean = LeanState(active=True)
        state = self._lean
        self.metrics.log_value(WEIGHTS_SEQ_NO, self._weights_seq_no, window=1)
        with self.metrics.log_time(SAMPLE_TIMER):
            if state.obs is None or self._needs_initial_reset:
                self._lean_reset(state)
            chunk = LeanChunk(num_timesteps + num_envs, state.obs.shape[1], self._action_dim())
            act = self._lean_policy(explore, random_actions)
            num_episodes = num_vector_steps = 0
            while chunk.size < num_timesteps:
                action = act(state.obs)
                results = self._lean_env_step(self._to_env_bounds(action), state.resetting)
                num_vector_steps += 1
                if results == ENV_STEP_FAILURE:
                    self._lean_reset(state)
                    continue
                next_obs, reward, terminated, truncated, _ = results
                next_obs = np.asarray(next_obs, dtype=np.float32).reshape(num_envs, -1)
                reward = np.asarray(reward, dtype=np.float32)
                terminated = np.asarray(terminated, dtype=bool)
                truncated = np.asarray(truncated, dtype=bool)
                # NEXT_STEP autoreset: envs that ended an episode on the last step were
                # reset by this one (their reward and action mean nothing).
                stepped = ~state.resetting
                chunk.append(stepped, state.obs, action, reward, next_obs, terminated, truncated)
                chunk.note_origin(stepped, state.episode_length)
                state.episode_return[stepped] += reward[stepped]
                state.episode_length[stepped] += 1
                done = stepped & (terminated | truncated)
                now = time.perf_counter()
                for index in np.flatnonzero(done):
                    self._log_episode_metrics(
                        int(state.episode_length[index]),
                        float(state.episode_return[index]),
                        now - state.episode_start[index],
                    )
                    num_episodes += 1
                state.episode_return[state.resetting] = 0.0
                state.episode_length[state.resetting] = 0
                state.episode_start[state.resetting] = now
                state.resetting = done
                state.obs = next_obs
        self._log_env_steps(metric=self._metrics_num_try_env_step, num_steps=num_vector_steps)
        self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=chunk.size)
        self._increase_sampled_metrics(chunk.size, num_episodes)
        self._time_after_sampling = time.perf_counter()
        state.chunk = chunk
        return chunk.transitions()

    def _lean_env_step(self, actions: np.ndarray, resetting: np.ndarray) -> Any:
        """``_try_env_step`` without its per-step timer and counter (counted per chunk), and
        past RLlib's ``DictInfoToList`` wrapper: the lean loop reads no infos.

        A `gymnasium.vector.SyncVectorEnv` has its sub-envs stepped here directly
        (``step_sub_envs``), without building the infos nobody reads."""
        env = self.env.env if isinstance(self.env, DictInfoToList) else self.env
        try:
            if type(env) is gym.vector.SyncVectorEnv:
                return step_sub_envs(env, actions, resetting)
            return env.step(actions)
        except ObservationShapeError:
            raise
        except Exception as error:
            self.metrics.log_value(NUM_ENV_STEP_FAILURES_LIFETIME, 1, reduce="lifetime_sum")
            if self.config.restart_failed_sub_environments:
                # Once per runner with the exception; later ones are only counted
                # (env_runners/num_env_step_failures).
                log = (
                    logger.debug if getattr(self, "_env_failure_logged", False) else logger.warning
                )
                self._env_failure_logged = True
                log(
                    "environment step failed (%s: %s); recreating the env(s), the episode is "
                    "dropped; later failures of this EnvRunner are counted in "
                    "env_runners/num_env_step_failures, not logged",
                    type(error).__name__,
                    error,
                    exc_info=log is logger.warning,
                )
                self.make_env()
                return ENV_STEP_FAILURE
            logger.exception("environment step failed and restart_failed_sub_environments is False")
            raise RuntimeError from error

    def _lean_reset(self, state: LeanState) -> None:
        seed = self._seed if self._needs_initial_reset else None
        obs, _ = self._try_env_reset(seed=seed, options=None)
        self._needs_initial_reset = False
        num_envs = self.num_envs
        state.obs = np.asarray(obs, dtype=np.float32).reshape(num_envs, -1)
        state.resetting = np.zeros(num_envs, dtype=bool)
        state.episode_return = np.zeros(num_envs, dtype=np.float64)
        state.episode_length = np.zeros(num_envs, dtype=np.int64)
        state.episode_start = np.full(num_envs, time.perf_counter())

    def _action_dim(self) -> int:
        return int(np.prod(self.env.single_action_space.shape))

    def _lean_policy(self, explore: bool, random_actions: bool):
        """obs [E, S] (numpy) -> actions [E, A] in module space [-1, 1] (numpy float32)."""
        action_dim = self._action_dim()
        if random_actions:
            return lambda obs: np.random.uniform(-1.0, 1.0, (obs.shape[0], action_dim)).astype(
                np.float32
            )
        module = self.module
        device = next(module.parameters()).device
        with torch.no_grad():
            if hasattr(module, "acting_policy"):  # DRIVE's module: one MLP forward per step
                policy = module.acting_policy(explore)
            else:
                forward = module.forward_exploration if explore else module.forward_inference

                def policy(obs: torch.Tensor) -> torch.Tensor:
                    return forward({Columns.OBS: obs})[Columns.ACTIONS]

        def act(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                action = policy(torch.from_numpy(obs).to(device))
            return action.cpu().numpy().astype(np.float32, copy=False)

        return act

    def _to_env_bounds(self, action: np.ndarray) -> np.ndarray:
        """Module space [-1, 1] -> the env's bounds, as RLlib's NormalizeAndClipActions does."""
        space = self.env.single_action_space
        if self.config.normalize_actions:
            return space.low + (action + 1.0) * (space.high - space.low) / 2.0
        if self.config.clip_actions:
            return np.clip(action, space.low, space.high)
        return action


def step_sub_envs(
    env: gym.vector.SyncVectorEnv, actions: np.ndarray, resetting: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, None]:
    """One step of every sub-env of ``env``, as ``env.step`` (NEXT_STEP autoreset) returns
    it but with no infos (None): a sub-env whose episode ended on the last step is reset
    (reward 0, not terminated, not truncated), the others step with their action.

    ``resetting`` [E] is which sub-envs ended an episode on the last step; the vector
    env's own record of that (``_autoreset_envs``) is kept in step, so ``env.step`` may
    follow. ``SyncVectorEnv.step`` builds an infos dict per sub-env and step, which costs
    about as much as the policy's forward here.
    """
    num_envs = len(env.envs)
    observations = [None] * num_envs
    reward = np.zeros(num_envs, dtype=np.float64)
    terminated = np.zeros(num_envs, dtype=bool)
    truncated = np.zeros(num_envs, dtype=bool)
    for index, sub_env in enumerate(env.envs):
        if resetting[index]:
            observations[index], _ = sub_env.reset()
        else:
            observations[index], reward[index], terminated[index], truncated[index], _ = (
                sub_env.step(actions[index])
            )
    env._autoreset_envs = terminated | truncated
    return (
        np.stack([np.asarray(o).reshape(-1) for o in observations]),
        reward,
        terminated,
        truncated,
        None,
    )


class LeanState:
    """The lean loop's view of the vector env between ``sample`` calls."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.obs: np.ndarray | None = None  # [E, S], the current observations
        self.resetting: np.ndarray | None = None  # [E], reset by the next step (NEXT_STEP)
        self.episode_return: np.ndarray | None = None
        self.episode_length: np.ndarray | None = None
        self.episode_start: np.ndarray | None = None
        self.chunk: LeanChunk | None = None  # the last sample call's

    def chunk_origin(self, row: int) -> tuple[str, int]:
        """(episode, env step) of row ``row`` of the last chunk, for the rejection log."""
        env_index, step = self.chunk.origin(row)
        return f"of sub-env {env_index}", step


class LeanChunk:
    """Preallocated flat transitions of one ``sample`` call, filled one vector step at a time."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int) -> None:
        self.size = 0
        # Per row: the sub-env and its episode's step (for the log of a rejected row).
        self._env_index = np.empty(capacity, dtype=np.int64)
        self._episode_step = np.empty(capacity, dtype=np.int64)
        self._arrays = {
            "obs": np.empty((capacity, obs_dim), dtype=np.float32),
            "action": np.empty((capacity, action_dim), dtype=np.float32),
            "reward": np.empty(capacity, dtype=np.float32),
            "next_obs": np.empty((capacity, obs_dim), dtype=np.float32),
            "terminated": np.empty(capacity, dtype=bool),
            "truncated": np.empty(capacity, dtype=bool),
        }

    def append(self, rows: np.ndarray, *columns: np.ndarray) -> None:
        """Appends the ``rows`` (a bool mask over envs) of obs, action, ..., truncated."""
        count = int(rows.sum())
        if count == 0:
            return
        end = self.size + count
        all_rows = count == rows.shape[0]
        for array, column in zip(self._arrays.values(), columns):
            array[self.size : end] = column if all_rows else column[rows]
        self.size = end

    def note_origin(self, rows: np.ndarray, episode_length: np.ndarray) -> None:
        """Records sub-env and episode step of the rows `append` just added (call after it)."""
        index = np.flatnonzero(rows)
        start = self.size - len(index)
        self._env_index[start : self.size] = index
        # episode_length is updated after the append: the step of these rows is its value.
        self._episode_step[start : self.size] = episode_length[index]

    def origin(self, row: int) -> tuple[int, int]:
        """(sub-env, env step of its episode) of row ``row``."""
        return int(self._env_index[row]), int(self._episode_step[row])

    def transitions(self) -> dict[str, np.ndarray]:
        """The filled rows, in the replay actor's batch format."""
        return {name: array[: self.size] for name, array in self._arrays.items()}
