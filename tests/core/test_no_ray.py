"""The core is torch-only: importing it must not import ray."""

from __future__ import annotations

import subprocess
import sys


def test_core_import_does_not_import_ray():
    code = (
        "import sys, drive_rllib.core, drive_rllib.core.losses, drive_rllib.core.imagine;"
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"drive_rllib.core imported ray modules: {result.stdout}"
