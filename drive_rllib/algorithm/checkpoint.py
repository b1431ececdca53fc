"""A DRIVE checkpoint: RLlib's folder, ``replay.npz`` and ``drive_checkpoint.json``, written atomically.

RLlib's checkpoint holds the Learner, RLModule, optimizers, connectors and
metrics, but no replay. `save_replay` writes the replay actor's rows next to
them and `restore_replay` loads them back. When the checkpoint folder is
local to the actor's node the actor reads and writes the file itself, so the
rows never pass through the driver; otherwise (another node, or a URI such as
``s3://``) they travel through the driver once.

Atomicity: on a local filesystem the whole checkpoint is written into a hidden
temporary sibling (``.<name>.drive-tmp-<id>``), every file and folder is
fsynced, and the sibling is then renamed into place (swapped atomically with
an existing folder of that name on Linux). A crash leaves the previous
checkpoint intact and no partial folder under the checkpoint's name; the next
save removes the stale siblings. ``drive_checkpoint.json`` (`MARKER_FILE`) is
written last: it says the folder is complete (on filesystems without rename,
e.g. ``s3://``, it is the only sign) and records the iteration and counters the
checkpoint continues from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import pathlib
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow.fs
import ray

from drive_rllib.replay.actor import ReplayHandle
from drive_rllib.replay.storage import ReplayStorage, fsync_directory

logger = logging.getLogger(__name__)

#: The replay contents inside a checkpoint directory.
REPLAY_FILE = "replay.npz"
#: Written last into a DRIVE checkpoint: the folder is complete; its iteration and counters.
MARKER_FILE = "drive_checkpoint.json"
#: Set to "1" in a run's processes (``rllib train file ... --resume --no-replay``):
#: Tune's restore then loads the weights and optimizers only, with an empty replay,
#: as ``restore_from_path(..., restore_replay=False)`` does. Read at restore time,
#: so it holds for the one command that sets it.
NO_REPLAY_ENV = "DRIVE_RLLIB_NO_REPLAY"
#: Parts of the names of the hidden siblings an atomic save writes and removes.
_TEMPORARY_PART = ".drive-tmp-"
_OLD_PART = ".drive-old-"
_RENAME_EXCHANGE = 2  # renameat2 flag (Linux >= 3.15): swap two paths atomically
_AT_FDCWD = -100


class IncompleteCheckpointError(ValueError):
    """A checkpoint folder lacks files a DRIVE checkpoint must hold (the message says which)."""


def filesystem_and_path(path: str | pathlib.Path) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem of a path or URI, and the path within it (local paths made absolute)."""
    path = str(path)
    if "://" not in path:
        path = os.path.abspath(path)
    return pyarrow.fs.FileSystem.from_uri(path)


# -- atomic folders ---------------------------------------------------------------------


@contextmanager
def atomic_directory(target: str) -> Iterator[str]:
    """Yields an empty hidden sibling of ``target``; on success it becomes ``target``.

    Everything written into the yielded folder is fsynced, then the folder is
    renamed to ``target`` (an existing ``target`` is swapped out atomically on
    Linux, and removed). On an exception the sibling is removed and ``target``
    is untouched; after a crash the sibling stays hidden and the next
    `atomic_directory` call in that parent removes it.
    """
    target = os.path.abspath(target)
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(parent)
    temporary = os.path.join(parent, f".{name}{_TEMPORARY_PART}{uuid.uuid4().hex[:12]}")
    os.makedirs(temporary)
    try:
        yield temporary
        fsync_tree(temporary)
        _replace_directory(temporary, target)
    finally:
        if os.path.exists(temporary):
            shutil.rmtree(temporary, ignore_errors=True)


def remove_stale_temporaries(parent: str) -> list[str]:
    """Removes what crashed atomic saves left in ``parent``; returns the removed names."""
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        if name.startswith(".") and (_TEMPORARY_PART in name or _OLD_PART in name):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed.append(name)
    if removed:
        logger.info("Removed %d stale temporary checkpoint folder(s) in %s.", len(removed), parent)
    return removed


def fsync_tree(root: str) -> None:
    """fsyncs every file and folder below ``root`` (and ``root`` itself)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            with open(os.path.join(folder, name), "rb") as file:
                os.fsync(file.fileno())
        fsync_directory(folder)


def _replace_directory(source: str, target: str) -> None:
    parent = os.path.dirname(target)
    if not os.path.exists(target):
        os.rename(source, target)
    elif not _exchange(source, target):
        # No atomic swap here: move the old folder aside first. A crash between the two
        # renames leaves the old folder hidden (`.<name>.drive-old-<id>`), never half of one.
        old = os.path.join(parent, f".{os.path.basename(target)}{_OLD_PART}{uuid.uuid4().hex[:12]}")
        os.rename(target, old)
        os.rename(source, target)
        shutil.rmtree(old, ignore_errors=True)
    # After an exchange `source` holds the old folder; the caller removes it.
    fsync_directory(parent)


def _exchange(first: str, second: str) -> bool:
    """Swaps two paths atomically (Linux renameat2); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    return result == 0


# -- the marker ---------------------------------------------------------------------------


def write_marker(
    checkpoint: str, info: dict[str, Any], filesystem: pyarrow.fs.FileSystem | None = None
) -> None:
    """Writes ``drive_checkpoint.json`` (the last file of a checkpoint) with ``info``."""
    text = json.dumps(info, indent=1, sort_keys=True)
    target = os.path.join(checkpoint, MARKER_FILE)
    if _is_local(filesystem):
        with open(target, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        return
    with filesystem.open_output_stream(target) as stream:
        stream.write(text.encode())


def read_marker(
    checkpoint: str, filesystem: pyarrow.fs.FileSystem | None = None
) -> dict[str, Any] | None:
    """The ``drive_checkpoint.json`` of a checkpoint folder, or None where it has none."""
    target = os.path.join(checkpoint, MARKER_FILE)
    try:
        if _is_local(filesystem):
            with open(target) as file:
                return json.load(file)
        with filesystem.open_input_stream(target) as stream:
            return json.loads(stream.read().decode())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None


#: Files RLlib needs to load a DRIVE checkpoint (besides the RLModule's weights, found by
#: `_weights_files`): checked where a marker predates the file list.
RLLIB_FILES = ("rllib_checkpoint.json", "algorithm_state.pkl", "class_and_ctor_args.pkl")


def contents(checkpoint: str) -> dict[str, Any]:
    """What the marker records of a finished local checkpoint folder, so that a damaged or
    truncated copy is caught before it is loaded: every file with its size in bytes
    (``files``) and the rows ``replay.npz`` holds (``replay_rows``)."""
    files = {}
    for folder, _, names in os.walk(checkpoint):
        for name in names:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, checkpoint)
            if relative != MARKER_FILE:
                files[relative] = os.path.getsize(path)
    info: dict[str, Any] = {"files": dict(sorted(files.items()))}
    if REPLAY_FILE in files:
        with np.load(os.path.join(checkpoint, REPLAY_FILE), allow_pickle=False) as data:
            info["replay_rows"] = int(data["size"])
    return info


def checkpoint_problem(checkpoint: str, need_replay: bool = True) -> str | None:
    """Why a local checkpoint folder cannot be loaded (one phrase), or None if it can.

    Checks the marker, every file it lists (present, with the recorded size), and
    ``replay.npz`` (a readable archive whose checksums hold, with the recorded row
    count). ``need_replay=False`` checks only what loading the weights needs.
    """
    marker = read_marker(checkpoint)
    if marker is None:
        return f"no readable {MARKER_FILE} (its save did not finish)"
    files = marker.get("files")
    if files is None:  # a marker written before it listed the files
        files = {name: None for name in (*RLLIB_FILES, REPLAY_FILE)}
        files.update({name: None for name in _weights_files(checkpoint)} or {_WEIGHTS: None})
    for name, size in files.items():
        if name == REPLAY_FILE and not need_replay:
            continue
        path = os.path.join(checkpoint, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        actual = os.path.getsize(path)
        if size is not None and actual != size:
            return f"{name} has {actual} bytes where the save wrote {size} (truncated or replaced)"
    if need_replay:
        return replay_problem(os.path.join(checkpoint, REPLAY_FILE), marker.get("replay_rows"))
    return None


_WEIGHTS = "learner_group/learner/rl_module/<module>/module_state.pkl"


def _weights_files(checkpoint: str) -> list[str]:
    folder = os.path.join(checkpoint, "learner_group", "learner", "rl_module")
    try:
        modules = sorted(os.listdir(folder))
    except OSError:
        return []
    return [
        os.path.relpath(os.path.join(folder, module, "module_state.pkl"), checkpoint)
        for module in modules
        if os.path.isdir(os.path.join(folder, module))
    ]


def replay_problem(file: str, rows: int | None = None) -> str | None:
    """Why a ``replay.npz`` cannot be loaded (one phrase), or None if it can."""
    import zipfile

    try:
        with zipfile.ZipFile(file) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            return f"{REPLAY_FILE} is damaged ({damaged} fails its checksum)"
        with np.load(file, allow_pickle=False) as data:
            size = int(data["size"])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError) as error:
        return f"{REPLAY_FILE} cannot be read ({type(error).__name__}: {error})"
    if rows is not None and size != rows:
        return f"{REPLAY_FILE} holds {size} rows where the save wrote {rows}"
    return None


def newest_loadable_checkpoint(
    trial_dir: str, need_replay: bool = True
) -> tuple[tuple[str, dict[str, Any]] | None, list[tuple[str, str]]]:
    """The newest checkpoint of ``trial_dir`` that `checkpoint_problem` passes, and the
    newer ones it skipped. With ``need_replay`` False a damaged or missing
    ``replay.npz`` does not make a checkpoint unloadable.

    Returns ((path, marker) or None, [(folder name, why it was skipped), ...], newest
    first). Folders named ``checkpoint_*`` count; hidden temporary folders never do.
    """
    try:
        names = sorted(os.listdir(trial_dir))
    except OSError:
        return None, []
    candidates = []
    for name in names:
        path = os.path.join(trial_dir, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        marker = read_marker(path)
        if marker is None and not name.startswith("checkpoint_"):
            continue
        # A folder without a marker is a save that did not finish: the newest, unloadable.
        iteration = float("inf") if marker is None else int(marker.get("iteration", 0))
        candidates.append((iteration, name, path, marker))
    skipped = []
    for _, name, path, marker in sorted(candidates, reverse=True):
        problem = checkpoint_problem(path, need_replay=need_replay)
        if problem is None:
            return (path, marker), skipped
        skipped.append((name, problem))
    return None, skipped


def newest_complete_checkpoint(trial_dir: str) -> tuple[str, dict[str, Any]] | None:
    """The newest loadable checkpoint folder in ``trial_dir`` (see
    `newest_loadable_checkpoint`): (path, marker), or None."""
    return newest_loadable_checkpoint(trial_dir)[0]


def check_complete(
    checkpoint: str, filesystem: pyarrow.fs.FileSystem, restore_replay: bool = True
) -> dict[str, Any] | None:
    """Checks a DRIVE checkpoint before loading it; returns its marker (None: an older one).

    Raises:
        IncompleteCheckpointError: no ``replay.npz`` (unless ``restore_replay`` is
            False), a ``replay.npz`` without the marker that is written last, or (on a
            local filesystem) a file the marker lists missing or damaged.
    """
    marker = read_marker(checkpoint, filesystem)
    has_replay = filesystem.get_file_info(os.path.join(checkpoint, REPLAY_FILE)).type != (
        pyarrow.fs.FileType.NotFound
    )
    if restore_replay and not has_replay:
        raise IncompleteCheckpointError(
            f"Checkpoint {checkpoint} holds no {REPLAY_FILE}, so loading it would continue "
            "with an empty replay. Use a complete checkpoint (its folder has "
            f"{REPLAY_FILE} and {MARKER_FILE}), or load the weights and start with an "
            "empty replay on purpose: `--no-replay` on the command line, "
            "restore_replay=False to restore_from_path / Algorithm.from_checkpoint."
        )
    if marker is not None and _is_local(filesystem):
        problem = checkpoint_problem(checkpoint, need_replay=restore_replay)
        if problem is not None:
            advice = (
                " Load the weights alone with `--no-replay` (restore_replay=False)."
                if restore_replay and checkpoint_problem(checkpoint, need_replay=False) is None
                else ""
            )
            raise IncompleteCheckpointError(f"Checkpoint {checkpoint}: {problem}.{advice}")
    return marker


# -- the replay file ----------------------------------------------------------------------


def save_replay(
    replay: ReplayHandle, checkpoint: str, filesystem: pyarrow.fs.FileSystem | None
) -> None:
    """Writes the replay actor's contents as ``replay.npz`` inside ``checkpoint``."""
    target = os.path.join(checkpoint, REPLAY_FILE)
    if _is_local(filesystem) and _on_this_node(replay):
        # The actor writes the file itself: the rows never pass through here.
        replay.call("save", target)
        return
    replay_state = replay.call("get_state")
    with tempfile.TemporaryDirectory() as directory:
        storage = _storage_for(replay_state)
        storage.set_state(replay_state)
        written = storage.save(os.path.join(directory, REPLAY_FILE))
        if _is_local(filesystem):
            shutil.copyfile(written, target)
        else:
            pyarrow.fs.copy_files(written, target, destination_filesystem=filesystem)


def restore_replay(
    replay: ReplayHandle, checkpoint: str, filesystem: pyarrow.fs.FileSystem
) -> None:
    """Loads ``replay.npz`` of ``checkpoint`` into the replay actor (`check_complete` first)."""
    source = os.path.join(checkpoint, REPLAY_FILE)
    if _is_local(filesystem) and _on_this_node(replay):
        replay.call("load", source)
        return
    with tempfile.TemporaryDirectory() as directory:
        local = os.path.join(directory, REPLAY_FILE)
        pyarrow.fs.copy_files(source, local, source_filesystem=filesystem)
        replay_state = _load_state(local)
    replay.call("set_state", replay_state)


def _on_this_node(replay: ReplayHandle) -> bool:
    node_of_replay = replay.call(
        "__ray_call__", lambda _actor: ray.get_runtime_context().get_node_id()
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
