"""`DRIVEConfig` (every setting, its default and its checks), `DRIVE` (the Algorithm), `register()`.

The config and the Algorithm share one module, as in RLlib's own algorithms:
each names the other (``DRIVEConfig().algo_class`` is `DRIVE`,
``DRIVE.get_default_config()`` a `DRIVEConfig`).

Symbols (as in the spec): ``H`` model horizon, ``N`` imagined samples per
start state, ``gamma`` discount, ``alpha`` temperature of
p(O=1 | U) ∝ exp(U / alpha), ``tau`` Polyak rate of the target value net,
``E`` ensemble members, ``C`` update steps and ``T`` env steps per iteration.

Settings: the core's (H, N, gamma, alpha, network sizes, ...) are the fields
of `drive_rllib.core.DRIVESpec`, which holds their defaults and checks;
``to_spec()`` builds the spec and the RLModule receives it (serialised) in
its ``model_config``. The Learner's and the loop's settings are checked here.

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
import math
import pathlib
import uuid
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow.fs
import ray
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.env_runner_group import EnvRunnerGroup
from ray.rllib.env.multi_agent_env import MultiAgentEnv
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
from drive_rllib.algorithm.batch import sample_learner_batch
from drive_rllib.algorithm.checkpoint import (
    REPLAY_FILE,
    filesystem_and_path,
    restore_replay,
    save_replay,
)
from drive_rllib.algorithm.env_runner import DRIVEEnvRunner
from drive_rllib.algorithm.learner import (
    GRADIENT_CHECKS,
    OPTIMIZER_IMPLEMENTATIONS,
    DRIVETorchLearner,
)
from drive_rllib.algorithm.rl_module import SPEC_KEY, DRIVETorchRLModule
from drive_rllib.core.spec import Check, DRIVESpec, flag, integer, positive_number
from drive_rllib.replay.actor import create_replay_actor

logger = logging.getLogger(__name__)

__all__ = ["DRIVE", "REPLAY_FILE", "DRIVEConfig", "register"]

#: The core's settings that are RLlib's own `training()` arguments too.
RLLIB_SETTINGS_IN_SPEC = ("gamma",)
#: DRIVE's keywords of `DRIVEConfig.training()`: the spec's fields (but gamma, which
#: RLlib's `training()` takes), then the Learner's and the loop's settings.
CORE_SETTINGS = tuple(
    name for name in DRIVESpec.setting_names() if name not in RLLIB_SETTINGS_IN_SPEC
)
LEARNER_SETTINGS = (
    "model_lr",
    "posterior_lr",
    "prior_lr",
    "value_lr",
    "entropy_floor_lr",
    "tau",
    "model_eval_interval",
    "model_eval_batch_size",
    "flush_denormals",
    "optimizer_implementation",
    "gradient_check",
)
LOOP_SETTINGS = (
    "updates_per_iteration",
    "env_steps_per_iteration",
    "num_warmup_steps",
    "replay_capacity",
    "holdout_every",
    "replay_actor_resources",
    "lean_collection",
)
DRIVE_SETTINGS = CORE_SETTINGS + LEARNER_SETTINGS + LOOP_SETTINGS
#: How long setup() waits for the replay actor to be scheduled.
REPLAY_START_TIMEOUT_S = 120


class DRIVEConfig(AlgorithmConfig):
    """Configuration of DRIVE (Distributional model-based RL via Variational Inference).

    .. code-block:: python

        from drive_rllib.algorithm import DRIVEConfig

        config = (
            DRIVEConfig()
            .environment("Pendulum-v1")
            .env_runners(num_env_runners=2)
            .training(horizon=5, num_samples=1, updates_per_iteration=400,
                      env_steps_per_iteration=100)
        )
        algo = config.build_algo()
        algo.train()

    One iteration (``training_step``) is Algorithm 1 of the spec: ``T`` env
    steps on the EnvRunners (random actions during warm-up), then ``C`` update
    steps on the Learner(s), then a weight sync. ``C / T`` is the
    update-to-data ratio.
    """

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class=algo_class or DRIVE)

        # The core's settings, with the defaults and checks of drive_rllib.core.spec
        # (`to_spec()` builds the spec from them): H (horizon), N (num_samples), gamma,
        # alpha, policy_update, value_loss, member_per_trajectory, E (ensemble_size),
        # num_elites, model/policy/value hidden widths, sigma_min, learn_termination,
        # entropy_floor, target_entropy (None -> -A), initial_entropy_weight,
        # inference_policy.
        for name, default in DRIVESpec().settings().items():
            setattr(self, name, default)
        # Optimisation: one learning rate per component.
        self.model_lr = 1e-3
        self.posterior_lr = 3e-4
        self.prior_lr = 3e-4
        self.value_lr = 3e-4
        self.entropy_floor_lr = 3e-4
        self.lr = None  # DRIVE uses the per-component rates above.
        self.tau = 0.005  # tau
        self.train_batch_size_per_learner = 256
        self.model_eval_interval = 250
        self.model_eval_batch_size = 1024
        # The update's cost (results unchanged but for rounding; see DRIVETorchLearner).
        self.flush_denormals = True
        self.optimizer_implementation = "fused"
        self.gradient_check = "global"
        # Algorithm 1.
        self.updates_per_iteration = 100  # C
        self.env_steps_per_iteration = 100  # T
        self.num_warmup_steps = 500
        self.replay_capacity = 1_000_000
        self.holdout_every = 10
        self.replay_actor_resources = None  # e.g. {"head": 0.01} on a cluster
        self.lean_collection = True  # DRIVEEnvRunner's own sampling loop

        # RLlib settings DRIVE needs.
        self.env_runner_cls = DRIVEEnvRunner
        self.rollout_fragment_length = "auto"  # T spread over the runners.
        self.normalize_actions = True  # the module acts in [-1, 1]
        self.min_time_s_per_iteration = None  # one training_step per iteration
        self.min_sample_timesteps_per_iteration = 0
        self.evaluation(evaluation_config=AlgorithmConfig.overrides(explore=False))

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        horizon: int | None = NotProvided,
        num_samples: int | None = NotProvided,
        alpha: float | None = NotProvided,
        policy_update: str | None = NotProvided,
        value_loss: str | None = NotProvided,
        member_per_trajectory: bool | None = NotProvided,
        ensemble_size: int | None = NotProvided,
        num_elites: int | None = NotProvided,
        model_hiddens: list[int] | None = NotProvided,
        policy_hiddens: list[int] | None = NotProvided,
        value_hiddens: list[int] | None = NotProvided,
        sigma_min: float | None = NotProvided,
        learn_termination: bool | None = NotProvided,
        entropy_floor: bool | None = NotProvided,
        target_entropy: float | None = NotProvided,
        initial_entropy_weight: float | None = NotProvided,
        inference_policy: str | None = NotProvided,
        model_lr: float | None = NotProvided,
        posterior_lr: float | None = NotProvided,
        prior_lr: float | None = NotProvided,
        value_lr: float | None = NotProvided,
        entropy_floor_lr: float | None = NotProvided,
        tau: float | None = NotProvided,
        model_eval_interval: int | None = NotProvided,
        model_eval_batch_size: int | None = NotProvided,
        flush_denormals: bool | None = NotProvided,
        optimizer_implementation: str | None = NotProvided,
        gradient_check: str | None = NotProvided,
        updates_per_iteration: int | None = NotProvided,
        env_steps_per_iteration: int | None = NotProvided,
        num_warmup_steps: int | None = NotProvided,
        replay_capacity: int | None = NotProvided,
        holdout_every: int | None = NotProvided,
        replay_actor_resources: dict[str, float] | None = NotProvided,
        lean_collection: bool | None = NotProvided,
        **kwargs: Any,
    ) -> DRIVEConfig:
        """Sets DRIVE's training settings (and RLlib's, e.g. ``gamma``, via ``kwargs``).

        Args:
            horizon: H >= 1, imagined model steps per start state in Eq. 6
                (Eq. 4 uses the real first step and H - 1 imagined ones). Default 5.
            num_samples: N >= 1, imagined trajectories per start state; N > 1
                moment-matches the mixture in J_KL2. Default 1.
            alpha: temperature > 0 of p(O=1 | U) ∝ exp(U / alpha); the
                return term of Eq. 6 is weighted by 1 / alpha. Default 1.0.
            policy_update: "joint" (pi_theta trained by Eq. 6 with q_phi) or
                "distill" (q_phi by Eq. 6 with pi_theta fixed, then pi_theta by
                Eq. 5). Default "joint".
            value_loss: "split" (mean by squared error to the target mean,
                sigma by cross-entropy with the mean fixed) or "cross_entropy"
                (plain Gaussian cross-entropy of Eq. 4). Default "split".
            member_per_trajectory: keep one elite member for a whole imagined
                trajectory instead of drawing one at every model step (the
                spec's choice). Default False.
            ensemble_size: E, members of the dynamics ensemble. Default 7.
            num_elites: members used in rollouts, the best on held-out data;
                1 <= num_elites <= ensemble_size. Default 5.
            model_hiddens: hidden widths of each ensemble member. Default
                [200, 200, 200].
            policy_hiddens: hidden widths of pi_theta and of q_phi. Default [256, 256].
            value_hiddens: hidden widths of the value net psi (and psi_bar).
                Default [256, 256].
            sigma_min: lower bound > 0 of the value's sigma, also the floor of
                the target law's standard deviation. Default 0.1.
            learn_termination: learn the model's termination head (else no
                imagined trajectory terminates). Default True.
            entropy_floor: add the entropy floor on pi_theta, its weight tuned
                toward ``target_entropy`` as SAC tunes its temperature. Default True.
            target_entropy: target entropy of pi_theta; None means -A (minus
                the action dimension). Default None.
            initial_entropy_weight: initial weight > 0 of the entropy floor. Default 1.0.
            inference_policy: the policy whose deterministic mean acts when
                ``explore=False`` (evaluation): "prior" (pi_theta) or
                "posterior" (q_phi; the EnvRunners then also hold q_phi).
                Default "prior".
            model_lr: Adam learning rate of the dynamics ensemble. Default 1e-3.
            posterior_lr: Adam learning rate of q_phi. Default 3e-4.
            prior_lr: Adam learning rate of pi_theta. Default 3e-4.
            value_lr: Adam learning rate of psi. Default 3e-4.
            entropy_floor_lr: Adam learning rate of the entropy floor's log
                weight. Default 3e-4.
            tau: Polyak rate in (0, 1] of psi_bar after every update step. Default 0.005.
            model_eval_interval: update steps between rankings of the ensemble
                members on held-out replay data (0: never; elites stay the
                first ``num_elites`` members). Default 250.
            model_eval_batch_size: held-out rows each Learner draws per ranking.
                Default 1024.
            flush_denormals: flush subnormal floats to zero on the CPU thread of
                each Learner's update (``torch.set_flush_denormal``; Adam's moments
                decay into subnormals, which x86 CPUs compute slowly). Process-wide
                for that thread: with ``num_learners=0`` it is the driver's. Default True.
            optimizer_implementation: "fused" (one fused Adam kernel per component
                where the device has one, else "foreach"), "foreach" or "for_loop"
                (torch's own default on CPU). Default "fused".
            gradient_check: "global" (one NaN / inf check over all gradients;
                a non-finite one skips the whole update step, counted under
                ``training/updates_skipped_non_finite``), "per_parameter" (RLlib's
                own ``apply_gradients``, with ``torch_skip_nan_gradients``) or "off"
                (only the loss is checked, by ``combine_terms``). Default "global".
            updates_per_iteration: C >= 1, update steps per iteration on every
                Learner, each on ``train_batch_size_per_learner`` rows. Default 100.
            env_steps_per_iteration: T >= 1, env steps per iteration over all
                EnvRunners (rounded up to a multiple of runners x envs). Default 100.
            num_warmup_steps: env steps with uniform random actions (in the
                module's [-1, 1] space) before pi_theta acts; an iteration that
                starts inside the warm-up is random throughout, so warm-up ends
                on an iteration boundary. Learning starts once the replay holds
                this many rows and at least one batch. Default 500.
            replay_capacity: transitions held by the replay actor. Default 1,000,000.
            holdout_every: every k-th replay position is held out from
                training and used to rank the ensemble; 0 disables the holdout
                (then set ``model_eval_interval=0``). Default 10.
            replay_actor_resources: custom resources the replay actor asks for,
                which pins it to the nodes that offer them, e.g. ``{"head": 0.01}``
                with ``cluster/aws.yaml`` (the head node offers ``head: 1``). The
                Algorithm's resource request gains one bundle with them, so the
                actor also fits inside a Tune trial's placement group. Default
                None: no custom resource, the actor takes 0 CPUs anywhere.
            lean_collection: training EnvRunners step their
                ``num_envs_per_env_runner`` vectorised envs in DRIVEEnvRunner's own
                loop (one batched forward of pi_theta per vector step, one push per
                ``sample()`` call) instead of RLlib's connector pipelines and episode
                objects; RLlib's loop still runs with custom connectors, episode
                callbacks, ``batch_mode="complete_episodes"`` and on evaluation
                runners. Default True.
            **kwargs: RLlib's own training settings (``gamma`` default 0.99,
                ``train_batch_size_per_learner`` default 256, ``grad_clip``, ...).

        Returns:
            This updated config object.
        """
        super().training(**kwargs)
        # Each DRIVE keyword above sets the attribute of the same name; a test checks that
        # the keywords are exactly DRIVE_SETTINGS (the spec's fields and the settings below).
        given = locals()
        for name in DRIVE_SETTINGS:
            if given[name] is not NotProvided:
                setattr(self, name, given[name])
        return self

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DRIVETorchRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type[Learner]:
        return DRIVETorchLearner

    @override(AlgorithmConfig)
    def get_rollout_fragment_length(self, worker_index: int = 0) -> int:
        """With "auto", T env steps per iteration spread over all runners and envs."""
        if self.rollout_fragment_length == "auto":
            num_streams = max(self.num_env_runners, 1) * self.num_envs_per_env_runner
            return max(1, math.ceil(self.env_steps_per_iteration / num_streams))
        return self.rollout_fragment_length

    def to_spec(self) -> DRIVESpec:
        """The core's settings of this config as one checked `DRIVESpec`.

        Raises:
            ValueError: a setting fails its check (the message says what to change).
        """
        return DRIVESpec.from_settings(self)

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        # The RLModule gets its settings as one spec (``DRIVETorchRLModule.setup``).
        return super()._model_config_auto_includes | {SPEC_KEY: self.to_spec().to_dict()}

    @override(AlgorithmConfig)
    def validate(self) -> None:
        """Checks every DRIVE setting; each error message says what to change."""
        super().validate()
        if not self._validate_config:
            return
        self._check_resolved()
        self._check_core_settings()
        self._check_learner_settings()
        self._check_loop_settings()
        self._check_rllib_settings()
        self._check_env_spaces()

    # -- checks --------------------------------------------------------------------------

    def _check_resolved(self) -> None:
        for name in DRIVE_SETTINGS + ("gamma", "train_batch_size_per_learner"):
            value = getattr(self, name)
            unresolved_grid = isinstance(value, dict) and "grid_search" in value
            if unresolved_grid or type(value).__module__.startswith("ray.tune"):
                self._value_error(
                    f"`{name}` is {value!r}, an unresolved search space. Pass the config "
                    "to tune.Tuner (which resolves tune.grid_search / tune.choice per "
                    "trial) instead of validating or building it directly."
                )

    def _check_core_settings(self) -> None:
        """H, N, gamma, alpha, the networks, ...: the checks of drive_rllib.core.spec."""
        try:
            self.to_spec()
        except ValueError as error:
            self._value_error(str(error))

    def _check_learner_settings(self) -> None:
        """Learning rates, tau, the ensemble's ranking, the batch size."""
        for name in ("model_lr", "posterior_lr", "prior_lr", "value_lr", "entropy_floor_lr"):
            self._check_value(name, positive_number)
        if not isinstance(self.tau, (int, float)) or not 0.0 < self.tau <= 1.0:
            self._value_error(
                f"`tau` must lie in (0, 1], got {self.tau!r}: e.g. config.training(tau=0.005)."
            )
        self._check_value("model_eval_interval", integer(minimum=0))
        self._check_value("model_eval_batch_size", integer(minimum=1))
        self._check_value("train_batch_size_per_learner", integer(minimum=1))
        self._check_value("flush_denormals", flag)
        for name, choices in (
            ("optimizer_implementation", OPTIMIZER_IMPLEMENTATIONS),
            ("gradient_check", GRADIENT_CHECKS),
        ):
            if getattr(self, name) not in choices:
                self._value_error(
                    f"`{name}` must be one of {choices}, got {getattr(self, name)!r}: e.g. "
                    f"config.training({name}={choices[0]!r})."
                )

    def _check_loop_settings(self) -> None:
        """Algorithm 1's T, C and warm-up; the replay's capacity, holdout and resources."""
        self._check_value("updates_per_iteration", integer(minimum=1))
        self._check_value("env_steps_per_iteration", integer(minimum=1))
        self._check_value("num_warmup_steps", integer(minimum=0))
        self._check_value("replay_capacity", integer(minimum=1))
        self._check_value("holdout_every", integer(minimum=0))
        self._check_value("lean_collection", flag)
        self._check_replay_actor_resources()
        self._check_holdout()
        if (
            isinstance(self.replay_capacity, int)
            and isinstance(self.train_batch_size_per_learner, int)
            and self.replay_capacity < self.train_batch_size_per_learner
        ):
            self._value_error(
                f"`replay_capacity` ({self.replay_capacity}) is smaller than one batch "
                f"(`train_batch_size_per_learner`={self.train_batch_size_per_learner}): "
                "raise replay_capacity."
            )

    def _check_replay_actor_resources(self) -> None:
        resources = self.replay_actor_resources
        if resources is not None and not (
            isinstance(resources, dict)
            and all(
                isinstance(name, str)
                and isinstance(amount, (int, float))
                and not isinstance(amount, bool)
                and amount > 0
                for name, amount in resources.items()
            )
        ):
            self._value_error(
                "`replay_actor_resources` must be None or a dict of custom resource names "
                f"to positive amounts, e.g. {{'head': 0.01}}; got {resources!r}."
            )

    def _check_holdout(self) -> None:
        if self.holdout_every == 1:
            self._value_error(
                "`holdout_every=1` would hold out every replay row and leave none to "
                "train on: use 0 (no holdout) or >= 2 (default 10)."
            )
        if self.holdout_every == 0 and self.model_eval_interval:
            self._value_error(
                "`holdout_every=0` leaves no held-out rows to rank the ensemble on: set "
                "`model_eval_interval=0` too, or use `holdout_every` >= 2."
            )

    def _check_value(self, name: str, check: Check) -> None:
        """One setting against one of the core's checks (same messages as the spec's)."""
        try:
            check(name, getattr(self, name))
        except ValueError as error:
            self._value_error(str(error))

    def _check_rllib_settings(self) -> None:
        if self.lr is not None:
            self._value_error(
                f"DRIVE has one learning rate per component; `lr` ({self.lr}) is unused. "
                "Set config.training(lr=None) and use model_lr, posterior_lr, prior_lr, "
                "value_lr and entropy_floor_lr."
            )
        if self._train_batch_size_per_learner is None:
            num_learners = max(self.num_learners, 1)
            if self.train_batch_size % num_learners:
                self._value_error(
                    f"`train_batch_size` ({self.train_batch_size}) is not divisible by "
                    f"`num_learners` ({num_learners}): set train_batch_size to a multiple "
                    f"of {num_learners}, or set train_batch_size_per_learner instead."
                )
        if not self.normalize_actions:
            self._value_error(
                "DRIVE's policies act in [-1, 1] and the env sees its own bounds: set "
                "config.environment(normalize_actions=True)."
            )
        if self.env_runner_cls is not None and not (
            isinstance(self.env_runner_cls, type)
            and issubclass(self.env_runner_cls, DRIVEEnvRunner)
        ):
            self._value_error(
                f"`env_runner_cls` ({self.env_runner_cls}) must subclass DRIVEEnvRunner, "
                "which pushes transitions to the replay actor."
            )
        if self.is_multi_agent:
            self._value_error("DRIVE is single-agent: remove config.multi_agent(...).")
        if self.framework_str != "torch":
            self._value_error(
                f"DRIVE runs on torch only: set config.framework('torch'), not "
                f"{self.framework_str!r}."
            )
        if self.is_offline:
            self._value_error("DRIVE learns online: remove config.offline_data(input_=...).")

    def _check_env_spaces(self) -> None:
        observation_space, action_space = self.env_spaces()
        if not isinstance(action_space, gym.spaces.Box):
            self._value_error(
                f"DRIVE needs a continuous (Box) action space; env {self.env!r} has "
                f"{action_space}. Use an environment with continuous actions (e.g. "
                "Pendulum-v1) or wrap the env to expose a Box action space."
            )
            return
        if len(action_space.shape) != 1:
            self._value_error(
                f"DRIVE needs a flat (1-D) Box action space; env {self.env!r} has shape "
                f"{action_space.shape}. Flatten the actions with a wrapper."
            )
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            self._value_error(
                f"DRIVE rescales actions from [-1, 1] to the env's bounds, so they must be "
                f"finite; env {self.env!r} has low={action_space.low}, high="
                f"{action_space.high}. Wrap the env with gymnasium.wrappers.ClipAction "
                "and a bounded Box, or give the env finite action bounds."
            )
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            self._value_error(
                f"DRIVE's MLPs need a flat Box observation space; env {self.env!r} has "
                f"{observation_space}. Flatten observations with "
                "gymnasium.wrappers.FlattenObservation."
            )

    def env_spaces(self) -> tuple[gym.Space, gym.Space]:
        """(observation space, action space) of the configured env, building it once.

        Raises:
            ValueError: no env, an unknown env id, or a multi-agent env.
        """
        from ray.rllib.algorithms.algorithm import Algorithm

        if self.env is None:
            raise ValueError(
                "DRIVE learns from an environment: set config.environment('Pendulum-v1') "
                "(a gymnasium id, a registered name, or an env class)."
            )
        try:
            _, creator = Algorithm._get_env_id_and_creator(self.env, self)
            env = creator(EnvContext(self.env_config, worker_index=0))
        except (gym.error.Error, ImportError) as error:
            raise ValueError(
                f"Unknown env {self.env!r}: use a gymnasium id (e.g. 'Pendulum-v1'), a name "
                "registered with ray.tune.registry.register_env, or an env class. "
                f"({error})"
            ) from error
        except Exception as error:
            if type(error).__name__ == "EnvError":
                raise ValueError(
                    f"Unknown env {self.env!r}: use a gymnasium id (e.g. 'Pendulum-v1'), a "
                    "name registered with ray.tune.registry.register_env, or an env class. "
                    f"({error})"
                ) from error
            raise
        try:
            multi_agent = isinstance(env, MultiAgentEnv)
            spaces = env.observation_space, env.action_space
        finally:
            env.close()
        if multi_agent:
            raise ValueError(f"DRIVE is single-agent; env {self.env!r} is multi-agent.")
        return spaces


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
                self._replay.__ray_call__.remote(sample_learner_batch, num_updates * batch_size)
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
            filesystem, path = filesystem_and_path(path)
        path = super().save_to_path(
            path, state=state, filesystem=filesystem, use_msgpack=use_msgpack
        )
        save_replay(self._replay, path, filesystem)
        return path

    @override(Algorithm)
    def restore_from_path(self, path: str | pathlib.Path, *args: Any, **kwargs: Any) -> None:
        """Restores RLlib's state and, from a full checkpoint, the replay contents."""
        if kwargs.get("filesystem") is None:
            kwargs["filesystem"], path = filesystem_and_path(path)
        super().restore_from_path(path, *args, **kwargs)
        if kwargs.get("component") is None:
            restore_replay(self._replay, path, kwargs["filesystem"])

    @override(Algorithm)
    def cleanup(self) -> None:
        super().cleanup()
        replay = getattr(self, "_replay", None)
        if replay is not None:
            ray.kill(replay)
            self._replay = None


def register() -> None:
    """Registers DRIVE with Tune as "DRIVE", so ``tune.Tuner("DRIVE")`` and YAML ``run: DRIVE`` work."""
    from ray.tune.registry import register_trainable

    register_trainable("DRIVE", DRIVE)
