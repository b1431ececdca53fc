"""The networks of DRIVE, torch only.

| symbol        | class                | what                                                    |
|---------------|----------------------|---------------------------------------------------------|
| f_hat         | `DynamicsEnsemble`   | E probabilistic MLPs over (s' - s, r) + termination    |
| p_psi(U|s,a)  | `GaussianValue`      | K Gaussian heads N(mu_k, sigma_k^2); Polyak copy psi_bar |
| pi_theta(a|s) | `TanhGaussianPolicy` | the prior; it acts                                      |
| q_phi(a|O,s)  | `TanhGaussianPolicy` | the variational posterior, its own network              |

`DRIVENetworks` holds them all, plus the observation (and model-target)
normalisers, the return range that scales and bounds p_psi, the model-state
buffer of distribution rollouts and the entropy floor, so one ``nn.Module``
carries every trainable tensor and every running statistic (and so is
checkpointed and synchronised as one).

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
from drive_rllib.core.spec import Activation, NetworkSpec

LayerParams = list[tuple[Tensor, Tensor]]


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


def autocast_weights(params: LayerParams) -> LayerParams:
    """``params`` cast once to autocast's dtype when autocast is on for their device
    (autocast caches its cast only for leaf parameters; gathered or detached weights
    that several calls reuse are cast here once). Without autocast: unchanged."""
    if not params:
        return params
    device_type = params[0][0].device.type
    if not torch.is_autocast_enabled(device_type):
        return params
    dtype = torch.get_autocast_dtype(device_type)
    return [(weight.to(dtype), bias.to(dtype)) for weight, bias in params]


def frozen_call(module: nn.Module, *args, **kwargs):
    """Call ``module`` with its parameters held fixed: gradients pass through the outputs
    to the inputs (e.g. through a_t into q_phi), never into the module's parameters."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args, kwargs)


class EnsembleLinear(nn.Module):
    """The parameters of E independent linear layers, weight [E, in, out] and bias [E, 1, out].

    ``ensemble_mlp`` applies them in one batched matmul (``torch.bmm``, then the bias);
    ``DynamicsEnsemble`` (E members) and ``GaussianValue`` (K heads) use them.
    """

    def __init__(self, num_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(
            torch.empty(num_members, in_dim, out_dim).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim).uniform_(-bound, bound))


class _SignGradReLU(torch.autograd.Function):
    """ReLU whose backward is ``grad * sign(relu(x))``: F.relu's values and gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = torch.relu(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return grad * torch.sign(out)


def relu(x: Tensor) -> Tensor:
    """ReLU for ``ensemble_mlp``. Compiled, its backward is ``grad * sign(out)`` (the
    same values and gradients as F.relu's, sign(0) = 0), so the compiled step saves no
    bool mask, whose vectorised stores are slow on AVX2 CPUs (docs/performance.md);
    eager, ``F.relu``."""
    if torch.compiler.is_compiling():
        return _SignGradReLU.apply(x)
    return F.relu(x)


ACTIVATIONS = {Activation.RELU: relu, Activation.SILU: F.silu}


def ensemble_mlp(
    x: Tensor,
    params: LayerParams,
    activation: Activation = Activation.RELU,
    layer_norm: bool = False,
) -> Tensor:
    """K MLPs in one batched pass: [K, B, in] -> [K, B, out] (``x`` [B, in] is shared by all K).

    ``params`` are (weight [K, in, out], bias [K, 1, out]) per layer; hidden
    layers apply ``activation``; with ``layer_norm`` every layer but the first
    gets a layer normalisation (no affine) of its input. The output is float32
    even under autocast (mixed precision: the matmuls run in bfloat16, and only the
    [K, B, out] result is cast back, so that losses and rollout states are float32).
    """
    if x.dim() == 2:
        x = x.expand(params[0][0].shape[0], *x.shape)
    act = ACTIVATIONS[activation]
    last = len(params) - 1
    for index, (weight, bias) in enumerate(params):
        if layer_norm and index > 0:
            x = F.layer_norm(x, x.shape[-1:])
        # bmm, then the bias, not baddbmm: compiled, the add fuses into the next
        # layer norm / activation kernel, where baddbmm first copies the bias into
        # its output (`docs/performance.md`).
        x = torch.bmm(x, weight)
        x = x + bias.to(x.dtype)
        if index < last:
            x = act(x)
    return x.float()


def gather_layer_params(
    layers: Sequence[EnsembleLinear], members: Tensor | None = None, frozen: bool = False
) -> LayerParams:
    """(weight, bias) of every layer for ``members`` (None: all), detached with ``frozen``."""
    params = []
    for layer in layers:
        weight, bias = layer.weight, layer.bias
        if members is not None:
            weight, bias = weight[members], bias[members]
        if frozen:
            weight, bias = weight.detach(), bias.detach()
        params.append((weight, bias))
    return params


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
        """Running mean, [S] (zeros before two rows).

        Branch-free (``torch.where`` on the count, not ``if``), so that
        ``torch.compile`` traces it into the step's graph without a break.
        """
        return torch.where(self.count < 2, torch.zeros_like(self.total), self.total / self.count)

    @property
    def std(self) -> Tensor:
        """Running standard deviation (population), [S] (ones before two rows); branch-free."""
        variance = (self.total_sq / self.count - self.mean.square()).clamp_min(0.0)
        return torch.where(
            self.count < 2, torch.ones_like(self.total), torch.sqrt(variance + self.eps)
        )

    def affine(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """(mean, std) with the current statistics, e.g. to (de)standardise model targets."""
        return self.mean.to(dtype), self.std.to(dtype)

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
        """[B, S] -> (mean [B, A], std [B, A]) of the pre-squash Gaussian (float32 even
        under autocast)."""
        mean, raw_log_std = self.net(obs_normalised).float().chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            torch.tanh(raw_log_std) + 1.0
        )
        return mean, log_std.exp()


class GaussianValue(nn.Module):
    """p_psi(U | s, a) as K Gaussian heads N(mu_k(s, a), sigma_k(s, a)^2), sigma_k >= sigma_min.

    Each head is its own MLP (one batched pass, ``EnsembleLinear``). With a
    ``scale`` (center, width) -- the return range of ``ReturnRange.scale`` --
    the outputs live in its units: ``mu = center + width * raw`` and
    ``sigma = sigma_min + width * softplus(raw)``, and the last layer starts
    at zero (every head starts at mu = center). Without one, ``mu = raw`` and
    ``sigma = sigma_min + softplus(raw)``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hiddens: Sequence[int] = (256, 256),
        sigma_min: float = 0.1,
        num_heads: int = 1,
        layer_norm: bool = False,
        zero_last_layer: bool = False,
    ) -> None:
        super().__init__()
        if sigma_min <= 0:
            raise ValueError(f"sigma_min must be > 0, got {sigma_min}")
        widths = [obs_dim + action_dim, *hiddens, 2]
        self.layers = nn.ModuleList(
            EnsembleLinear(num_heads, i, o) for i, o in itertools.pairwise(widths)
        )
        if zero_last_layer:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)
        self.sigma_min = sigma_min
        self.num_heads = num_heads
        self.layer_norm = layer_norm

    def layer_params(self, heads: Tensor | None = None, frozen: bool = False) -> LayerParams:
        """(weight [K, in, out], bias [K, 1, out]) of every layer for ``heads`` (None: all).

        With ``frozen`` the tensors are detached: p_psi computed with them passes
        gradients to its inputs (the action a_t of Eq. 6) but never into psi.
        """
        return gather_layer_params(self.layers, heads, frozen)

    def forward(
        self,
        obs_normalised: Tensor,
        action: Tensor,
        scale: tuple[Tensor, Tensor] | None = None,
        heads: Tensor | None = None,
        params: LayerParams | None = None,
    ) -> tuple[Tensor, Tensor]:
        """([B, S], [B, A]) -> (mu [K, B], sigma [K, B]), one row per head (per index of
        ``heads`` when given: only those heads are evaluated; with ``params`` from
        ``layer_params``, the heads those hold)."""
        x = torch.cat([obs_normalised, action], dim=-1)
        if params is None:
            params = gather_layer_params(self.layers, heads)
        out = ensemble_mlp(x, params, Activation.RELU, self.layer_norm)
        raw_mu, raw_sigma = out.unbind(-1)
        if scale is None:
            return raw_mu, self.sigma_min + F.softplus(raw_sigma)
        center, width = scale
        return center + width * raw_mu, self.sigma_min + width * F.softplus(raw_sigma)


class HostCopy:
    """A scalar tensor's value as a Python number, read from its device again only when
    the tensor was replaced or written in place since (its autograd version counter moves
    with every in-place op, ``load_state_dict``'s copies included).

    A Learner reads its step counter and flags several times per update step; on a GPU
    every ``int()`` of a CUDA tensor waits for the kernels queued before it. Read through
    this, such a value costs one wait after a restore, not one per read.
    """

    def __init__(self) -> None:
        self._tensor: Tensor | None = None
        self._version = -1
        self._value: float = 0

    def read(self, tensor: Tensor) -> float:
        if tensor is not self._tensor or tensor._version != self._version:
            self._tensor, self._version, self._value = tensor, tensor._version, tensor.item()
        return self._value

    def wrote(self, tensor: Tensor, value: float) -> None:
        """Records that ``tensor`` holds ``value`` now (the caller has just written it)."""
        self._tensor, self._version, self._value = tensor, tensor._version, value


class ReturnRange(nn.Module):
    """The range [low, high] of discounted returns, from the range of per-step rewards.

    ``low = reward_low / (1 - gamma)`` and ``high = reward_high / (1 - gamma)``:
    the returns of a policy earning the low (high) reward forever. p_psi is
    read in its units (``scale``) and Eq. 4's target means are clipped to it
    (`UpdateSpec.value_bounds`). Unset until the first ``update`` (``initialised``
    is False); until then ``scale`` is (0, 1), the identity, and ``clip`` does nothing.

    With ``includes_zero`` (episodes can end) the range also spans 0, the value of a
    fallen (absorbing) state: survival's range alone clips the targets near a fall up.
    """

    def __init__(self, includes_zero: bool = False) -> None:
        super().__init__()
        self.includes_zero = includes_zero
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self._initialised_host = HostCopy()

    @property
    def is_set(self) -> bool:
        return bool(self._initialised_host.read(self.initialised))

    @torch.no_grad()
    def update(self, reward_low: Tensor, reward_high: Tensor, gamma: float, rate: float) -> None:
        """Move ``rate`` of the way toward the returns of these rewards (the whole way when unset)."""
        low = reward_low.to(self.low) / (1.0 - gamma) if gamma < 1 else reward_low.to(self.low)
        high = reward_high.to(self.high) / (1.0 - gamma) if gamma < 1 else reward_high.to(self.high)
        if self.includes_zero:
            low, high = low.clamp(max=0.0), high.clamp(min=0.0)
        if not self.is_set:
            self.low.copy_(low)
            self.high.copy_(high)
            self.initialised.fill_(True)
            self._initialised_host.wrote(self.initialised, True)
            return
        self.low.lerp_(low, rate)
        self.high.lerp_(high, rate)

    def scale(self) -> tuple[Tensor, Tensor]:
        """(center, width) = ((high + low) / 2, max((high - low) / 2, 1)); (0, 1) when unset.

        Branch-free (``torch.where`` on ``initialised``), like ``clip``, so that
        ``torch.compile`` traces both into the step's graph without a break.
        """
        center = torch.where(
            self.initialised, (self.high + self.low) / 2, torch.zeros_like(self.low)
        )
        width = torch.where(
            self.initialised,
            ((self.high - self.low) / 2).clamp_min(1.0),
            torch.ones_like(self.high),
        )
        return center, width

    def clip(self, returns: Tensor) -> Tensor:
        """``returns`` clipped to [low, high] (unchanged when unset); branch-free."""
        return torch.where(
            self.initialised, torch.minimum(torch.maximum(returns, self.low), self.high), returns
        )


class ModelStateBuffer(nn.Module):
    """A ring buffer of imagined states: the start states of Eq. 6 (distribution rollouts).

    Buffers ``states`` [C, S], ``size`` and ``cursor``, so it is checkpointed
    with the RLModule, in full: C x S float32 in ``module_state.pkl`` (2.2 GB at the
    default C = 53,760 and S = 10,000). Kept rather than rebuilt on restore: a
    resumed run then starts Eq. 6 from the same imagined states as an uninterrupted
    one. `DRIVEConfig.validate` counts it, per Learner, against the machine's memory
    and in a checkpoint's size. States are added in arrival order; beyond C the
    oldest are overwritten.
    """

    def __init__(self, obs_dim: int, capacity: int) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.register_buffer("states", torch.zeros(capacity, obs_dim))
        self.register_buffer("size", torch.zeros((), dtype=torch.int64))
        self.register_buffer("cursor", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def add(self, states: Tensor) -> None:
        """Adds [M, S] states (only the last C if M > C)."""
        states = states.detach()[-self.capacity :]
        count = states.shape[0]
        positions = (self.cursor + torch.arange(count, device=states.device)) % self.capacity
        self.states[positions] = states.to(self.states)
        self.cursor.copy_((self.cursor + count) % self.capacity)
        self.size.copy_(torch.clamp(self.size + count, max=self.capacity))

    def sample(self, count: int) -> Tensor:
        """[count, S] states drawn uniformly with replacement from those held.

        Tensor operations only: ``size`` is never read on the host, so a compiled update
        step traces through without a graph break (and a GPU without a sync). An empty
        buffer gives zeros; `update.start_states` then uses real states instead. The
        index is a 62-bit random integer modulo ``size`` (bias below 2^-40).
        """
        draws = torch.randint(2**62, (count,), device=self.states.device)
        return self.states[draws % self.size.clamp(min=1)]


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
        layer_norm: bool = False,
        activation: Activation = Activation.RELU,
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
        self.layer_norm = layer_norm
        self.activation = Activation(activation)
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
        return gather_layer_params([*self.hidden_layers, self.head], members, frozen)

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
        out = ensemble_mlp(x, params, self.activation, self.layer_norm)
        mean, raw_log_std, term_logit = out.split([self.out_dim, self.out_dim, 1], dim=-1)
        log_std = self.log_std_max - F.softplus(self.log_std_max - raw_log_std)
        log_std = self.log_std_min + F.softplus(log_std - self.log_std_min)
        return mean, log_std, term_logit.squeeze(-1)

    @torch.no_grad()
    def holdout_errors(
        self,
        obs_normalised: Tensor,
        action: Tensor,
        reward: Tensor,
        next_obs: Tensor,
        obs: Tensor,
        target_affine: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Per-member mean squared error of the predicted mean on held-out rows, in raw units: [E].

        ``target_affine`` (mean, std) maps standardised predictions back to raw
        (s' - s, r) when the model predicts standardised targets.
        """
        mean, _, _ = self(obs_normalised, action)
        if target_affine is not None:
            mean = target_affine[0] + target_affine[1] * mean
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
    (psi_bar), ``obs_normalizer``, ``target_normalizer``, ``return_range`` and
    ``model_states`` carry no gradient.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        spec: NetworkSpec | None = None,
        model_state_capacity: int = 0,
    ) -> None:
        """Builds every network for observations of dim S = ``obs_dim`` and A = ``action_dim``.

        Args:
            obs_dim: S.
            action_dim: A.
            spec: sizes and options (default: ``NetworkSpec()``).
            model_state_capacity: states of the model-state buffer
                (`UpdateSpec.model_state_capacity`); 0: no buffer.
        """
        super().__init__()
        spec = NetworkSpec() if spec is None else spec
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.obs_normalizer = RunningNormalizer(obs_dim)
        # f_hat's targets (s' - s, r), standardised when model_normalize_targets.
        self.target_normalizer = (
            RunningNormalizer(obs_dim + 1) if spec.model_normalize_targets else None
        )
        self.model = DynamicsEnsemble(
            obs_dim,
            action_dim,
            num_members=spec.ensemble_size,
            num_elites=spec.num_elites,
            hiddens=spec.model_hiddens,
            learn_termination=spec.learn_termination,
            layer_norm=spec.model_layer_norm,
            activation=spec.model_activation,
        )
        # The task's known rule (next_obs -> terminated), applied in imagination; None
        # when the rule is not known (the head decides, or nothing terminates).
        self.termination_rule = spec.known_rule
        self.posterior = TanhGaussianPolicy(obs_dim, action_dim, spec.policy_hiddens)
        self.prior = TanhGaussianPolicy(obs_dim, action_dim, spec.policy_hiddens)
        value_options = {
            "hiddens": spec.value_hiddens,
            "sigma_min": spec.sigma_min,
            "num_heads": spec.value_heads,
            "layer_norm": spec.value_layer_norm,
            "zero_last_layer": spec.value_scaled,
        }
        self.value = GaussianValue(obs_dim, action_dim, **value_options)
        self.target_value = GaussianValue(obs_dim, action_dim, **value_options)
        self.target_value.load_state_dict(self.value.state_dict())
        self.target_value.requires_grad_(False)
        self.value_scaled = spec.value_scaled
        self.return_range = ReturnRange(
            includes_zero=spec.return_range_absorbing
            and (spec.learn_termination or spec.known_rule is not None)
        )
        self.model_states = (
            ModelStateBuffer(obs_dim, model_state_capacity) if model_state_capacity else None
        )
        target_entropy = (
            spec.target_entropy_per_dim * action_dim
            if spec.target_entropy is None
            else spec.target_entropy
        )
        self.entropy_floor = (
            EntropyFloor(target_entropy, spec.initial_entropy_weight)
            if spec.entropy_floor
            else None
        )

    def value_scale(self) -> tuple[Tensor, Tensor] | None:
        """The (center, width) p_psi is read in (``ReturnRange.scale``); None when not scaled."""
        return self.return_range.scale() if self.value_scaled else None

    def target_affine(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor] | None:
        """(mean, std) of f_hat's targets when it predicts them standardised, else None."""
        if self.target_normalizer is None:
            return None
        return self.target_normalizer.affine(dtype)

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
        """psi_bar <- tau * psi + (1 - tau) * psi_bar (one ``_foreach_lerp_`` over every
        parameter: one kernel per device and dtype, not one per parameter)."""
        targets = list(self.target_value.parameters())
        torch._foreach_lerp_(targets, list(self.value.parameters()), tau)
