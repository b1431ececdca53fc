"""`DRIVEConfig`: every hyperparameter of DRIVE, with its default and its checks.

Symbols (as in the spec): ``H`` model horizon, ``N`` imagined samples per
start state, ``gamma`` discount, ``alpha`` temperature of
p(O=1 | U) ∝ exp(U / alpha), ``tau`` Polyak rate of the target value net,
``E`` ensemble members, ``C`` update steps and ``T`` env steps per iteration.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.annotations import override

from drive_rllib.algorithm.env_runner import DRIVEEnvRunner

if TYPE_CHECKING:
    from ray.rllib.core.learner.learner import Learner

POLICY_UPDATES = ("joint", "distill")
VALUE_LOSSES = ("split", "cross_entropy")
INFERENCE_POLICIES = ("prior", "posterior")

# Every DRIVE-specific setting of `training()`, in the order of its docstring.
# `_model_config_auto_includes` passes the first group to the RLModule.
MODULE_SETTINGS = (
    "horizon",
    "num_samples",
    "alpha",
    "policy_update",
    "value_loss",
    "member_per_trajectory",
    "ensemble_size",
    "num_elites",
    "model_hiddens",
    "policy_hiddens",
    "value_hiddens",
    "sigma_min",
    "learn_termination",
    "entropy_floor",
    "target_entropy",
    "initial_entropy_weight",
    "inference_policy",
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
)
LOOP_SETTINGS = (
    "updates_per_iteration",
    "env_steps_per_iteration",
    "num_warmup_steps",
    "replay_capacity",
    "holdout_every",
    "replay_actor_resources",
)
DRIVE_SETTINGS = MODULE_SETTINGS + LEARNER_SETTINGS + LOOP_SETTINGS


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

    def __init__(self, algo_class: type | None = None) -> None:
        from drive_rllib.algorithm.drive import DRIVE

        super().__init__(algo_class=algo_class or DRIVE)

        # Imagination and objective.
        self.horizon = 5  # H
        self.num_samples = 1  # N
        self.gamma = 0.99  # gamma
        self.alpha = 1.0  # alpha
        self.policy_update = "joint"
        self.value_loss = "split"
        self.member_per_trajectory = False
        # Networks.
        self.ensemble_size = 7  # E
        self.num_elites = 5
        self.model_hiddens = [200, 200, 200]
        self.policy_hiddens = [256, 256]
        self.value_hiddens = [256, 256]
        self.sigma_min = 0.1
        self.learn_termination = True
        # Entropy floor on pi_theta (spec 6, "exploration").
        self.entropy_floor = True
        self.target_entropy = None  # None -> -A
        self.initial_entropy_weight = 1.0
        self.inference_policy = "prior"
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
        # Algorithm 1.
        self.updates_per_iteration = 100  # C
        self.env_steps_per_iteration = 100  # T
        self.num_warmup_steps = 500
        self.replay_capacity = 1_000_000
        self.holdout_every = 10
        self.replay_actor_resources = None  # e.g. {"head": 0.01} on a cluster

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
        updates_per_iteration: int | None = NotProvided,
        env_steps_per_iteration: int | None = NotProvided,
        num_warmup_steps: int | None = NotProvided,
        replay_capacity: int | None = NotProvided,
        holdout_every: int | None = NotProvided,
        replay_actor_resources: dict[str, float] | None = NotProvided,
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
            **kwargs: RLlib's own training settings (``gamma`` default 0.99,
                ``train_batch_size_per_learner`` default 256, ``grad_clip``, ...).

        Returns:
            This updated config object.
        """
        super().training(**kwargs)
        given = dict(locals())
        for name in DRIVE_SETTINGS:
            value = given[name]
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from drive_rllib.algorithm.rl_module import DRIVETorchRLModule

        return RLModuleSpec(module_class=DRIVETorchRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type[Learner]:
        from drive_rllib.algorithm.learner import DRIVETorchLearner

        return DRIVETorchLearner

    @override(AlgorithmConfig)
    def get_rollout_fragment_length(self, worker_index: int = 0) -> int:
        """With "auto", T env steps per iteration spread over all runners and envs."""
        if self.rollout_fragment_length == "auto":
            num_streams = max(self.num_env_runners, 1) * self.num_envs_per_env_runner
            return max(1, math.ceil(self.env_steps_per_iteration / num_streams))
        return self.rollout_fragment_length

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return (
            super()._model_config_auto_includes
            | {name: getattr(self, name) for name in MODULE_SETTINGS}
            | {"gamma": self.gamma}
        )

    @override(AlgorithmConfig)
    def validate(self) -> None:
        """Checks every DRIVE setting; each error message says what to change."""
        super().validate()
        if not self._validate_config:
            return
        self._check_resolved()
        self._check_ranges()
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

    def _check_ranges(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                self._value_error(f"`{name}` must be an integer, got {value!r}.")
            elif value < minimum:
                self._value_error(
                    f"`{name}` must be >= {minimum}, got {value}: set "
                    f"config.training({name}={max(minimum, 1)}) or larger."
                )

        def positive_float(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                self._value_error(f"`{name}` must be a number > 0, got {value!r}.")

        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in options:
                self._value_error(
                    f"`{name}` must be one of {options}, got {value!r}: set "
                    f"config.training({name}={options[0]!r})."
                )

        def widths(name: str) -> None:
            value = getattr(self, name)
            if (
                not isinstance(value, (list, tuple))
                or not value
                or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in value)
            ):
                self._value_error(
                    f"`{name}` must be a non-empty list of positive layer widths, e.g. "
                    f"[256, 256]; got {value!r}."
                )

        positive_int("horizon")
        positive_int("num_samples")
        positive_int("ensemble_size")
        positive_int("num_elites")
        positive_int("updates_per_iteration")
        positive_int("env_steps_per_iteration")
        positive_int("num_warmup_steps", minimum=0)
        positive_int("replay_capacity")
        positive_int("holdout_every", minimum=0)
        positive_int("model_eval_interval", minimum=0)
        positive_int("model_eval_batch_size")
        positive_int("train_batch_size_per_learner")
        for name in (
            "alpha",
            "sigma_min",
            "initial_entropy_weight",
            "model_lr",
            "posterior_lr",
            "prior_lr",
            "value_lr",
            "entropy_floor_lr",
        ):
            positive_float(name)
        for name in ("model_hiddens", "policy_hiddens", "value_hiddens"):
            widths(name)
        choice("policy_update", POLICY_UPDATES)
        choice("value_loss", VALUE_LOSSES)
        choice("inference_policy", INFERENCE_POLICIES)
        for name in ("learn_termination", "entropy_floor", "member_per_trajectory"):
            if not isinstance(getattr(self, name), bool):
                self._value_error(f"`{name}` must be True or False, got {getattr(self, name)!r}.")

        if not isinstance(self.gamma, (int, float)) or not 0.0 < self.gamma <= 1.0:
            self._value_error(
                f"`gamma` must lie in (0, 1], got {self.gamma!r}: e.g. config.training(gamma=0.99)."
            )
        if not isinstance(self.tau, (int, float)) or not 0.0 < self.tau <= 1.0:
            self._value_error(
                f"`tau` must lie in (0, 1], got {self.tau!r}: e.g. config.training(tau=0.005)."
            )
        if self.target_entropy is not None and (
            isinstance(self.target_entropy, bool)
            or not isinstance(self.target_entropy, (int, float))
            or not math.isfinite(self.target_entropy)
        ):
            self._value_error(
                f"`target_entropy` must be a finite number or None (-A), got "
                f"{self.target_entropy!r}."
            )
        if (
            isinstance(self.num_elites, int)
            and isinstance(self.ensemble_size, int)
            and self.num_elites > self.ensemble_size
        ):
            self._value_error(
                f"`num_elites` ({self.num_elites}) must not exceed `ensemble_size` "
                f"({self.ensemble_size}): lower num_elites or raise ensemble_size."
            )
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
