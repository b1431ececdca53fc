"""The replay contents of a DRIVE checkpoint: ``replay.npz`` inside RLlib's checkpoint folder.

RLlib's checkpoint holds the Learner, RLModule, optimizers, connectors and
metrics, but no replay. `save_replay` writes the replay actor's rows next to
them and `restore_replay` loads them back. When the checkpoint folder is
local to the actor's node the actor reads and writes the file itself, so the
rows never pass through the driver; otherwise (another node, or a URI such as
``s3://``) they travel through the driver once.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np
import pyarrow.fs
import ray

from drive_rllib.replay.storage import ReplayStorage

logger = logging.getLogger(__name__)

#: The replay contents inside a checkpoint directory.
REPLAY_FILE = "replay.npz"


def filesystem_and_path(path: str | pathlib.Path) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem of a path or URI, and the path within it (local paths made absolute)."""
    path = str(path)
    if "://" not in path:
        path = os.path.abspath(path)
    return pyarrow.fs.FileSystem.from_uri(path)


def save_replay(
    replay: ray.actor.ActorHandle, checkpoint: str, filesystem: pyarrow.fs.FileSystem | None
) -> None:
    """Writes the replay actor's contents as ``replay.npz`` inside ``checkpoint``."""
    target = os.path.join(checkpoint, REPLAY_FILE)
    if _is_local(filesystem) and _on_this_node(replay):
        # The actor writes the file itself: the rows never pass through here.
        ray.get(replay.save.remote(target))
        return
    replay_state = ray.get(replay.get_state.remote())
    with tempfile.TemporaryDirectory() as directory:
        storage = _storage_for(replay_state)
        storage.set_state(replay_state)
        written = storage.save(os.path.join(directory, REPLAY_FILE))
        if _is_local(filesystem):
            shutil.copyfile(written, target)
        else:
            pyarrow.fs.copy_files(written, target, destination_filesystem=filesystem)


def restore_replay(
    replay: ray.actor.ActorHandle, checkpoint: str, filesystem: pyarrow.fs.FileSystem
) -> None:
    """Loads ``replay.npz`` of ``checkpoint`` into the replay actor (a warning if absent)."""
    source = os.path.join(checkpoint, REPLAY_FILE)
    if filesystem.get_file_info(source).type == pyarrow.fs.FileType.NotFound:
        logger.warning(
            "Checkpoint %s holds no %s; the replay actor stays empty.", checkpoint, REPLAY_FILE
        )
        return
    if _is_local(filesystem) and _on_this_node(replay):
        ray.get(replay.load.remote(source))
        return
    with tempfile.TemporaryDirectory() as directory:
        local = os.path.join(directory, REPLAY_FILE)
        pyarrow.fs.copy_files(source, local, source_filesystem=filesystem)
        replay_state = _load_state(local)
    ray.get(replay.set_state.remote(replay_state))


def _on_this_node(replay: ray.actor.ActorHandle) -> bool:
    node_of_replay = ray.get(
        replay.__ray_call__.remote(lambda _actor: ray.get_runtime_context().get_node_id())
    )
    return node_of_replay == ray.get_runtime_context().get_node_id()


def _is_local(filesystem: pyarrow.fs.FileSystem | None) -> bool:
    return filesystem is None or isinstance(filesystem, pyarrow.fs.LocalFileSystem)


def _storage_for(replay_state: dict[str, Any]) -> ReplayStorage:
    return ReplayStorage(
        int(replay_state["capacity"]),
        int(replay_state["obs_dim"]),
        int(replay_state["action_dim"]),
        holdout_every=int(replay_state["holdout_every"]),
    )


def _load_state(file: str) -> dict[str, Any]:
    """The replay state in a file written by `ReplayStorage.save`, read in this process."""
    with np.load(file, allow_pickle=False) as data:
        header = {
            name: int(data[name]) for name in ("capacity", "obs_dim", "action_dim", "holdout_every")
        }
    storage = _storage_for(header)
    storage.load(file)
    return storage.get_state()
