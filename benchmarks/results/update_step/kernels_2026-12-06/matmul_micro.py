"""Each matmul shape of the step alone: bfloat16, float32, bfloat16 with a transposed operand (us)."""

import torch
from common import microseconds

torch.set_num_threads(1)


SHAPES = [
    ((5, 256, 256), (5, 256, 2)),
    ((5, 256, 2), (5, 2, 256)),
    ((5, 52, 200), (5, 200, 37)),
    ((5, 52, 37), (5, 37, 200)),
    ((7, 256, 23), (7, 23, 200)),
    ((7, 200, 256), (7, 256, 37)),
    ((5, 52, 23), (5, 23, 200)),
    ((5, 52, 200), (5, 200, 200)),
    ((5, 256, 256), (5, 256, 256)),
    ((7, 256, 200), (7, 200, 200)),
    ((7, 200, 256), (7, 256, 200)),
]
for a, b in SHAPES:
    times = {}
    for dtype in (torch.bfloat16, torch.float32):
        x, w = torch.randn(a, dtype=dtype), torch.randn(b, dtype=dtype)
        times[str(dtype)[6:]] = microseconds(lambda x=x, w=w: torch.bmm(x, w), 300)
    x = torch.randn(a[0], a[2], a[1], dtype=torch.bfloat16).transpose(1, 2)
    w = torch.randn(b, dtype=torch.bfloat16)
    times["bf16_xT"] = microseconds(lambda x=x, w=w: torch.bmm(x, w), 300)
    print(a, b, {k: round(v, 1) for k, v in times.items()})
