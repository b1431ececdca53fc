"""What a benchmark records about the process it ran in, besides its own arguments."""

from __future__ import annotations

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
