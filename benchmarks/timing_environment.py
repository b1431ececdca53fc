"""What a benchmark records about the process it ran in, besides its own arguments; the
private Ray instance the benchmarks that go through RLlib start."""

from __future__ import annotations

import json
import os

#: Environment variables that change the timings without changing the code (threads, the
#: allocator, oneDNN, inductor's cache), recorded with the results.
TIMING_ENVIRONMENT = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "GLIBC_TUNABLES",
    "LD_PRELOAD",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY",
    "TORCHINDUCTOR_CACHE_DIR",
)


def timing_environment() -> dict[str, str]:
    """The ``TIMING_ENVIRONMENT`` variables this process has set."""
    return {name: os.environ[name] for name in TIMING_ENVIRONMENT if name in os.environ}


def machine() -> dict[str, object]:
    """The CPU the figures came from: its model name (Linux's ``/proc/cpuinfo``), the
    vector instructions torch's kernels use (``AVX2``, ``AVX512``, ...), whether oneDNN
    has bfloat16 arithmetic here, and the logical CPUs: ratios measured on one CPU (e.g.
    one with AMX) do not carry to another (e.g. an AVX2 one)."""
    import torch

    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                model,
            )
    except OSError:
        pass
    return {
        "cpu": model,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_matmul": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "logical_cpus": os.cpu_count(),
    }


def write_figures(path: str, figures: dict[str, object]) -> None:
    """Writes a benchmark's ``figures`` to the JSON file ``path``, with the machine's load
    average, the `timing_environment` and the `machine` they were measured on."""
    record = {
        **figures,
        "loadavg": os.getloadavg(),
        "environment": timing_environment(),
        "machine": machine(),
    }
    with open(path, "w") as f:
        json.dump(record, f, indent=1)


def start_private_ray(num_cpus: int = 2) -> None:
    """A private local Ray instance (never another cluster on the machine), quiet, without
    token authentication or a dashboard."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
