"""F.relu against `networks.relu` (backward grad * sign(out)) in the compiled core step, interleaved rounds, one process.

Both variants compile their own copy of the step's entry function; before each timed
call ``networks.ACTIVATIONS`` holds that variant's ReLU, so each variant runs the graph
it was compiled with (no recompiles: the script prints the compile count).
Usage: ``OMP_NUM_THREADS=1 python ab_relu.py [ROUNDS] [PRECISION]``.
"""

import pathlib
import sys

import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "kernels_2026-12-06"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))  # benchmarks/
from common import patched_variants_ab
from timing_environment import machine

from drive_rllib.core import networks
from drive_rllib.core.spec import Activation

precision = sys.argv[2] if len(sys.argv) > 2 else "float32"
print(machine())
variants = {"F.relu": F.relu, "sign_grad": networks.relu}


def use(name):
    networks.ACTIVATIONS[Activation.RELU] = variants[name]


rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
patched_variants_ab(variants, use, rounds, base="F.relu", precision=precision)
