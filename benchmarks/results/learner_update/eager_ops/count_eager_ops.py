"""aten ops per DRIVE update step through RLlib that run outside the step's compiled
graphs (headline sizes, the eager Learner: ``update_terms`` and its backward, which
``torch_compile_learner`` compiles, are counted apart). On a GPU each of them is a kernel
launch (or a host-side op) that the compiled step, CUDA graphs included, does not cover.
One ``learner_group.update`` of 20 update steps, as ``benchmarks/learner_update.py``
times it, after 20 untimed ones; RLlib's reduce at the end of the call included.

    OMP_NUM_THREADS=1 python benchmarks/results/learner_update/eager_ops/count_eager_ops.py
"""

import collections
import pathlib
import sys
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))  # benchmarks/

import learner_update
import ray

STEPS = 20
INSIDE = {"depth": 0}


class Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.where: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if INSIDE["depth"]:
            self.inside += 1
        else:
            frames = [
                f
                for f in traceback.extract_stack(limit=12)[:-1]
                if "drive_rllib/" in f.filename or "ray/rllib/" in f.filename
            ]
            frame = frames[-1] if frames else None
            place = (
                f"{frame.filename.split('site-packages/')[-1].split('main/')[-1]}:{frame.lineno}"
                f" ({frame.name})"
                if frame
                else "?"
            )
            self.where[place] += 1
        return func(*args, **(kwargs or {}))


def counted_inside(function):
    def wrapper(*args, **kwargs):
        INSIDE["depth"] += 1
        try:
            return function(*args, **kwargs)
        finally:
            INSIDE["depth"] -= 1

    return wrapper


torch.set_num_threads(1)
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
algo = learner_update.drive_algo("HalfCheetah-v5", "headline", STEPS, 0)
learner_update.drive_update(algo, STEPS)
learner = algo.learner_group._learner
for module_id in learner.module.keys():  # noqa: SIM118 -- a MultiRLModule, not a dict
    module = learner.module[module_id].unwrapped()
    # The step's function: ``_step`` (update_loss), ``_step_terms`` (update_terms) before.
    name = "_step" if hasattr(module, "_step") else "_step_terms"
    setattr(module, name, counted_inside(getattr(module, name)))
torch.Tensor.backward = counted_inside(torch.Tensor.backward)
with Count() as mode:
    learner_update.drive_update(algo, STEPS)
outside = sum(mode.where.values())
print(f"aten ops per update step: {mode.inside / STEPS:.1f} in the step's graphs (eager here)")
print(f"aten ops per update step outside them: {outside / STEPS:.1f}")
for place, n in mode.where.most_common(40):
    print(f"{n / STEPS:7.2f}  {place}")
algo.stop()
ray.shutdown()
