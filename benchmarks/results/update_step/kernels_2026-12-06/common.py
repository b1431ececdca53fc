"""Shared by the one-off scripts here and in the folders beside it: the headline-size core
step of benchmarks/update_step.py, and the A/B loop that compiles variants of it and times
them in interleaved rounds."""

import pathlib
import statistics
import sys
import time
import types

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))  # benchmarks/

import update_step

from drive_rllib.core import update


def microseconds(fn, calls: int, warmup: int = 20) -> float:
    """Microseconds per call of ``fn``, over ``calls`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def core_step(compiled: bool, precision: str = "bfloat16"):
    """One thread, seed 0, denormals flushed: a callable running one core update step."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    update_step.DEVICE = torch.device("cpu")
    return update_step.drive_step_fn(
        5, 1, 256, 7, (200, 200, 200, 200), precision=precision, compiled=compiled
    )


def compiled_variant(name: str, precision: str = "bfloat16"):
    """The compiled core step for one A/B variant, compiled now (3 warm-up steps).

    The step's entry function gets a code object of its own, so that this variant
    compiles its own graphs from whatever the caller patched (or the inductor config in
    force) right now, and another variant's compile does not replace them.
    """
    entry = update.update_terms
    update_step.update_terms = types.FunctionType(
        entry.__code__.replace(), entry.__globals__, f"terms_{name}", entry.__defaults__
    )
    step = core_step(compiled=True, precision=precision)
    start = time.time()
    for _ in range(3):
        step()
    print(name, f"compiled in {time.time() - start:.0f} s", flush=True)
    return step


def interleaved_rounds(steps: dict, rounds: int, base: str, before=lambda name: None) -> None:
    """Time each step (10 per round, after one untimed) in rounds of rotated order and
    print each one's median ms and median per-round ratio to ``base``; ``before(name)``
    runs ahead of each variant's turn (to put its patch back in place)."""
    times = {name: [] for name in steps}
    for r in range(rounds):
        names = list(steps)
        for name in names[r % 2 :] + names[: r % 2]:
            before(name)
            steps[name]()
            start = time.perf_counter()
            for _ in range(10):
                steps[name]()
            times[name].append((time.perf_counter() - start) * 100)
    for name, ms in times.items():
        ratio = statistics.median(a / b for a, b in zip(ms, times[base]))
        print(
            f"{name:<10} median {statistics.median(ms):.2f} ms  ratio to {base} {ratio:.3f}  "
            f"({' '.join(f'{x:.1f}' for x in ms)})"
        )


def patched_variants_ab(names, use, rounds: int, base: str, precision: str = "float32") -> None:
    """A/B of variants that differ by a patch: ``use(name)`` puts a variant's patch in place.

    Each variant's step is compiled with its patch in force, the steps are timed in
    ``interleaved_rounds`` with ``use`` before each turn (so each runs the graph it was
    compiled with), and nothing may recompile while they are timed.
    """
    steps = {}
    for name in names:
        use(name)
        steps[name] = compiled_variant(name, precision)
    compiles = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    interleaved_rounds(steps, rounds, base=base, before=use)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiles, "recompiled"
    print(f"{precision}, {rounds} rounds of 10 steps, graphs compiled: {compiles}")
