"""Tune trial folders read offline (no Ray): ``params.json`` and the per-iteration results.

A trial folder holds ``params.json`` (its resolved config), ``result.json``
(one JSON result per line), ``progress.csv`` and, after a failure,
``error.txt``. Tune's CSV logger takes its columns from the *first* result and
drops keys that appear later, so the episode return of an env whose first
episode ends after the first iteration (Pendulum-v1 with 50-step iterations)
never reaches ``progress.csv``. ``result.json`` holds every result in full:
it is read first, ``progress.csv`` only when there is no ``result.json``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from drive_rllib.keys import ITERATION, nested_get

RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
PARAMS_FILE = "params.json"
#: Written by Tune into the folder of a trial that failed.
ERROR_FILE = "error.txt"
#: Written by `rllib evaluate` into a checkpoint folder, one per evaluation
#: (``evaluation_<date>-<time>_seed<S>.json``; older versions wrote ``evaluation.json``);
#: read by `rllib plot`.
EVALUATION_FILE = "evaluation.json"
EVALUATION_GLOB = "evaluation*.json"


def new_evaluation_path(checkpoint: str, seed: int) -> str:
    """A file name for one evaluation that no earlier evaluation has taken."""
    import time

    stem = f"evaluation_{time.strftime('%Y%m%d-%H%M%S')}_seed{seed}"
    path, count = os.path.join(checkpoint, f"{stem}.json"), 1
    while os.path.exists(path):
        count += 1
        path = os.path.join(checkpoint, f"{stem}_{count}.json")
    return path


def find_trials(run_dir: str) -> list[str]:
    """Every trial folder under ``run_dir`` (it included), sorted: folders with results."""
    return sorted(
        folder
        for folder, _, files in os.walk(run_dir)
        if RESULT_FILE in files or PROGRESS_FILE in files
    )


def read_params(trial_dir: str) -> dict[str, Any]:
    """The trial's resolved config (``params.json``); empty when the file is missing."""
    path = os.path.join(trial_dir, PARAMS_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as file:
        params = json.load(file)
    return params if isinstance(params, dict) else {}


def read_rows(trial_dir: str, keys: Sequence[str]) -> list[dict[str, float | None]]:
    """One row per training iteration with the given slash-grouped result keys as finite
    floats (None when absent, NaN or not a number), in the order reported.

    A trial resumed from a checkpoint reports the iterations after that checkpoint
    again: the last report of each iteration is kept, in the place of the first.
    """
    rows: dict[Any, dict[str, float | None]] = {}
    for index, result in enumerate(_results(trial_dir)):
        iteration = _finite(nested_get(result, ITERATION))
        row = {key: _finite(nested_get(result, key)) for key in keys}
        rows[("row", index) if iteration is None else iteration] = row
    return list(rows.values())


def trial_status(trial_dir: str) -> str:
    """ "finished" (its last result says ``done``: a stop criterion was met), "failed"
    (Tune wrote ``error.txt`` and the trial did not finish afterwards) or "unfinished"
    (interrupted, stopped early by a scheduler, or still running)."""
    tail = deque(_results(trial_dir), maxlen=1)
    last = tail[0] if tail else {}
    if last.get("done") in (True, "True", "true"):
        return "finished"
    if os.path.exists(os.path.join(trial_dir, ERROR_FILE)):
        return "failed"
    return "unfinished"


def _results(trial_dir: str) -> Iterator[dict[str, Any]]:
    """The trial's results: result.json's lines (a torn last line, from a run killed
    mid-write, is skipped), else progress.csv's rows (flat slash-grouped keys)."""
    result_file = os.path.join(trial_dir, RESULT_FILE)
    if os.path.exists(result_file):
        with open(result_file, encoding="utf-8") as file:
            for line in file:
                try:
                    result = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(result, dict):
                    yield result
        return
    progress_file = os.path.join(trial_dir, PROGRESS_FILE)
    if os.path.exists(progress_file):
        with open(progress_file, newline="", encoding="utf-8") as file:
            yield from csv.DictReader(file)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
