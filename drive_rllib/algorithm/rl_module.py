"""`DRIVETorchRLModule`: all of DRIVE's networks and statistics in one RLlib RLModule.

The module owns one `drive_rllib.core.DRIVENetworks`: the dynamics ensemble
(with its elite indices), the value net psi and its Polyak copy psi_bar,
pi_theta, q_phi, the observation normaliser and the entropy floor's weight.
Being inside the RLModule, every one of them is checkpointed with it and,
under DDP, kept identical across Learners.

The module's settings arrive as one `drive_rllib.core.DRIVESpec`, serialised
into ``model_config[SPEC_KEY]`` by ``DRIVEConfig`` and read back once in
``setup``.

``_forward_train`` runs the whole differentiable update step (the core's
``update_loss``: the batch means of the terms and their weighted total, with
the weights of ``loss_weights``), so under DDP (``num_learners > 1``) it runs
inside DistributedDataParallel's forward and the gradients of the one backward
are all-reduced. The Learner takes the total as the loss.

On EnvRunners (``inference_only=True``) the module keeps only what acting
needs: the normaliser and pi_theta (and q_phi when it is the
``inference_policy``).

Acting outside RLlib, as RLlib's docs do it: ``forward_inference`` returns the
action and ``action_dist_inputs`` for `DRIVESquashedGaussian`, the declared
inference/exploration distribution. Actions are in [-1, 1]; the env wants its
own bounds, so rescale them with ``unsquash_action`` as RLlib's connectors do
(the return equals ``rllib evaluate``'s for the same seed)::

    import gymnasium as gym
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module import RLModule
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    module = RLModule.from_checkpoint(f"{checkpoint}/learner_group/learner/rl_module/default_policy")
    env = gym.make("InvertedPendulum-v5")
    obs, _ = env.reset(seed=0)
    episode_return, done = 0.0, False
    while not done:
        out = module.forward_inference({Columns.OBS: torch.as_tensor(obs, dtype=torch.float32)[None]})
        dist = module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
        action = dist.to_deterministic().sample()[0].numpy()  # in [-1, 1]
        obs, reward, terminated, truncated, _ = env.step(unsquash_action(action, env.action_space))
        episode_return, done = episode_return + reward, terminated or truncated
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDeterministic,
    TorchSquashedGaussian,
)
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch.torch_compile_config import TorchCompileConfig
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override

from drive_rllib.algorithm.batch import core_batch
from drive_rllib.core import (
    DRIVENetworks,
    DRIVESpec,
    InferencePolicy,
    loss_weights,
    tanh_gaussian_rsample,
    update_loss,
)
from drive_rllib.core.distributions import aggregate_heads, tanh_gaussian_action
from drive_rllib.core.networks import HostCopy
from drive_rllib.core.spec import Aggregate
from drive_rllib.core.update import inductor_options

#: The key of ``model_config`` that holds ``DRIVESpec.to_dict()``.
SPEC_KEY = "drive_spec"
# Keys of the `_forward_train` output.
LOSS = "loss"
TERM_MEANS = "term_means"
DIAGNOSTICS = "diagnostics"


class DRIVESquashedGaussian(TorchSquashedGaussian):
    """pi_theta's (or q_phi's) law: tanh of N(mean, std^2), in [-1, 1].

    ``from_logits`` takes ``action_dist_inputs`` = [mean, log std] (RLlib's
    `TorchSquashedGaussian`); the deterministic action is tanh(mean), the action
    ``forward_inference`` returns (RLlib's own class returns the unsquashed mean).
    """

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=torch.tanh(self.loc))


def require_cxx_compiler() -> None:
    """One clear error, when the Learner is built, if inductor will find no C++ compiler.

    ``torch.compile`` compiles lazily: without this the first update step (after the
    whole warm-up) would fail deep inside inductor.
    """
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler as error:
        raise ValueError(
            f"`torch_compile_learner` with the inductor backend needs a C++ compiler ({error}). "
            "Install one (e.g. g++), point the CXX environment variable at it, or turn "
            "compiling off: config.framework(torch_compile_learner=False) "
            "(torch_compile_learner: false in an experiment file)."
        ) from error


class DRIVETorchRLModule(TorchRLModule, InferenceOnlyAPI):
    """The RLModule of DRIVE (torch).

    ``model_config[SPEC_KEY]`` holds the `DRIVESpec` that ``DRIVEConfig.to_spec()``
    built (network sizes, the update step, the acting policy); ``self.spec`` is
    that spec, read once in ``setup``.

    Outputs:
        ``forward_exploration``: ``actions`` [B, A] in [-1, 1], sampled from
        pi_theta (uniform in [-1, 1] while ``act_uniformly`` is set, i.e. during
        random warm-up), and pi_theta's ``action_dist_inputs`` [B, 2A].
        ``forward_inference``: the deterministic mean action tanh(mean) of pi_theta
        (or of q_phi with ``inference_policy="posterior"``), and that policy's
        ``action_dist_inputs`` [B, 2A] = [mean, log std] for
        `DRIVESquashedGaussian` (``get_inference_action_dist_cls()``).
        ``forward_train``: ``{"loss": scalar, "term_means": {name: scalar},
        "diagnostics": {key: scalar}}`` (``update_loss``).
    """

    @override(RLModule)
    def setup(self) -> None:
        self.spec = DRIVESpec.from_dict(self.model_config[SPEC_KEY])
        obs_dim = int(np.prod(self.observation_space.shape))
        action_dim = int(np.prod(self.action_space.shape))
        self.nets = DRIVENetworks(
            obs_dim, action_dim, self.spec.networks, self.spec.update.model_state_capacity
        )
        # Update steps run so far: a buffer, so it is checkpointed and equal on all
        # Learners (it schedules the ranking of the ensemble).
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        self._num_updates_host = HostCopy()  # read without a GPU sync per step
        # Set by DRIVEEnvRunner while it samples random warm-up actions; not state.
        self.act_uniformly = False
        # Set by DRIVETorchLearner for the update steps that fit psi only
        # (``value_only_updates``); not state.
        self.value_only = False
        # The weight of every loss term (``update_loss`` sums the weighted term means).
        self.loss_weights = loss_weights(self.spec.update, self.spec.networks)
        # What ``_forward_train`` computes the step with: ``update_loss``, or its
        # ``torch.compile`` wrapper once ``compile`` has run.
        self._step = update_loss
        if self.inference_only:
            # RLlib's own pruning deletes nested attributes ("nets.model") from the
            # RLModule itself instead of from their parent, so prune here.
            for attribute in self.get_non_inference_attributes():
                if attribute.startswith("nets."):
                    setattr(self.nets, attribute.split(".", 1)[1], None)

    @override(TorchRLModule)
    def compile(self, compile_config: TorchCompileConfig) -> None:
        """``torch.compile`` the update step's loss (``update_loss``), once; acting
        stays eager.

        The step traces into one graph (its backward with it). ``fits_model`` reads
        ``num_updates`` in Python, so it stays outside, and the compiled step is
        specialised on its answer (one graph for fitting steps, one for the others).
        RLlib's own ``compile`` compiles ``_forward_inference`` and
        ``_forward_exploration`` too: on a Learner nothing calls them, and compiling
        them costs minutes for nothing. Called by `DRIVETorchLearner.build` when
        ``torch_compile_learner`` is set; a second call does nothing.

        With inductor and no dynamo mode, the step draws its random numbers with
        torch's own generators (``fallback_random``), not inductor's per-element ones,
        which cost more on a CPU, and the compiled step draws the eager step's numbers;
        and on a CPU it runs under inductor's C++ wrapper (``cpp_wrapper``): the
        compiled step's few hundred kernel and matmul calls are made from C++ instead of
        a generated Python function (`docs/performance.md`; `inductor_options`).
        """
        if self.is_compiled:
            return
        kwargs = dict(compile_config.kwargs)
        if compile_config.torch_dynamo_backend == "inductor":
            require_cxx_compiler()
            if not compile_config.torch_dynamo_mode:
                device = next(self.parameters()).device  # the Learner's, by now
                kwargs.setdefault("options", inductor_options(device))
        self._step = torch.compile(
            update_loss,
            backend=compile_config.torch_dynamo_backend,
            mode=compile_config.torch_dynamo_mode,
            **kwargs,
        )

    @property
    def is_compiled(self) -> bool:
        """Whether ``compile`` has run: the update step is ``torch.compile``'s."""
        return self._step is not update_loss

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        """What EnvRunners do not need: all but the normaliser and pi_theta (and q_phi
        when it is the ``inference_policy``); also filters ``get_state(inference_only=True)``."""
        attributes = [
            "num_updates",
            "nets.model",
            "nets.value",
            "nets.target_value",
            "nets.entropy_floor",
            "nets.target_normalizer",
            "nets.model_states",
            "nets.return_range",
        ]
        if not self._acts_with_posterior():
            attributes.append("nets.posterior")
        return attributes

    @override(TorchRLModule)
    def get_state(
        self,
        components: Any = None,
        *,
        not_components: Any = None,
        inference_only: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """RLlib's state (numpy), but float64 tensors stay float64.

        RLlib converts float64 to float32 both ways, which would round the
        normaliser's float64 sums on every weight sync and checkpoint.
        """
        state = super().get_state(
            components, not_components=not_components, inference_only=inference_only, **kwargs
        )
        for key, tensor in self.state_dict().items():
            if key in state and tensor.dtype == torch.float64:
                state[key] = tensor.detach().cpu().numpy().copy()
        return state

    @override(TorchRLModule)
    def set_state(self, state: dict[str, Any]) -> None:
        """Loads a state dict into this module's tensors, keeping their dtypes."""
        own = self.state_dict()

        def as_tensor(key: str, value: Any) -> Any:
            if key not in own:
                return value
            if not torch.is_tensor(value):
                value = torch.from_numpy(np.array(value))
            return value.detach().to(own[key].dtype)

        tensors = {key: as_tensor(key, value) for key, value in state.items()}
        missing, _ = self.load_state_dict(tensors, strict=False)
        if self.inference_only and missing:
            raise ValueError(f"state is missing keys {sorted(missing)} this module needs")

    # -- acting ----------------------------------------------------------------------------

    def _acts_with_posterior(self) -> bool:
        return self.spec.acting.inference_policy is InferencePolicy.POSTERIOR

    def _observations(self, batch: dict[str, Any]) -> torch.Tensor:
        obs = batch[Columns.OBS]
        return obs.reshape(obs.shape[0], -1).float()

    @override(TorchRLModule)
    def get_inference_action_dist_cls(self) -> type[DRIVESquashedGaussian]:
        return DRIVESquashedGaussian

    @override(TorchRLModule)
    def get_exploration_action_dist_cls(self) -> type[DRIVESquashedGaussian]:
        return DRIVESquashedGaussian

    @override(TorchRLModule)
    def get_train_action_dist_cls(self) -> type[DRIVESquashedGaussian]:
        return DRIVESquashedGaussian

    def _policy_law(self, obs: torch.Tensor, posterior: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(pre-squash mean, std) [B, A] of q_phi or pi_theta for raw observations."""
        policy = self.nets.posterior if posterior else self.nets.prior
        return policy(self.nets.obs_normalizer(obs))

    @override(TorchRLModule)
    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            mean, std = self._policy_law(self._observations(batch), self._acts_with_posterior())
        return {
            Columns.ACTIONS: torch.tanh(mean),
            Columns.ACTION_DIST_INPUTS: torch.cat([mean, std.log()], dim=-1),
        }

    @torch.no_grad()
    def predicted_return(
        self, obs: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """p_psi(U | s, a) = N(mu, sigma^2) for raw observations [B, S] and actions in [-1, 1]:
        the moment-matched mixture of the value heads, in the return range's units.

        Only on a full (Learner-side) module: EnvRunners' inference-only copies
        hold no value network.
        """
        if self.nets.value is None:
            raise RuntimeError(
                "this is an inference-only DRIVE module without the value network; use the "
                "Learner's module (algo.learner_group) to read p_psi"
            )
        obs = obs.reshape(obs.shape[0], -1).float()
        heads = self.nets.value(self.nets.obs_normalizer(obs), action, self.nets.value_scale())
        return aggregate_heads(*heads, Aggregate.MEAN.value)

    @override(TorchRLModule)
    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            obs = self._observations(batch)
            mean, std = self._policy_law(obs, posterior=False)
            if self.act_uniformly:
                action = (
                    torch.rand(obs.shape[0], self.nets.action_dim, device=obs.device)
                    .mul_(2.0)
                    .sub_(1.0)
                )
            else:
                action = tanh_gaussian_rsample(mean, std)[0]
        return {
            Columns.ACTIONS: action,
            Columns.ACTION_DIST_INPUTS: torch.cat([mean, std.log()], dim=-1),
        }

    def acting_policy(self, explore: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        """raw obs [B, S] -> actions [B, A] in [-1, 1], as ``forward_exploration`` (explore)
        or ``forward_inference`` compute them, for one stretch of sampling.

        The normaliser's statistics are read once (only a weight sync changes them), and
        RLlib's per-call wrapper is skipped: what DRIVEEnvRunner's lean loop calls once per
        vector step (no log-probability). Call it under ``torch.inference_mode()``.
        """
        normalize = self.nets.obs_normalizer.frozen(torch.float32)
        if explore:
            prior = self.nets.prior
            return lambda obs: tanh_gaussian_action(*prior(normalize(obs)))
        policy = self.nets.posterior if self._acts_with_posterior() else self.nets.prior
        return lambda obs: torch.tanh(policy(normalize(obs))[0])

    @override(RLModule)
    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._forward_inference(batch, **kwargs)

    # -- learning --------------------------------------------------------------------------

    @override(RLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """One DRIVE update step's loss, the batch means of its terms (model, Eq. 6, Eq. 5,
        Eq. 4) and its diagnostics; f_hat is fitted when ``fits_model``."""
        loss, means, diagnostics = self._step(
            self.nets, core_batch(batch), self.spec.update, self.loss_weights, self.fits_model()
        )
        return {LOSS: loss, TERM_MEANS: means, DIAGNOSTICS: diagnostics}

    def fits_model(self) -> bool:
        """Whether the update step in progress fits f_hat: every one of the first
        ``model_fit_interval_start``, then every ``model_fit_interval``-th (``num_updates``
        counts the steps applied, equal on every Learner; the Learner moves it after the
        step); never a value-only step."""
        if self.value_only:
            return False
        spec = self.spec.update
        step = self.updates_done()
        return step < spec.model_fit_interval_start or step % spec.model_fit_interval == 0

    def updates_done(self) -> int:
        """``num_updates`` as an int; read back from its device only after a restore."""
        return int(self._num_updates_host.read(self.num_updates))

    def count_update(self) -> int:
        """Adds one to ``num_updates`` (on its device) and returns the new count, without
        reading it back."""
        done = self.updates_done() + 1
        self.num_updates += 1
        self._num_updates_host.wrote(self.num_updates, done)
        return done

    @torch.no_grad()
    def holdout_errors(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        """Per-member one-step error [E] of the dynamics ensemble on held-out rows.

        Args:
            batch: replay rows (obs, action, reward, next_obs, ...) as numpy arrays.
        """
        device = next(self.nets.parameters()).device

        def tensor(name: str) -> torch.Tensor:
            return torch.as_tensor(np.asarray(batch[name]), dtype=torch.float32, device=device)

        obs = tensor("obs")
        return self.nets.model.holdout_errors(
            self.nets.obs_normalizer(obs),
            tensor("action"),
            tensor("reward"),
            tensor("next_obs"),
            obs,
            self.nets.target_affine(),
        )
