"""What a compiled kernel pays to store a [5, 256, 256] mask as bool, uint8 or float32.

One inductor kernel per variant computes relu(x + b) and stores it with the mask
relu(x + b) <= 0 in the given dtype (or no mask at all); us per call, one thread.
Usage: ``OMP_NUM_THREADS=1 python bool_store.py``.
"""

import time

import torch

torch.set_num_threads(1)
x, b = torch.randn(5, 256, 256), torch.randn(5, 1, 256)


def with_mask(dtype):
    def fn(x, b):
        out = torch.relu(x + b)
        return out, (out <= 0).to(dtype)

    return fn


variants = {
    "bool": with_mask(torch.bool),
    "uint8": with_mask(torch.uint8),
    "float32": with_mask(torch.float32),
    "no mask": lambda x, b: torch.relu(x + b),
}
print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
for name, fn in variants.items():
    compiled = torch.compile(fn)
    for _ in range(5):
        compiled(x, b)
    start = time.perf_counter()
    for _ in range(200):
        compiled(x, b)
    print(f"{name:<8} {(time.perf_counter() - start) / 200 * 1e6:8.1f} us per call")
