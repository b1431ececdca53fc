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
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any
from unittest import mock

import gymnasium as gym
import numpy as np
import ray
import torch
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.annotations import override

from drive_rllib import keys
from drive_rllib.mujoco_log import redirect_mujoco_warnings
from drive_rllib.replay.actor import ReplayUnavailableError, call

logger = logging.getLogger(__name__)

#: Seed distance between the generations of a restored run's EnvRunners (RLlib's runners
#: of one generation are `worker_index * 10000` apart).
SEED_STRIDE = 1_000_003


def observation_scale(observation_space: gym.Space) -> float:
    """The env's own observation scale: its largest finite bound (at least 1)."""
    bounds = [
        np.abs(np.asarray(bound, dtype=np.float64))
        for bound in (
            getattr(observation_space, "low", None),
            getattr(observation_space, "high", None),
        )
        if bound is not None
    ]
    finite = [value[np.isfinite(value)] for value in bounds]
    largest = max((float(value.max()) for value in finite if value.size), default=1.0)
    return max(1.0, largest)


def observation_ok(observation: Any, bound: float) -> bool:
    """Whether an observation is finite and within ``bound`` in every entry."""
    values = np.asarray(observation, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return bool(np.isfinite(values).all() and (np.abs(values) <= bound).all())


class EndEpisodeOnBadObservation(gym.Wrapper):
    """Truncates the episode at an observation with NaN or inf, or beyond ``bound``.

    The vector env then resets this sub-env on its next step, so the policy's
    action for the bad observation never reaches the env; the transition that
    ends in it is dropped by the replay actor.
    """

    def __init__(self, env: gym.Env, bound: float) -> None:
        super().__init__(env)
        self.bound = bound

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if not observation_ok(observation, self.bound):
            truncated = True
            info = {**info, "drive_bad_observation": True}
        return observation, reward, terminated, truncated, info


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
        self._replay: ray.actor.ActorHandle | None = None
        self._replay_name: str | None = None
        self._replay_timeout_s: float | None = None
        self.num_transitions_pushed = 0
        self.num_transitions_rejected = 0
        self._rejection_logged = False
        super().__init__(config=config, **kwargs)

    def set_replay_actor(
        self,
        replay: ray.actor.ActorHandle,
        name: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Sets the replay actor this runner adds its transitions to (and its call timeout)."""
        self._replay = replay
        self._replay_name = name
        self._replay_timeout_s = timeout_s

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
    def make_env(self) -> None:
        """RLlib's vector env, each sub-env wrapped in `EndEpisodeOnBadObservation`."""
        bound = getattr(self.config, "max_abs_value", math.inf)
        make_vec = gym.make_vec

        def make_wrapped_vec(*args: Any, **kwargs: Any) -> gym.vector.VectorEnv:
            mode = kwargs.get("vectorization_mode")
            if mode is None or gym.VectorizeMode(mode) is gym.VectorizeMode.VECTOR_ENTRY_POINT:
                return make_vec(*args, **kwargs)

            def wrap(env: gym.Env) -> gym.Env:
                scale = observation_scale(env.observation_space)
                return EndEpisodeOnBadObservation(env, bound * scale)

            kwargs["wrappers"] = [*(kwargs.get("wrappers") or ()), wrap]
            return make_vec(*args, **kwargs)

        # RLlib builds the vector env inside make_env() with gym.make_vec and no hook for
        # per-sub-env wrappers: add ours to that one call.
        with mock.patch.object(gym, "make_vec", make_wrapped_vec):
            super().make_env()

    def replay_actor_id(self) -> str | None:
        """Hex id of the replay actor this runner pushes to (None: no handle)."""
        return None if self._replay is None else self._replay._actor_id.hex()

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
        """
        if self._replay is None and not self.config.in_evaluation:
            raise RuntimeError(
                "DRIVEEnvRunner has no replay actor: the DRIVE algorithm hands it over in "
                "setup() and after restoring a failed runner; call set_replay_actor() when "
                "using the runner outside DRIVE."
            )
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
        transitions = episodes_to_transitions(episodes)
        if transitions:
            self._push(episodes, transitions)
        return []

    def _push(
        self, episodes: Sequence[SingleAgentEpisode], transitions: dict[str, np.ndarray]
    ) -> None:
        # Wait for the push: once sample() returns, the data is in the replay, so the
        # driver's next learner batch (and its replay size) includes it.
        try:
            report = call(
                self._replay,
                "push",
                transitions,
                timeout=self._replay_timeout_s,
                name=self._replay_name,
            )
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
                episode_id, step = row_origin(episodes, report["first_rejected"])
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
