"""``benchmarks/determinism_check.py --compare``: old metric keys are mapped to today's
only in rows of the old code, so that a file compared with itself is bit-identical."""

from __future__ import annotations

import importlib.util
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "determinism_check.py"
PREFIX = "learners/default_policy/"


def load():
    spec = importlib.util.spec_from_file_location("determinism_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_row_of_todays_code_keeps_its_keys():
    check = load()
    # Today's code logs both: the term's mean and the per-member likelihood.
    row = {PREFIX + "loss/termination": 0.3, PREFIX + "model/termination_per_member": 0.1}
    assert check.renamed(row) == (row, [])


def test_a_row_of_the_old_code_is_renamed():
    check = load()
    # The old code logged the per-member value under loss/termination.
    mapped, conflicts = check.renamed({PREFIX + "loss/termination": 0.1, PREFIX + "kl/prior": 2.0})
    assert mapped == {PREFIX + "model/termination_per_member": 0.1, PREFIX + "loss/kl_prior": 2.0}
    assert conflicts == []
