"""drive-rllib: DRIVE (distributional model-based RL via variational inference) on RLlib.

``from drive_rllib import DRIVEConfig, register`` works; the names are imported on
first use, so ``import drive_rllib.core`` still never imports Ray.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("drive-rllib")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

#: Public names -> the module that defines them.
_EXPORTS = {
    "DRIVE": "drive_rllib.algorithm.drive",
    "DRIVEConfig": "drive_rllib.algorithm.config",
    "register": "drive_rllib.algorithm.drive",
    "DRIVETorchRLModule": "drive_rllib.algorithm.rl_module",
    "evaluate_checkpoint": "drive_rllib.algorithm.evaluation",
    "hide_ray_notices": "drive_rllib.ray_notices",
}

__all__ = [
    "DRIVE",
    "DRIVEConfig",
    "DRIVETorchRLModule",
    "__version__",
    "evaluate_checkpoint",
    "hide_ray_notices",
    "register",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'drive_rllib' has no attribute {name!r}")
