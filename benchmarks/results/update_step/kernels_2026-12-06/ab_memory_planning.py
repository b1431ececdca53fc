"""inductor's memory_planning on / off for the compiled core step, interleaved rounds.

Each variant compiles its own copy of the step's entry function (a code object of its
own), so that the config read at compile time applies to that variant only.
"""

import sys

import torch._inductor.config as inductor_config
from common import compiled_variant, interleaved_rounds

steps = {}
for name, planning in (("base", False), ("memplan", True)):
    with inductor_config.patch(memory_planning=planning):
        steps[name] = compiled_variant(name)
interleaved_rounds(steps, int(sys.argv[1]) if len(sys.argv) > 1 else 7, base="base")
