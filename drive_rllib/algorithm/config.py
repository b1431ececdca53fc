"""Where `DRIVEConfig` was defined before issue 14; it now shares ``drive.py`` with `DRIVE`.

Checkpoints and Tune experiment states written before then pickle the config
under this module's name, so it stays importable (it imports ``drive.py``;
``drive.py`` does not import it). New code imports from `drive_rllib.algorithm`.
"""

from __future__ import annotations

from drive_rllib.algorithm.drive import DRIVEConfig

__all__ = ["DRIVEConfig"]
