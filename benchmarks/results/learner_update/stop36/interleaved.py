"""Shared by the one-off scripts here: the core step of
``../../update_step/kernels_2026-12-06/common.py`` (the issue's sizes, one thread), and
``compare``, which times several such steps in one process in interleaved rounds."""

import pathlib
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(
    0, str(pathlib.Path(__file__).resolve().parents[2] / "update_step/kernels_2026-12-06")
)

from common import core_step

__all__ = ["compare", "core_step"]


def compare(
    steps: dict[str, Callable[[], None]],
    use: Callable[[str], None],
    baseline: str,
    rounds: int = 7,
    calls: int = 10,
) -> None:
    """Warms (compiles) every step, then times ``calls`` steps of each per round, in an
    order reversed every other round; ``use(name)`` first sets what the step needs
    (process-wide settings). Prints each step's median ms per step and every other step's
    median per-round ratio to ``baseline``."""
    for name, step in steps.items():
        use(name)
        began = time.time()
        for _ in range(3):
            step()
        print(f"{name}: compile {time.time() - began:.1f} s", flush=True)
    times = {name: [] for name in steps}
    for round_ in range(rounds):
        for name in list(steps) if round_ % 2 else list(steps)[::-1]:
            use(name)
            began = time.perf_counter()
            for _ in range(calls):
                steps[name]()
            times[name].append((time.perf_counter() - began) * 1e3 / calls)
    for name, values in times.items():
        print(f"{name}: {statistics.median(values):.2f} ms/step {[round(v, 1) for v in values]}")
    for name in steps:
        if name != baseline:
            ratios = [a / b for a, b in zip(times[name], times[baseline])]
            print(f"{name} / {baseline}, median per round: {statistics.median(ratios):.3f}")
