"""glibc's malloc for a CPU Learner (``tune_malloc``): blocks stay in the heap."""

import ctypes
import platform

import pytest

from drive_rllib.algorithm.heap import tune_glibc_malloc

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")


@glibc
def test_tuned_malloc_serves_large_blocks_from_the_heap_and_keeps_them():
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.sbrk.argtypes, libc.sbrk.restype = [ctypes.c_ssize_t], ctypes.c_void_p
    assert tune_glibc_malloc()
    size = 64 * 2**20  # above what glibc's own mmap threshold can reach (32 MiB)
    block = libc.malloc(size)
    try:
        # From the main heap, below the program break, not a mapping of its own.
        assert block + size <= libc.sbrk(0)
    finally:
        libc.free(block)
    top = libc.sbrk(0)
    # Freed, it is not trimmed off the heap: the next block of its size reuses it.
    again = libc.malloc(size)
    try:
        assert libc.sbrk(0) == top
        assert again == block
    finally:
        libc.free(again)


@glibc
def test_tuning_happens_once_per_process():
    assert tune_glibc_malloc() is tune_glibc_malloc() is True
