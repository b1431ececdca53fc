"""A callback that makes one checkpoint save fail with ENOSPC (disk full), mid-write.

Set ``DRIVE_TEST_FAIL_SAVE`` to a file holding an iteration number: while that
file exists, the first save at or after that iteration writes part of
``replay.npz``, removes the file and raises ``OSError(ENOSPC)``, as a full disk
would. The callback runs in the trial's
process, where the save happens.
"""

from __future__ import annotations

import errno
import os
import pathlib
from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

import drive_rllib.algorithm.drive as drive_module

FLAG = "DRIVE_TEST_FAIL_SAVE"


class FailOneSave(RLlibCallback):
    """Patches the replay save of this process so that it fails once (see the module)."""

    def on_algorithm_init(self, *, algorithm: Any, **kwargs: Any) -> None:
        original = drive_module.save_replay
        if getattr(original, "fails_once", False):
            return

        def save_replay(replay: Any, checkpoint: str, filesystem: Any) -> None:
            flag = os.environ.get(FLAG)
            if (
                flag
                and os.path.exists(flag)
                and algorithm.iteration >= int(pathlib.Path(flag).read_text())
            ):
                os.remove(flag)
                with open(os.path.join(checkpoint, "replay.npz"), "wb") as file:
                    file.write(b"PK\x03\x04 partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), checkpoint)
            original(replay, checkpoint, filesystem)

        save_replay.fails_once = True
        drive_module.save_replay = save_replay
