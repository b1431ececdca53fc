"""`DRIVEConfig`: every setting of DRIVE, its default, and where it is checked.

Symbols (as in the spec): ``H`` model horizon, ``N`` imagined samples per
start state, ``gamma`` discount, ``alpha`` temperature of
p(O=1 | U) ∝ exp(U / alpha), ``tau`` Polyak rate of the target value net,
``E`` ensemble members, ``C`` update steps and ``T`` env steps per iteration.

Settings: the core's (H, N, gamma, alpha, network sizes, ...) are the fields
of `drive_rllib.core.DRIVESpec`, which documents them and holds their
defaults and checks; ``to_spec()`` builds the spec and the RLModule receives
it (serialised) in its ``model_config``. The Learner's and the loop's
settings are documented in `DRIVEConfig.training` and checked by
`drive_rllib.algorithm.checks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.annotations import override

from drive_rllib.algorithm import checks, offline
from drive_rllib.algorithm.env_runner import DRIVEEnvRunner
from drive_rllib.algorithm.learner import DRIVETorchLearner
from drive_rllib.algorithm.rl_module import SPEC_KEY, DRIVETorchRLModule
from drive_rllib.core import termination as termination_rules
from drive_rllib.core.spec import DRIVESpec, Termination
from drive_rllib.mujoco_log import redirect_mujoco_warnings

__all__ = ["DRIVE_SETTINGS", "DRIVEConfig", "register_module_env"]

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
    "model_weight_decay",
    "max_skipped_updates",
    "flush_denormals",
    "optimizer_implementation",
    "gradient_check",
)
LOOP_SETTINGS = (
    "updates_per_iteration",
    "value_only_updates",
    "restart_optimizers",
    "env_steps_per_iteration",
    "num_warmup_steps",
    "warmup_catch_up",
    "replay_capacity",
    "holdout_every",
    "replay_actor_resources",
    "replay_timeout_s",
    "replay_snapshot_interval",
    "max_abs_value",
    "max_rejected_share",
    "lean_collection",
)
DRIVE_SETTINGS = CORE_SETTINGS + LEARNER_SETTINGS + LOOP_SETTINGS


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
        if algo_class is None:
            from drive_rllib.algorithm.drive import DRIVE  # drive.py imports this module

            algo_class = DRIVE
        super().__init__(algo_class=algo_class)
        # An env whose step() raises is recreated and its episode dropped (counted as
        # env_runners/num_env_step_failures) rather than ending the run or its EnvRunner.
        self.restart_failed_sub_environments = True

        # The core's settings, with their defaults from drive_rllib.core.spec (each is
        # documented there; `to_spec()` builds the spec from them).
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
        self.model_weight_decay = 1e-4  # AdamW's decoupled weight decay of f_hat
        self.max_skipped_updates = 10
        # The update's cost (results unchanged but for rounding; see DRIVETorchLearner).
        self.flush_denormals = True
        self.optimizer_implementation = "fused"
        self.gradient_check = "global"
        # Algorithm 1.
        self.updates_per_iteration = 100  # C
        self.value_only_updates = 0
        self.restart_optimizers = False
        self.env_steps_per_iteration = 100  # T
        self.num_warmup_steps = 500
        self.warmup_catch_up = True
        self.replay_capacity = 1_000_000
        self.holdout_every = 10
        self.replay_actor_resources = None  # e.g. {"head": 0.01} on a cluster
        # Reliability: the replay actor's timeouts and snapshots, the data checks.
        self.replay_timeout_s = 60.0
        self.replay_snapshot_interval = 10
        self.max_abs_value = 1e6
        self.max_rejected_share = 0.01
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
        termination: str | None = NotProvided,
        termination_rule: Callable[[Any], Any] | None = NotProvided,
        entropy_floor: bool | None = NotProvided,
        target_entropy: float | None = NotProvided,
        target_entropy_per_dim: float | None = NotProvided,
        initial_entropy_weight: float | None = NotProvided,
        model_layer_norm: bool | None = NotProvided,
        model_activation: str | None = NotProvided,
        model_normalize_targets: bool | None = NotProvided,
        value_heads: int | None = NotProvided,
        value_layer_norm: bool | None = NotProvided,
        value_scaled: bool | None = NotProvided,
        return_range_absorbing: bool | None = NotProvided,
        value_target_aggregate: str | None = NotProvided,
        value_policy_aggregate: str | None = NotProvided,
        value_bounds: bool | None = NotProvided,
        return_range_rate: float | None = NotProvided,
        start_state_model_fraction: float | None = NotProvided,
        value_model_fraction: float | None = NotProvided,
        entropy_floor_real_states: bool | None = NotProvided,
        entropy_floor_recent_rows: int | None = NotProvided,
        entropy_in_returns: bool | None = NotProvided,
        termination_gradient_width: float | None = NotProvided,
        value_horizon: int | None = NotProvided,
        value_head_bootstrap: bool | None = NotProvided,
        distribution_rollout_interval: int | None = NotProvided,
        distribution_rollout_horizon: int | None = NotProvided,
        distribution_rollout_batch: int | None = NotProvided,
        model_state_rounds: int | None = NotProvided,
        model_fit_interval: int | None = NotProvided,
        model_fit_interval_start: int | None = NotProvided,
        model_batch_size: int | None = NotProvided,
        posterior_batch_size: int | None = NotProvided,
        precision: str | None = NotProvided,
        inference_policy: str | None = NotProvided,
        model_lr: float | None = NotProvided,
        posterior_lr: float | None = NotProvided,
        prior_lr: float | None = NotProvided,
        value_lr: float | None = NotProvided,
        entropy_floor_lr: float | None = NotProvided,
        tau: float | None = NotProvided,
        model_eval_interval: int | None = NotProvided,
        model_eval_batch_size: int | None = NotProvided,
        model_weight_decay: float | None = NotProvided,
        max_skipped_updates: int | None = NotProvided,
        flush_denormals: bool | None = NotProvided,
        optimizer_implementation: str | None = NotProvided,
        gradient_check: str | None = NotProvided,
        updates_per_iteration: int | None = NotProvided,
        value_only_updates: int | None = NotProvided,
        restart_optimizers: bool | None = NotProvided,
        env_steps_per_iteration: int | None = NotProvided,
        num_warmup_steps: int | None = NotProvided,
        warmup_catch_up: bool | None = NotProvided,
        replay_capacity: int | None = NotProvided,
        holdout_every: int | None = NotProvided,
        replay_actor_resources: dict[str, float] | None = NotProvided,
        replay_timeout_s: float | None = NotProvided,
        replay_snapshot_interval: int | None = NotProvided,
        max_abs_value: float | None = NotProvided,
        max_rejected_share: float | None = NotProvided,
        lean_collection: bool | None = NotProvided,
        **kwargs: Any,
    ) -> DRIVEConfig:
        """Sets DRIVE's training settings (and RLlib's, e.g. ``gamma``, via ``kwargs``).

        Args:
            horizon, num_samples, alpha, policy_update, ..., precision,
                inference_policy: the core's settings, one keyword per field of
                `drive_rllib.core.spec.DRIVESpec` (but ``gamma``, RLlib's own
                keyword). Each is documented, with its default and its check, in
                the attribute list of `NetworkSpec`, `UpdateSpec` or `ActingSpec`
                in ``drive_rllib/core/spec.py``. ``horizon`` (H) is also accepted as
                ``model_horizon``, the name experiment files use. ``termination``
                "auto" or "known" without a ``termination_rule`` takes the env's
                registered rule (`drive_rllib.core.termination`; ``to_spec()``).
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
            model_weight_decay: decoupled weight decay >= 0 of the dynamics
                ensemble's optimizer (AdamW; 0: plain Adam). Default 1e-4.
            max_skipped_updates: K >= 1. An update step whose loss is NaN or inf
                is skipped (weights, optimizer states and normaliser stay as they
                were; counted as ``training/skipped_steps``); K consecutive
                skipped steps fail the trial. Default 10.
            flush_denormals: flush subnormal floats to zero on the CPU thread of
                each Learner's update (``torch.set_flush_denormal``; Adam's moments
                decay into subnormals, which x86 CPUs compute slowly). Process-wide
                for that thread: with ``num_learners=0`` it is the driver's. Default True.
            optimizer_implementation: "fused" (one fused Adam kernel per component
                where the device has one, else "foreach"), "foreach" or "for_loop"
                (torch's own default on CPU). Default "fused".
            gradient_check: "global" (one NaN / inf check over the loss and all
                gradients together; a non-finite one skips the whole update step,
                see ``max_skipped_updates``), "per_parameter" (the loss checked, then
                RLlib's own ``apply_gradients``, with ``torch_skip_nan_gradients``) or
                "off" (only the loss is checked). Default "global".
            updates_per_iteration: C >= 1, update steps per iteration on every
                Learner, each on ``train_batch_size_per_learner`` rows. Default 100.
            value_only_updates: update steps >= 0 that fit psi alone (Eq. 4; f_hat,
                q_phi, pi_theta and the entropy floor held, their optimizers untouched)
                at the start of every learning iteration, before its C steps: DHMBPO's
                critic-only iterations (a quarter of C there), which let p_psi catch up
                with the new data and policy before Eq. 6 reads it. Each costs about an
                update step. Default 0.
            restart_optimizers: at the start of every learning iteration the Adam
                states (moments, step counts) of q_phi, pi_theta, psi and the entropy
                floor start afresh (not f_hat's), as DHMBPO re-creates its actor's and
                critic's optimizers at every model refit. Default False.
            env_steps_per_iteration: T >= 1, env steps per iteration over all
                EnvRunners (rounded up to a multiple of runners x envs). Default 100.
            num_warmup_steps: env steps with uniform random actions (in the
                module's [-1, 1] space) before pi_theta acts; an iteration that
                starts inside the warm-up is random throughout, so warm-up ends
                on an iteration boundary. Learning starts once the replay holds
                this many rows and at least one batch. Default 500.
            warmup_catch_up: the first learning iteration runs round(C / T x rows
                replayed) update steps instead of C (in chunks of C), so the
                update-to-data ratio counts the warm-up's env steps too (as
                DHMBPO's first update). Default True.
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
            replay_timeout_s: seconds every call into the replay actor may take
                before it fails with an error that names the actor (a hung actor
                is reported within about this bound after the sampling phase).
                Default 60.
            replay_snapshot_interval: iterations between snapshots of the replay
                (``replay_snapshot.npz`` in the trial's folder, written atomically;
                every checkpoint is one too). A crashed replay actor is restarted
                and reloads the newest, so at most the rows of this many
                iterations are lost (``replay/rows_lost``). 0: no snapshots (a
                restarted actor starts empty). Default 10.
            max_abs_value: rows whose observation entries exceed this bound times
                the env's observation scale (the largest finite bound of its
                observation space, at least 1), or whose reward or action exceeds
                it, are dropped before they are stored, as are rows with NaN or
                inf (``replay/rows_rejected``). Default 1e6.
            max_rejected_share: the run fails when more than this share of the
                rows pushed so far were rejected (checked from 1,000 rows on).
                Default 0.01.
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
        if "model_horizon" in kwargs:  # DRIVE's name of H; the attribute is `horizon`
            self.horizon = kwargs.pop("model_horizon")
        super().training(**kwargs)
        # Each DRIVE keyword above sets the attribute of the same name; a test checks that
        # the keywords are exactly DRIVE_SETTINGS (the spec's fields, the Learner's and the
        # loop's settings).
        given = locals()
        for name in DRIVE_SETTINGS:
            if given[name] is not NotProvided:
                setattr(self, name, given[name])
        return self

    @property
    def model_horizon(self) -> int:
        """H, the model horizon: the name the ``rllib`` command and experiment files use
        (``horizon`` was the episode length in old RLlib files); the same as ``horizon``."""
        return self.horizon

    @model_horizon.setter
    def model_horizon(self, value: int) -> None:
        self.horizon = value

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
        """The core's settings of this config as one checked `DRIVESpec`; with
        ``termination`` "auto" or "known" and no ``termination_rule`` given, the rule
        registered for the env (made with its ``env_config``).

        Raises:
            ValueError: a setting fails its check (the message says what to change).
        """
        termination, rule = self.resolved_termination()
        return DRIVESpec.from_settings(self, termination=termination, termination_rule=rule)

    def resolved_termination(self) -> tuple[Any, Callable[[Any], Any] | None]:
        """(termination, termination_rule) as the core gets them: where ``termination`` is
        "auto" or "known" and no rule is given, the env's registered rule (made with its
        ``env_config``), or "none" where the registry says the env never terminates."""
        try:
            wants_rule = Termination(self.termination) in (Termination.AUTO, Termination.KNOWN)
        except ValueError:  # the spec's check names the bad value
            wants_rule = False
        if self.termination_rule is not None or not wants_rule:
            return self.termination, self.termination_rule
        if not termination_rules.has_rule(self.env):
            return self.termination, None
        rule = termination_rules.rule_for(self.env, self.env_config)
        return (Termination.NONE, None) if rule is None else (Termination.KNOWN, rule)

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        # The RLModule gets its settings as one spec (``DRIVETorchRLModule.setup``).
        return super()._model_config_auto_includes | {SPEC_KEY: self.to_spec().to_dict()}

    @override(AlgorithmConfig)
    def validate(self) -> None:
        """Checks every DRIVE setting; each error message says what to change."""
        # Before RLlib's own checks, which would ask for changes to output= settings.
        if self._validate_config and offline.check_offline_settings(self):
            self._value_error(offline.check_offline_settings(self))
        super().validate()
        if not self._validate_config:
            return
        checks.check_resolved(self, DRIVE_SETTINGS + ("gamma", "train_batch_size_per_learner"))
        checks.check_finite_settings(self)
        checks.check_core_settings(self)
        checks.check_learner_settings(self)
        checks.check_loop_settings(self)
        checks.check_rllib_settings(self)
        checks.check_torch_compile(self)
        checks.check_memory(self, *checks.check_env_spaces(self))

    def env_spaces(self) -> tuple[gym.Space, gym.Space]:
        """(observation space, action space) of the configured env, building it once.

        Raises:
            ValueError: no env, an unknown env id, or a multi-agent env.
        """
        register_module_env(self.env)
        if self.env is None:
            raise ValueError(
                "DRIVE learns from an environment: set config.environment('Pendulum-v1') "
                "(a gymnasium id, a registered name, or an env class)."
            )
        # Algorithm.__init__ validates before Tune moves into the trial folder: MuJoCo's
        # warnings of this env to logging, not to ./MUJOCO_LOG.TXT (setup's handler, with
        # the trial folder's log file, replaces this one).
        redirect_mujoco_warnings(replace=False)
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


def register_module_env(env: Any) -> None:
    """Makes a gymnasium ``"module:EnvId"`` (the module registers EnvId when imported)
    usable as RLlib's env: RLlib reads a dotted string as a class path, so the id is
    registered with Tune, its creator calling ``gym.make("module:EnvId", **env_config)``
    (which imports the module in every process that makes the env)."""
    if not (isinstance(env, str) and ":" in env):
        return
    from ray.tune.registry import ENV_CREATOR, _global_registry, register_env

    if not _global_registry.contains(ENV_CREATOR, env):
        register_env(env, lambda env_config: gym.make(env, **dict(env_config)))
