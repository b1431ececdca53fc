"""Replay: numpy ring-buffer storage and the Ray actor that wraps it.

`ReplayStorage` (and the split helpers) live in `storage`, which imports only
numpy. The actor symbols (`ReplayActor`, `ReplayHandle`, `create_replay_actor`,
`get_replay_actor`) live in `actor`, which imports Ray; they are resolved
lazily on first attribute access (PEP 562), so `import drive_rllib.replay`
stays Ray-free until one of them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from drive_rllib.replay.storage import FIELDS, SPLITS, ReplayStorage

if TYPE_CHECKING:
    from drive_rllib.replay.actor import (
        ReplayActor,
        ReplayHandle,
        ReplayUnavailableError,
        create_replay_actor,
        get_replay_actor,
    )

_ACTOR_SYMBOLS = (
    "ReplayActor",
    "ReplayHandle",
    "ReplayUnavailableError",
    "create_replay_actor",
    "get_replay_actor",
)

__all__ = [
    "FIELDS",
    "SPLITS",
    "ReplayActor",
    "ReplayHandle",
    "ReplayStorage",
    "ReplayUnavailableError",
    "create_replay_actor",
    "get_replay_actor",
]


def __getattr__(name: str) -> Any:
    if name in _ACTOR_SYMBOLS:
        return getattr(importlib.import_module("drive_rllib.replay.actor"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
