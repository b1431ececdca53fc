"""Export and import of a replay as Parquet against ``replay.npz``: seconds, bytes, peak memory.

The rows are synthetic and HalfCheetah-shaped (S = 17 observation dims, A = 6
action dims, episodes of 1,000 steps ending truncated, ``next_obs`` of a step
the ``obs`` of the next): Parquet's size depends on the values, and random
normal floats barely compress, as real observations barely do either.

Four operations, each in a fresh Python process holding a filled (or empty)
`ReplayStorage` of the rows' count:

- ``npz_write``: ``ReplayStorage.save`` (what a checkpoint writes, ``replay.npz``);
- ``npz_read``: ``ReplayStorage.load`` into an empty storage;
- ``parquet_write``: `drive_rllib.replay.parquet.write_rows` of the rows oldest
  first (what ``export_experience`` runs in the replay actor), actions in the
  env's units;
- ``parquet_read``: `drive_rllib.replay.parquet.read_into` an empty storage
  (what ``offline_data(input_=...)`` runs in the replay actor).

Peak memory is the process's resident set size sampled every 5 ms during the
operation, less the size before it (the storage's own arrays are in both).

    python benchmarks/experience_io.py --rows 1000000 \\
        --out benchmarks/results/experience_io/parquet_vs_npz.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

OBS_DIM, ACTION_DIM, EPISODE_LENGTH = 17, 6, 1000
CAPACITY_SLACK = 0  # the storage holds exactly the rows
OPERATIONS = ("npz_write", "npz_read", "parquet_write", "parquet_read")


def synthetic_rows(num_rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """HalfCheetah-shaped rows, episodes of `EPISODE_LENGTH` steps."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(num_rows + 1, OBS_DIM)).astype(np.float32)
    ends = (np.arange(num_rows) + 1) % EPISODE_LENGTH == 0
    return {
        "obs": obs[:-1],
        "action": rng.uniform(-1, 1, size=(num_rows, ACTION_DIM)).astype(np.float32),
        "reward": rng.normal(size=num_rows).astype(np.float32),
        "next_obs": obs[1:],
        "terminated": np.zeros(num_rows, dtype=bool),
        "truncated": ends,
    }


def resident_bytes() -> int:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory() -> Iterator[dict[str, int]]:
    """Samples the resident set size in a thread while the block runs: ``before``, ``peak``."""
    memory = {"before": resident_bytes()}
    memory["peak"] = memory["before"]
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            memory["peak"] = max(memory["peak"], resident_bytes())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield memory
    finally:
        running.clear()
        thread.join()
        memory["peak"] = max(memory["peak"], resident_bytes())


def folder_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )


def measure(operation: str, num_rows: int, workdir: str, max_rows_per_file: int) -> dict:
    """Runs one operation in this process; returns its seconds, bytes and memory."""
    from drive_rllib.replay import parquet
    from drive_rllib.replay.storage import ReplayStorage

    bounds = parquet.ActionBounds.of([-1.0] * ACTION_DIM, [1.0] * ACTION_DIM)
    storage = ReplayStorage(num_rows + CAPACITY_SLACK, OBS_DIM, ACTION_DIM, seed=0)
    npz_path = os.path.join(workdir, "replay.npz")
    parquet_dir = os.path.join(workdir, "parquet")
    if operation.endswith("_write"):
        storage.add(synthetic_rows(num_rows))
    with peak_memory() as memory:
        start = time.perf_counter()
        if operation == "npz_write":
            storage.save(npz_path)
        elif operation == "npz_read":
            storage.load(npz_path)
        elif operation == "parquet_write":
            parquet.write_rows(
                parquet.chronological_rows(storage.get_state()),
                parquet_dir,
                bounds,
                max_rows_per_file=max_rows_per_file,
            )
        else:
            parquet.read_into(storage.add_valid_rows, parquet_dir, OBS_DIM, bounds)
        seconds = time.perf_counter() - start
    if operation.endswith("_read"):
        assert storage.size == num_rows, (operation, storage.size)
    target = npz_path if operation.startswith("npz") else parquet_dir
    return {
        "seconds": round(seconds, 3),
        "bytes_on_disk": folder_bytes(target),
        "rss_before_mb": round(memory["before"] / 2**20, 1),
        "peak_rss_mb": round(memory["peak"] / 2**20, 1),
        "peak_above_before_mb": round((memory["peak"] - memory["before"]) / 2**20, 1),
    }


def machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as file:
            model = next(line.split(":", 1)[1].strip() for line in file if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "load_average_1min_at_start": load,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": __import__("pyarrow").__version__,
    }


def commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-rows-per-file", type=int, default=100_000)
    parser.add_argument("--out", help="JSON file of the results (default: print only).")
    parser.add_argument("--workdir", help="Folder of the files (default: a temporary one).")
    parser.add_argument("--operation", choices=OPERATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.operation:  # a child process: one operation, JSON on stdout
        print(json.dumps(measure(args.operation, args.rows, args.workdir, args.max_rows_per_file)))
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix="experience_io_")
    started = machine()
    results: dict[str, list[dict]] = {operation: [] for operation in OPERATIONS}
    try:
        for _ in range(args.repeats):
            shutil.rmtree(os.path.join(workdir, "parquet"), ignore_errors=True)
            for operation in OPERATIONS:
                output = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--operation",
                        operation,
                        "--rows",
                        str(args.rows),
                        "--workdir",
                        workdir,
                        "--max-rows-per-file",
                        str(args.max_rows_per_file),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                results[operation].append(json.loads(output.strip().splitlines()[-1]))
                print(operation, results[operation][-1], flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    document = {
        "what": (
            "export and import of HalfCheetah-shaped replay rows (S=17, A=6; synthetic "
            "normal floats, episodes of 1,000 steps) as Parquet in RLlib's offline columns "
            "against replay.npz; each operation in a fresh process; peak memory is the "
            "resident set size above the size before the operation: for the reads it "
            "includes the empty storage's arrays being filled (storage_mb), for the writes "
            "the copy of the rows that get_state makes (storage_mb) plus the writer's buffers"
        ),
        "storage_mb": round(args.rows * (2 * OBS_DIM + ACTION_DIM + 1) * 4 / 2**20, 1),
        "timings_note": (
            "machine shared with two long learning runs and other jobs (load average "
            "above the core count): seconds vary by 2-3x between repeats; compare medians"
        ),
        "command": (
            f"python benchmarks/experience_io.py --rows {args.rows} --repeats {args.repeats} "
            f"--max-rows-per-file {args.max_rows_per_file}"
            + (f" --out {args.out}" if args.out else "")
        ),
        "commit": commit(),
        "machine": started,
        "rows": args.rows,
        "max_rows_per_file": args.max_rows_per_file,
        "results": results,
        "median_seconds": {
            operation: float(np.median([r["seconds"] for r in runs]))
            for operation, runs in results.items()
        },
    }
    text = json.dumps(document, indent=1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as file:
            file.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
