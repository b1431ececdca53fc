"""Atomic checkpoint folders and the checkpoint marker, with a writer SIGKILLed mid-write.

Ray-free: `atomic_directory` is what `DRIVE.save_to_path` writes through; the
end-to-end kill of a real `save_to_path` is in test_checkpoint_crash.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.fs
import pytest

from drive_rllib.algorithm.checkpoint import (
    MARKER_FILE,
    REPLAY_FILE,
    IncompleteCheckpointError,
    atomic_directory,
    check_complete,
    checkpoint_problem,
    contents,
    newest_complete_checkpoint,
    newest_loadable_checkpoint,
    read_marker,
    write_marker,
)
from drive_rllib.cli.train import trim_history

REPO = pathlib.Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import importlib.util, os, sys, time
    # The module alone, not drive_rllib.algorithm (whose __init__ imports RLlib: seconds).
    spec = importlib.util.spec_from_file_location("checkpoint", sys.argv[4])
    checkpoint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checkpoint)
    atomic_directory, write_marker = checkpoint.atomic_directory, checkpoint.write_marker
    target, iteration, hang = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "hang"
    with atomic_directory(target) as folder:
        with open(os.path.join(folder, "algorithm_state.pkl"), "w") as file:
            file.write(f"state of iteration {iteration}")
        if hang:
            print("WRITING", flush=True)
            time.sleep(600)
        with open(os.path.join(folder, "replay.npz"), "w") as file:
            file.write("rows")
        write_marker(folder, {"iteration": iteration, "env_steps": 100 * iteration})
    print("DONE", flush=True)
    """
)


def write(target: pathlib.Path, iteration: int, hang: bool = False) -> subprocess.Popen:
    """The writer script in a child process (importing RLlib takes seconds there)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(target),
            str(iteration),
            "hang" if hang else "done",
            str(REPO / "drive_rllib" / "algorithm" / "checkpoint.py"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def write_here(target: pathlib.Path, iteration: int) -> None:
    """A complete write, in this process (as the writer script does it)."""
    with atomic_directory(str(target)) as folder:
        pathlib.Path(folder, "algorithm_state.pkl").write_text(f"state of iteration {iteration}")
        write_replay(pathlib.Path(folder, REPLAY_FILE), rows=iteration)
        info = {"iteration": iteration, "env_steps": 100 * iteration, **contents(folder)}
        write_marker(folder, info)


def write_replay(path: pathlib.Path, rows: int) -> None:
    """A replay.npz with a row count, as `ReplayStorage.save` writes one."""
    with open(path, "wb") as file:
        np.savez(file, size=np.array(rows), obs=np.zeros((rows, 3), np.float32))


def kill_while_writing(target: pathlib.Path, iteration: int) -> None:
    writer = write(target, iteration, hang=True)
    try:
        assert writer.stdout.readline().strip() == "WRITING"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(timeout=300)


@pytest.mark.parametrize("into", ["the same folder", "a new folder"])
def test_a_writer_killed_mid_checkpoint_leaves_the_previous_one_intact(tmp_path, into):
    previous = tmp_path / "checkpoint_000001"
    write_here(previous, 1)
    target = previous if into == "the same folder" else tmp_path / "checkpoint_000002"

    kill_while_writing(target, 2)

    # The previous checkpoint is complete and unchanged; nothing partial has its name.
    assert read_marker(str(previous))["iteration"] == 1
    assert (previous / "algorithm_state.pkl").read_text() == "state of iteration 1"
    assert not (tmp_path / "checkpoint_000002").exists()
    hidden = [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]
    assert len(hidden) == 1 and ".drive-tmp-" in hidden[0]
    assert newest_complete_checkpoint(str(tmp_path))[0] == str(previous)

    # The next save removes the stale folder and replaces the checkpoint in one rename.
    write_here(target, 3)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted({previous.name, target.name})
    assert read_marker(str(target))["iteration"] == 3


def test_an_exception_inside_leaves_no_folder(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(str(tmp_path / "checkpoint")) as folder:
        pathlib.Path(folder, "half").write_text("x")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_without_replay_is_refused_unless_asked_for(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    filesystem = pyarrow.fs.LocalFileSystem()
    with pytest.raises(
        IncompleteCheckpointError, match="holds no replay.npz.*restore_replay=False"
    ):
        check_complete(str(folder), filesystem)
    assert check_complete(str(folder), filesystem, restore_replay=False) is None
    write_replay(folder / REPLAY_FILE, rows=4)
    marker = {"iteration": 4, "env_steps": 400, **contents(str(folder))}
    (folder / MARKER_FILE).write_text(json.dumps(marker))
    assert check_complete(str(folder), filesystem) == marker


def test_resume_trims_the_history_to_the_checkpoint(tmp_path):
    rows = [
        {"training_iteration": i, "num_env_steps_sampled_lifetime": 100 * i} for i in (1, 2, 3, 4)
    ]
    (tmp_path / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "progress.csv").write_text(
        "training_iteration,num_env_steps_sampled_lifetime\n"
        + "".join(f"{i},{100 * i}\n" for i in (1, 2, 3, 4))
    )
    assert trim_history(str(tmp_path), 2) == 2
    kept = [json.loads(line) for line in (tmp_path / "result.json").read_text().splitlines()]
    assert [row["training_iteration"] for row in kept] == [1, 2]
    assert (tmp_path / "progress.csv").read_text().splitlines() == [
        "training_iteration,num_env_steps_sampled_lifetime",
        "1,100",
        "2,200",
    ]
    assert trim_history(str(tmp_path), 2) == 0


def test_a_damaged_checkpoint_is_skipped_with_its_reason(tmp_path):
    """Each way a newest checkpoint can be damaged: it is skipped, the reason names the
    file, and the newest intact one is chosen; the weights-only check ignores the replay."""
    write_here(tmp_path / "checkpoint_000000", 1)
    damages = {
        "replay truncated": (
            lambda folder: (folder / REPLAY_FILE).write_bytes(
                (folder / REPLAY_FILE).read_bytes()[:100]
            ),
            "replay.npz has 100 bytes where the save wrote",
        ),
        "weights file missing": (
            lambda folder: (folder / "algorithm_state.pkl").unlink(),
            "algorithm_state.pkl is missing",
        ),
        "replay replaced": (
            lambda folder: write_replay(folder / REPLAY_FILE, rows=5),
            "replay.npz",
        ),
        "no marker": (lambda folder: (folder / MARKER_FILE).unlink(), "no readable"),
    }
    for case, (damage, reason) in damages.items():
        newest = tmp_path / "checkpoint_000001"
        write_here(newest, 2)
        damage(newest)
        chosen, skipped = newest_loadable_checkpoint(str(tmp_path))
        assert chosen[0] == str(tmp_path / "checkpoint_000000"), case
        assert len(skipped) == 1 and skipped[0][0] == "checkpoint_000001", case
        assert reason in skipped[0][1], (case, skipped)
        weights_only = checkpoint_problem(str(newest), need_replay=False)
        assert (weights_only is None) == case.startswith("replay"), (case, weights_only)
        if case != "no marker":  # loading one directly: a checkpoint of an older format
            with pytest.raises(IncompleteCheckpointError, match="checkpoint_000001"):
                check_complete(str(newest), pyarrow.fs.LocalFileSystem())
        shutil.rmtree(newest)


def test_a_replay_with_another_row_count_is_refused(tmp_path):
    folder = tmp_path / "checkpoint_000000"
    write_here(folder, 3)
    marker = read_marker(str(folder))
    write_marker(str(folder), {**marker, "replay_rows": 4})
    assert checkpoint_problem(str(folder)) == "replay.npz holds 3 rows where the save wrote 4"
