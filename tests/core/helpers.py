"""Small builders shared by the core tests."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from drive_rllib.core import DRIVENetworks, NetworkSpec, UpdateSpec


def tiny_nets(obs_dim: int = 3, action_dim: int = 2, **kwargs) -> DRIVENetworks:
    defaults = {
        "policy_hiddens": (16, 16),
        "value_hiddens": (16, 16),
        "model_hiddens": (16, 16),
        "ensemble_size": 4,
        "num_elites": 3,
    }
    defaults.update(kwargs)
    return DRIVENetworks(obs_dim, action_dim, NetworkSpec(**defaults))


def small_spec(**settings) -> UpdateSpec:
    """A short update: H 3, N 2, gamma 0.9 (alpha 1), with ``settings`` on top."""
    return UpdateSpec(**{"horizon": 3, "num_samples": 2, "gamma": 0.9, **settings})


def random_batch(
    batch_size: int = 8,
    obs_dim: int = 3,
    action_dim: int = 2,
    terminated: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.randn(batch_size, obs_dim),
        "action": torch.rand(batch_size, action_dim) * 2 - 1,
        "reward": torch.randn(batch_size),
        "next_obs": torch.randn(batch_size, obs_dim),
        "terminated": torch.zeros(batch_size) if terminated is None else terminated,
    }


def t(*values: float) -> torch.Tensor:
    """A float64 tensor of the given values (hand-worked cases)."""
    return torch.tensor(values, dtype=torch.float64)


class CountHostReads(TorchFunctionMode):
    """Counts what reads a tensor's value back to Python (on a GPU: a wait for the device)."""

    READS = frozenset({"item", "tolist", "numpy", "__bool__", "__int__", "__float__"})

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.READS:
            self.reads += 1
        return func(*args, **(kwargs or {}))
