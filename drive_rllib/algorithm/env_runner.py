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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import ray
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.annotations import override

from drive_rllib.mujoco_log import redirect_mujoco_warnings


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
        super().__init__(config=config, **kwargs)
        self._replay: ray.actor.ActorHandle | None = None
        self.num_transitions_pushed = 0

    def set_replay_actor(self, replay: ray.actor.ActorHandle) -> None:
        """Sets the replay actor this runner adds its transitions to."""
        self._replay = replay

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
            # Wait for the add: once sample() returns, the data is in the replay, so
            # the driver's next learner batch (and its replay size) includes it.
            ray.get(self._replay.add.remote(transitions))
            self.num_transitions_pushed += len(transitions["reward"])
        return []
