"""MuJoCo's warnings (e.g. HalfCheetah's "settotalmass is deprecated") off the terminal.

By default MuJoCo prints each warning to stderr and appends it to ``MUJOCO_LOG.TXT``
in the working directory. `redirect_mujoco_warnings` sends them to this module's
logger instead (INFO; WARNING when ``DRIVE_RLLIB_VERBOSE=1``, which ``rllib ... -v``
sets) and, when given, appends them to a log file in the run folder.
"""

from __future__ import annotations

import logging
import os
import time

logger = logging.getLogger(__name__)

#: The file MuJoCo itself writes (in the working directory).
MUJOCO_LOG_FILE = "MUJOCO_LOG.TXT"
#: Set to "1" to show MuJoCo's warnings (``rllib ... -v``).
VERBOSE_ENV = "DRIVE_RLLIB_VERBOSE"


def redirect_mujoco_warnings(log_file: str | None = None, replace: bool = True) -> None:
    """Routes MuJoCo's warnings of this process to logging (and ``log_file``).

    Args:
        log_file: append each warning here, in MuJoCo's format (None: no file).
        replace: replace a handler installed before; False keeps it (e.g. the one
            `DRIVE.setup` installed with the run folder's log file).
    """
    try:
        import mujoco
    except ImportError:  # no MuJoCo, no MuJoCo warnings
        return
    if not replace and mujoco.get_mju_user_warning() is not None:
        return

    def warning(message: str) -> None:
        verbose = os.environ.get(VERBOSE_ENV) == "1"
        logger.log(logging.WARNING if verbose else logging.INFO, "MuJoCo: %s", message)
        if log_file is not None:
            try:
                with open(log_file, "a", encoding="utf-8") as file:
                    file.write(f"{time.ctime()}\nWARNING: {message}\n\n")
            except OSError:
                logger.debug("cannot write %s", log_file)

    mujoco.set_mju_user_warning(warning)
