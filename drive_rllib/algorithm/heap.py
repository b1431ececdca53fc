"""glibc's malloc set for a CPU Learner's update loop (``DRIVEConfig.tune_malloc``).

A CPU update step allocates and frees a few hundred tensors of 10 kB to 1 MB
(activations kept for the backward, oneDNN's buffers). With glibc's defaults
a freed chunk of 64 kB or more first consolidates the fastbins, blocks above
the (dynamic) mmap threshold go back to the kernel and come again as fresh,
zero-filled pages, and the heap's top is trimmed whenever it is free. In a
profile of the compiled bfloat16 step that was about a tenth of its time
(``_int_malloc``, ``_int_free``, ``malloc_consolidate``, page faults).

``tune_glibc_malloc`` keeps freed memory in the heap for reuse: no fastbins
(``M_MXFAST`` 0), blocks up to 256 MiB from the heap (``M_MMAP_THRESHOLD``),
free memory returned to the kernel only above 1 GiB at the top
(``M_TRIM_THRESHOLD``) and 64 MiB of slack when it grows (``M_TOP_PAD``).
It is process-wide and lasts for the life of the process; elsewhere than on
glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

#: ``mallopt`` parameters of glibc's malloc.h, and the values set.
M_MXFAST = 1
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
SETTINGS = (
    (M_MXFAST, 0),
    (M_MMAP_THRESHOLD, 256 * 2**20),
    (M_TRIM_THRESHOLD, 2**30),
    (M_TOP_PAD, 64 * 2**20),
)


@functools.cache
def tune_glibc_malloc() -> bool:
    """Set ``SETTINGS`` with glibc's ``mallopt`` (once per process); whether it took."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 -- an AttributeError off glibc
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)
