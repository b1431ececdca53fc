"""The networks of DRIVE, torch only.

| symbol        | class                | what                                                    |
|---------------|----------------------|---------------------------------------------------------|
| f_hat         | `DynamicsEnsemble`   | E probabilistic MLPs over (s' - s, r) + termination    |
| p_psi(U|s,a)  | `GaussianValue`      | N(mu, sigma^2), sigma >= sigma_min; Polyak copy psi_bar |
| pi_theta(a|s) | `TanhGaussianPolicy` | the prior; it acts                                      |
| q_phi(a|O,s)  | `TanhGaussianPolicy` | the variational posterior, its own network              |

`DRIVENetworks` holds them all, plus the observation normaliser and the
entropy floor, so one ``nn.Module`` carries every trainable tensor and every
running statistic (and so is checkpointed and synchronised as one).

Shapes: ``B`` batch rows, ``E`` ensemble members, ``K`` elites, ``S`` observation
dim, ``A`` action dim. Actions are in module space [-1, 1].
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drive_rllib.core.distributions import tanh_gaussian_rsample
from drive_rllib.core.spec import NetworkSpec


def mlp(
    in_dim: int, hiddens: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """A plain MLP: Linear + activation per hidden layer, linear output."""
    layers: list[nn.Module] = []
    for width in hiddens:
        layers += [nn.Linear(in_dim, width), activation(inplace=True)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def frozen_call(module: nn.Module, *args, **kwargs):
    """Call ``module`` with its parameters held fixed.

    Gradients pass through the outputs to the inputs, never into the
    module's parameters. Unlike detaching the outputs, this keeps the path
    from the outputs back to whatever produced the inputs (e.g. through the
    action a_t into q_phi).
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args, kwargs)


class RunningNormalizer(nn.Module):
    """Running mean and variance of observations, as buffers.

    The statistics are kept as additive sums (count, sum, sum of squares) in
    float64, so the sums of several learners can be all-reduced and merged and
    every learner ends with the same statistics. Until two rows have been seen
    the normaliser is the identity.
    """

    def __init__(self, dim: int, eps: float = 1e-6, clip: float = 10.0) -> None:
        super().__init__()
        self.eps = eps
        self.clip = clip
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("total", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("total_sq", torch.zeros(dim, dtype=torch.float64))

    @staticmethod
    def batch_sums(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(count, sum, sum of squares) of a [B, S] batch, in float64; additive across batches."""
        x = x.detach().double()
        return x.new_tensor(float(x.shape[0])), x.sum(0), x.square().sum(0)

    @torch.no_grad()
    def update_from_sums(self, count: Tensor, total: Tensor, total_sq: Tensor) -> None:
        """Merge the sums of new rows (e.g. all-reduced over learners)."""
        self.count += count.to(self.count)
        self.total += total.to(self.total)
        self.total_sq += total_sq.to(self.total_sq)

    def update(self, x: Tensor) -> None:
        """Merge the rows of a [B, S] batch."""
        self.update_from_sums(*self.batch_sums(x))

    @property
    def mean(self) -> Tensor:
        """Running mean, [S] (zeros before two rows)."""
        if self.count < 2:
            return torch.zeros_like(self.total)
        return self.total / self.count

    @property
    def std(self) -> Tensor:
        """Running standard deviation (population), [S] (ones before two rows)."""
        if self.count < 2:
            return torch.ones_like(self.total)
        variance = (self.total_sq / self.count - self.mean.square()).clamp_min(0.0)
        return torch.sqrt(variance + self.eps)

    def frozen(self, dtype: torch.dtype = torch.float32):
        """The normalisation with the current statistics, as a function (computed once, reused)."""
        mean, std, clip = self.mean.to(dtype), self.std.to(dtype), self.clip
        return lambda x: ((x - mean) / std).clamp(-clip, clip)

    def forward(self, x: Tensor) -> Tensor:
        """(x - mean) / std, clipped to [-clip, clip]; differentiable in x."""
        return self.frozen(x.dtype)(x)


class TanhGaussianPolicy(nn.Module):
    """A tanh-squashed diagonal Gaussian over actions, for pi_theta and q_phi.

    ``forward`` returns the pre-squash Gaussian (mean, std); the action is
    ``tanh(u)`` with ``u ~ N(mean, std^2)``. The log-std is squashed smoothly
    into ``[log_std_min, log_std_max]``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hiddens: Sequence[int] = (256, 256),
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hiddens, 2 * action_dim)
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def forward(self, obs_normalised: Tensor) -> tuple[Tensor, Tensor]:
        """[B, S] -> (mean [B, A], std [B, A]) of the pre-squash Gaussian."""
        mean, raw_log_std = self.net(obs_normalised).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            torch.tanh(raw_log_std) + 1.0
        )
        return mean, log_std.exp()


class GaussianValue(nn.Module):
    """p_psi(U | s, a) = N(mu(s, a), sigma(s, a)^2) with sigma >= sigma_min."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hiddens: Sequence[int] = (256, 256),
        sigma_min: float = 0.1,
    ) -> None:
        super().__init__()
        if sigma_min <= 0:
            raise ValueError(f"sigma_min must be > 0, got {sigma_min}")
        self.net = mlp(obs_dim + action_dim, hiddens, 2)
        self.sigma_min = sigma_min

    def forward(self, obs_normalised: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """([B, S], [B, A]) -> (mu [B], sigma [B])."""
        mu, raw_sigma = self.net(torch.cat([obs_normalised, action], dim=-1)).unbind(-1)
        return mu, self.sigma_min + F.softplus(raw_sigma)


class EnsembleLinear(nn.Module):
    """The parameters of E independent linear layers, weight [E, in, out] and bias [E, 1, out].

    ``DynamicsEnsemble`` applies them in one batched matmul (``torch.baddbmm``).
    """

    def __init__(self, num_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim).uniform_(-bound, bound))


class DynamicsEnsemble(nn.Module):
    """f_hat: E probabilistic MLPs predicting N(mean, std^2) over (s' - s, r) and a termination logit.

    Members are evaluated in one batched pass (``EnsembleLinear``). The log-std
    is bounded softly to ``[log_std_min, log_std_max]``. ``elite_idx`` (a
    buffer) holds the ``num_elites`` members with the lowest held-out error,
    used in rollouts.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        num_members: int = 7,
        num_elites: int = 5,
        hiddens: Sequence[int] = (200, 200, 200),
        log_std_min: float = -10.0,
        log_std_max: float = 2.0,
        learn_termination: bool = True,
    ) -> None:
        super().__init__()
        if not 1 <= num_elites <= num_members:
            raise ValueError(
                f"num_elites must be in [1, num_members={num_members}], got {num_elites}"
            )
        self.obs_dim = obs_dim
        self.num_members = num_members
        self.num_elites = num_elites
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.learn_termination = learn_termination
        widths = [obs_dim + action_dim, *hiddens]
        self.hidden_layers = nn.ModuleList(
            EnsembleLinear(num_members, i, o) for i, o in itertools.pairwise(widths)
        )
        # Outputs: mean and raw log-std of (s' - s, r), then one termination logit.
        self.out_dim = obs_dim + 1
        self.head = EnsembleLinear(num_members, widths[-1], 2 * self.out_dim + 1)
        self.register_buffer("elite_idx", torch.arange(num_elites))
        self.register_buffer("holdout_error", torch.full((num_members,), float("nan")))

    def layer_params(
        self, members: Tensor | None = None, frozen: bool = False
    ) -> list[tuple[Tensor, Tensor]]:
        """(weight [K, in, out], bias [K, 1, out]) of every layer for ``members`` (None: all E).

        With ``frozen`` the tensors are detached: outputs computed with them pass
        gradients to the inputs but never to the model (f_hat held fixed).
        Gather once per update and reuse for every imagined step.
        """
        params = []
        for layer in [*self.hidden_layers, self.head]:
            weight, bias = layer.weight, layer.bias
            if members is not None:
                weight, bias = weight[members], bias[members]
            if frozen:
                weight, bias = weight.detach(), bias.detach()
            params.append((weight, bias))
        return params

    def forward(
        self,
        obs_normalised: Tensor,
        action: Tensor,
        params: list[tuple[Tensor, Tensor]] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Predict with every member, or with the members whose ``layer_params`` are given.

        Args:
            obs_normalised: [K, B, S] (one slice per member) or [B, S] (shared by all).
            action: [K, B, A] or [B, A].
            params: output of ``layer_params`` (None: all E members, trainable).

        Returns:
            mean [K, B, S+1], log_std [K, B, S+1], termination logit [K, B].
        """
        if params is None:
            params = self.layer_params()
        x = torch.cat([obs_normalised, action], dim=-1)
        if x.dim() == 2:
            x = x.expand(params[0][0].shape[0], *x.shape)
        for weight, bias in params[:-1]:
            x = torch.relu_(torch.baddbmm(bias, x, weight))
        out = torch.baddbmm(params[-1][1], x, params[-1][0])
        mean, raw_log_std, term_logit = out.split([self.out_dim, self.out_dim, 1], dim=-1)
        log_std = self.log_std_max - F.softplus(self.log_std_max - raw_log_std)
        log_std = self.log_std_min + F.softplus(log_std - self.log_std_min)
        return mean, log_std, term_logit.squeeze(-1)

    @torch.no_grad()
    def holdout_errors(
        self, obs_normalised: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, obs: Tensor
    ) -> Tensor:
        """Per-member mean squared error of the predicted mean on held-out rows: [E]."""
        mean, _, _ = self(obs_normalised, action)
        target = torch.cat([next_obs - obs, reward.unsqueeze(-1)], dim=-1)
        return (mean - target).square().mean(dim=(1, 2))

    @torch.no_grad()
    def set_elites(self, errors: Tensor) -> None:
        """Keep the ``num_elites`` members with the lowest ``errors`` [E] as elites."""
        self.holdout_error.copy_(errors)
        self.elite_idx.copy_(torch.argsort(errors)[: self.num_elites])


class EntropyFloor(nn.Module):
    """Weight of the entropy floor on pi_theta, tuned toward a target entropy (as SAC's temperature).

    Nothing in the bound keeps pi_theta's variance up; this term does. The
    weight ``exp(log_weight)`` grows while the entropy of pi_theta is below
    ``target_entropy`` and shrinks toward 0 above it.
    """

    def __init__(self, target_entropy: float, initial_weight: float = 1.0) -> None:
        super().__init__()
        if initial_weight <= 0:
            raise ValueError(f"initial entropy weight must be > 0, got {initial_weight}")
        self.log_weight = nn.Parameter(torch.tensor(math.log(initial_weight)))
        self.register_buffer("target_entropy", torch.tensor(float(target_entropy)))

    @property
    def weight(self) -> Tensor:
        return self.log_weight.exp()


class DRIVENetworks(nn.Module):
    """Every network, statistic and learnable scalar of DRIVE in one module.

    Sizes and options come from one `NetworkSpec`. Children and their
    optimizer groups (``parameter_groups``):
    ``model`` (f_hat), ``posterior`` (q_phi), ``prior`` (pi_theta), ``value``
    (psi), ``entropy_floor`` (its log weight, when enabled). ``target_value``
    (psi_bar) and ``obs_normalizer`` carry no gradient.
    """

    def __init__(self, obs_dim: int, action_dim: int, spec: NetworkSpec | None = None) -> None:
        """Builds every network for observations of dim S = ``obs_dim`` and A = ``action_dim``.

        Args:
            obs_dim: S.
            action_dim: A.
            spec: sizes and options (default: ``NetworkSpec()``).
        """
        super().__init__()
        spec = NetworkSpec() if spec is None else spec
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.obs_normalizer = RunningNormalizer(obs_dim)
        self.model = DynamicsEnsemble(
            obs_dim,
            action_dim,
            num_members=spec.ensemble_size,
            num_elites=spec.num_elites,
            hiddens=spec.model_hiddens,
            learn_termination=spec.learn_termination,
        )
        self.posterior = TanhGaussianPolicy(obs_dim, action_dim, spec.policy_hiddens)
        self.prior = TanhGaussianPolicy(obs_dim, action_dim, spec.policy_hiddens)
        self.value = GaussianValue(obs_dim, action_dim, spec.value_hiddens, spec.sigma_min)
        self.target_value = GaussianValue(obs_dim, action_dim, spec.value_hiddens, spec.sigma_min)
        self.target_value.load_state_dict(self.value.state_dict())
        self.target_value.requires_grad_(False)
        target_entropy = -float(action_dim) if spec.target_entropy is None else spec.target_entropy
        self.entropy_floor = (
            EntropyFloor(target_entropy, spec.initial_entropy_weight) if spec.entropy_floor else None
        )

    @property
    def sigma_min(self) -> float:
        return self.value.sigma_min

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Disjoint parameter lists, one per optimizer; together every trainable parameter."""
        groups = {
            "model": list(self.model.parameters()),
            "posterior": list(self.posterior.parameters()),
            "prior": list(self.prior.parameters()),
            "value": list(self.value.parameters()),
        }
        if self.entropy_floor is not None:
            groups["entropy_floor"] = list(self.entropy_floor.parameters())
        return groups

    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Action of pi_theta for raw observations [B, S]: [B, A] in [-1, 1].

        Deterministic: tanh of the pre-squash mean; otherwise a sample.
        """
        mean, std = self.prior(self.obs_normalizer(obs))
        if deterministic:
            return torch.tanh(mean)
        return tanh_gaussian_rsample(mean, std)[0]

    @torch.no_grad()
    def polyak_update(self, tau: float) -> None:
        """psi_bar <- tau * psi + (1 - tau) * psi_bar."""
        for target, source in zip(self.target_value.parameters(), self.value.parameters()):
            target.lerp_(source, tau)
