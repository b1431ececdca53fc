"""Host reads of tensor values per DRIVE update step through RLlib, headline sizes.

Each ``item()``, ``bool()``, ``int()``, ``float()``, ``tolist()`` or ``numpy()`` of a
tensor is counted (``len()`` too, listed apart: it reads the shape only); on a GPU every
one but ``len()`` waits for the kernels queued before it. One ``learner_group.update``
of 20 update steps, as ``benchmarks/learner_update.py`` times it, after 20 untimed ones;
RLlib's reduce of the results at the end of the call is included (spread over the 20).

    OMP_NUM_THREADS=1 python benchmarks/results/learner_update/host_reads/count_host_reads.py
"""

import collections
import pathlib
import sys
import traceback

import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))  # benchmarks/

import learner_update
import ray

READS = {"__bool__", "__int__", "__float__", "item", "tolist", "numpy", "__len__"}
STEPS = 20


class Count(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.where: collections.Counter = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            frame = [
                f for f in traceback.extract_stack(limit=6)[:-1] if "overrides" not in f.filename
            ][-1]
            path = frame.filename.split("site-packages/")[-1].split("drive_rllib/")[-1]
            self.where[(name, f"{path}:{frame.lineno}", frame.name)] += 1
        return func(*args, **(kwargs or {}))


torch.set_num_threads(1)
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
algo = learner_update.drive_algo("HalfCheetah-v5", "headline", STEPS, 0)
learner_update.drive_update(algo, STEPS)
with Count() as mode:
    learner_update.drive_update(algo, STEPS)
waits = sum(n for (name, _, _), n in mode.where.items() if name != "__len__")
print(f"host reads per update step that wait for a GPU: {waits / STEPS:.2f}")
for (name, place, function), n in mode.where.most_common():
    print(f"{n / STEPS:6.2f}  {name:<10} {place} ({function})")
algo.stop()
ray.shutdown()
