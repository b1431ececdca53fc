"""Closed forms for the Gaussians DRIVE works with.

Pure functions of tensors: every KL, cross-entropy and moment that the losses
need, and the tanh-squashed Gaussian used by pi_theta and q_phi. Nothing here
holds state or knows about networks.

Shapes: ``B`` batch, ``N`` samples, ``A`` action dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl(mean_p: Tensor, std_p: Tensor, mean_q: Tensor, std_q: Tensor) -> Tensor:
    """Elementwise KL(N(mean_p, std_p^2) || N(mean_q, std_q^2)).

    ``log(std_q / std_p) + (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2``.
    """
    var_p = std_p.square()
    var_q = std_q.square()
    return (
        torch.log(std_q)
        - torch.log(std_p)
        + (var_p + (mean_p - mean_q).square()) / (2.0 * var_q)
        - 0.5
    )


def diag_gaussian_kl(mean_p: Tensor, std_p: Tensor, mean_q: Tensor, std_q: Tensor) -> Tensor:
    """KL between two diagonal Gaussians over the last axis: [..., A] -> [...]."""
    return gaussian_kl(mean_p, std_p, mean_q, std_q).sum(-1)


def gaussian_cross_entropy(m: Tensor, v: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """E_{U ~ N(m, v)}[-log N(U; mu, sigma^2)], elementwise.

    ``log sigma + 0.5 log 2 pi + ((m - mu)^2 + v) / (2 sigma^2)``. Exact for any
    ``v >= 0``, including ``v = 0`` (a point target).
    """
    return torch.log(sigma) + 0.5 * LOG_2PI + ((m - mu).square() + v) / (2.0 * sigma.square())


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Elementwise log N(x; mean, std^2)."""
    return -0.5 * ((x - mean) / std).square() - torch.log(std) - 0.5 * LOG_2PI


def moment_match(m: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Moment-matched Gaussian of the equal-weight mixture (1/N) sum_i N(m_i, v_i).

    Args:
        m: Component means, [N, B].
        v: Component variances, [N, B].

    Returns:
        (mean, variance), each [B]: ``mean_i m_i`` and ``mean_i v_i + var_i m_i``
        (population variance). With N = 1 this is the single component.
    """
    mean = m.mean(0)
    variance = v.mean(0) + (m - mean).square().mean(0)
    return mean, variance


def tanh_log_det_jacobian(pre_tanh: Tensor) -> Tensor:
    """log |d tanh(u) / du| = log(1 - tanh(u)^2), in the stable form 2 (log 2 - u - softplus(-2u))."""
    return 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))


def tanh_gaussian_log_prob(pre_tanh: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log density of a = tanh(u), u ~ N(mean, std^2) (diagonal), at a = tanh(pre_tanh): [..., A] -> [...]."""
    return (gaussian_log_prob(pre_tanh, mean, std) - tanh_log_det_jacobian(pre_tanh)).sum(-1)


def tanh_gaussian_action(mean: Tensor, std: Tensor) -> Tensor:
    """Reparameterised sample tanh(mean + std * eps) without its log-probability (rollouts)."""
    return torch.tanh(torch.addcmul(mean, std, torch.randn_like(mean)))


def tanh_gaussian_rsample(mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
    """Reparameterised sample of a tanh-squashed diagonal Gaussian.

    Returns:
        (action in (-1, 1), log-probability of that action with the tanh correction).
    """
    pre_tanh = mean + std * torch.randn_like(mean)
    return torch.tanh(pre_tanh), tanh_gaussian_log_prob(pre_tanh, mean, std)


def min2_pair(num_heads: int, device: torch.device) -> Tensor | None:
    """The two of ``num_heads`` heads that "min2" reads, drawn at random (None: at most two).

    ``aggregate_heads`` draws them itself; a caller that draws them first can
    evaluate only these two heads and aggregate those, with the same draw.
    """
    if num_heads <= 2:
        return None
    return torch.randperm(num_heads, device=device)[:2]


def aggregate_heads(mu: Tensor, sigma: Tensor, how: str) -> tuple[Tensor, Tensor]:
    """The one Gaussian that K value heads N(mu_k, sigma_k^2) stand for: [K, ...] -> [...].

    Args:
        mu, sigma: [K, ...] the heads' means and standard deviations.
        how: "mean": the moment-matched equal-weight mixture of the heads
            (mean ``mean_k mu_k``, variance ``mean_k sigma_k^2 + var_k mu_k``,
            so the heads' disagreement widens the law); "min2": of two heads
            drawn at random (one draw for the whole batch, as REDQ), per
            element the one with the lower mean, with its own sigma. With
            K = 1 both are that head.

    Returns:
        (mu [...], sigma [...]).
    """
    if how == "mean":
        mean, variance = moment_match(mu, sigma.square())
        return mean, variance.sqrt()
    if how == "min2":
        pair = min2_pair(mu.shape[0], mu.device)
        if pair is not None:
            mu, sigma = mu[pair], sigma[pair]
        lower = mu.argmin(0, keepdim=True)
        return mu.gather(0, lower).squeeze(0), sigma.gather(0, lower).squeeze(0)
    raise ValueError(f"unknown aggregate {how!r}: use 'mean' or 'min2'")
