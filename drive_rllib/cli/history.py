"""A trial's history across resumes, and one `rllib train` per experiment folder.

``progress.csv``: Tune 2.60's CSV logger, on restore, appends to the file without a new
header, with the columns of the resumed run's first result, which differ from the old
header's (43 columns, then rows of 112: pandas fails, readers by name get wrong values).
The resumed rows carry no names, so the table is rebuilt from ``result.json``, written
beside it with every result in full: one header, the union of the columns by name.

The lock: a file in the experiment folder holding ``<pid> <host>``, created atomically
(``O_EXCL``) before Ray starts and removed at exit; a second run into the same folder
refuses while the first lives; a lock left by a dead process (on this host) is taken over.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from drive_rllib.cli.experiments import CLIError

PROGRESS_FILE = "progress.csv"
RESULT_FILE = "result.json"
#: The lock file in an experiment folder while an `rllib train` writes into it.
LOCK_FILE = ".rllib_train.lock"


def flatten(result: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to ``a/b`` keys, as Tune's CSV logger does."""
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def progress_table(results: list[dict[str, Any]]) -> str:
    """``progress.csv``'s text for these results (without ``config``): one header, the
    union of their columns in first-seen order, each row's values by name ('' if absent)."""
    rows = [flatten({k: v for k, v in result.items() if k != "config"}) for result in results]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def rebuild_progress(trial_dir: str) -> bool:
    """Rewrites the trial's ``progress.csv`` from its ``result.json`` as one table
    (`progress_table`); whether it did (not without results)."""
    try:
        with open(os.path.join(trial_dir, RESULT_FILE)) as file:
            results = [json.loads(line) for line in file if line.strip()]
    except (OSError, json.JSONDecodeError):
        return False
    if not results:
        return False
    replace_text(os.path.join(trial_dir, PROGRESS_FILE), progress_table(results))
    return True


def rebuild_progress_files(folder: str) -> None:
    """`rebuild_progress` for every trial folder in an experiment folder."""
    if "://" in folder or not os.path.isdir(folder):
        return
    for name in sorted(os.listdir(folder)):
        if os.path.isfile(os.path.join(folder, name, "params.json")):
            rebuild_progress(os.path.join(folder, name))


def replace_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (a temporary file, fsync, rename)."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _holder(path: str) -> tuple[int, str] | None:
    """(pid, host) written in a lock file; None if it is unreadable or malformed."""
    try:
        with open(path) as file:
            pid, host = file.read().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def acquire_lock(folder: str) -> str | None:
    """Takes the experiment folder's lock for this process.

    Returns:
        A note when a dead process's lock was taken over, else None.

    Raises:
        CLIError: another live `rllib train` holds it (one line: its PID and what to do).
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    mine = f"{os.getpid()} {socket.gethostname()}\n"
    note = None
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None:
                pid, host = holder
                if host != socket.gethostname() or _alive(pid):
                    raise CLIError(
                        f"another rllib train (PID {pid} on {host}) is writing into {folder} "
                        f"(lock {path}): wait for it to end, or give another --storage-path "
                        "or experiment name"
                    ) from None
            note = (
                f"took over the lock {path} of PID {holder[0]}, which is no longer running"
                if holder is not None
                else f"replaced the unreadable lock {path}"
            )
            os.remove(path)
            continue
        with os.fdopen(descriptor, "w") as file:
            file.write(mine)
        return note
    raise CLIError(f"could not take the lock {path}: another rllib train took it first")


def release_lock(folder: str) -> None:
    """Removes the experiment folder's lock if this process holds it."""
    path = os.path.join(folder, LOCK_FILE)
    if _holder(path) == (os.getpid(), socket.gethostname()):
        os.remove(path)


@contextmanager
def experiment_locks(folders: list[str]) -> Iterator[list[str]]:
    """Holds the lock of each local experiment folder (URIs are skipped) for the block;
    yields the notes of locks taken over."""
    held: list[str] = []
    notes: list[str] = []
    try:
        for folder in dict.fromkeys(folders):
            if "://" in folder:
                continue
            note = acquire_lock(folder)
            held.append(folder)
            if note:
                notes.append(note)
        yield notes
    finally:
        for folder in held:
            release_lock(folder)
