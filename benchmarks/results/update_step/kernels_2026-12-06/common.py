"""Shared by the one-off scripts here: the headline-size core step of benchmarks/update_step.py."""

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))  # benchmarks/

import update_step


def core_step(compiled: bool, precision: str = "bfloat16"):
    """One thread, seed 0, denormals flushed: a callable running one core update step."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    update_step.DEVICE = torch.device("cpu")
    return update_step.drive_step_fn(
        5, 1, 256, 7, (200, 200, 200, 200), precision=precision, compiled=compiled
    )
