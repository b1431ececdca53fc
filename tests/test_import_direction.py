"""Dependency direction (core <- replay <- algorithm <- cli): nothing points up.

Two kinds of checks: importing a package in a fresh interpreter must not load
what it may not depend on, and no import statement in a package's source
(also inside functions) names it.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "drive_rllib"


def loaded_modules(code: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules under ``prefixes`` that a fresh interpreter has loaded after ``code``."""
    probe = (
        f"{code}\nimport sys\n"
        f"print(sorted(m for m in sys.modules if m.startswith({prefixes!r}) or m in "
        f"{tuple(p.rstrip('.') for p in prefixes)!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_core_import_does_not_import_ray():
    bad = loaded_modules(
        "import drive_rllib.core, drive_rllib.core.losses, drive_rllib.core.imagine, "
        "drive_rllib.core.spec, drive_rllib.core.update, drive_rllib.keys",
        ("ray.",),
    )
    assert not bad, f"drive_rllib.core imported ray modules: {bad}"


def test_replay_storage_imports_no_ray_and_the_actor_no_rllib():
    assert not loaded_modules("import drive_rllib.replay, drive_rllib.replay.storage", ("ray.",))
    # The actor shell may import Ray, never RLlib: also not while it samples.
    code = (
        "import numpy as np\n"
        "from drive_rllib.replay.actor import ReplayActor\n"
        "actor = ReplayActor(8, 2, 1, holdout_every=0, seed=0)\n"
        "actor.add({'obs': np.zeros((4, 2)), 'action': np.zeros((4, 1)), 'reward': np.zeros(4),"
        " 'next_obs': np.zeros((4, 2)), 'terminated': np.zeros(4, bool),"
        " 'truncated': np.zeros(4, bool)})\n"
        "assert set(actor.sample(3)) >= {'obs', 'action', 'reward'}"
    )
    bad = loaded_modules(code, ("ray.rllib.", "torch."))
    assert not bad, f"drive_rllib.replay.actor imported {bad}"


def test_algorithm_imports_no_cli():
    bad = loaded_modules(
        "import drive_rllib.algorithm, drive_rllib.algorithm.evaluation", ("drive_rllib.cli.",)
    )
    assert not bad, f"drive_rllib.algorithm imported {bad}"


def imported_names(path: pathlib.Path) -> set[str]:
    """Every module an import statement in ``path`` names, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "files, forbidden",
    [
        ("core/*.py", ("ray", "drive_rllib.replay", "drive_rllib.algorithm", "drive_rllib.cli")),
        ("keys.py", ("ray", "torch", "numpy", "drive_rllib")),
        ("replay/storage.py", ("ray", "torch", "drive_rllib.algorithm", "drive_rllib.cli")),
        ("replay/actor.py", ("ray.rllib", "torch", "drive_rllib.algorithm", "drive_rllib.cli")),
        ("algorithm/*.py", ("drive_rllib.cli",)),
    ],
)
def test_no_import_statement_points_up(files, forbidden):
    for path in sorted(PACKAGE.glob(files)):
        bad = sorted(
            name
            for name in imported_names(path)
            if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
        )
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}"
