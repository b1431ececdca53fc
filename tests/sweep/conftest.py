"""Trial folders as Tune writes them, for the report tests (no Ray)."""

from __future__ import annotations

import csv
import json
import math
import pathlib
from typing import Any

RETURN = "env_runners/episode_return_mean"
STEPS = "num_env_steps_sampled_lifetime"


def write_trial(
    folder: pathlib.Path,
    params: dict[str, Any],
    rows: list[tuple[float, float | None]],
    *,
    seconds_per_row: float = 10.0,
    done: bool = True,
    error: bool = False,
    progress_csv: bool = True,
    result_json: bool = True,
) -> pathlib.Path:
    """A trial folder: params.json, result.json (nested results, one per line) and
    progress.csv with the *first* result's columns, as Tune's CSV logger writes it.

    ``rows`` are (env steps, return); a None return is an iteration in which no episode
    ended: absent from the first result (so progress.csv never gets the column), NaN in
    later ones.
    """
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params))
    results = []
    for iteration, (steps, value) in enumerate(rows, 1):
        env_runners: dict[str, Any] = {"num_env_steps_sampled": 50}
        if value is not None or iteration > 1:
            env_runners["episode_return_mean"] = math.nan if value is None else value
        results.append(
            {
                "training_iteration": iteration,
                STEPS: steps,
                "time_total_s": seconds_per_row * iteration,
                "env_runners": env_runners,
                "done": done and iteration == len(rows),
            }
        )
    if result_json:
        with open(folder / "result.json", "w") as file:
            file.writelines(json.dumps(result) + "\n" for result in results)
    if progress_csv:
        flat = [_flatten(result) for result in results]
        with open(folder / "progress.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(flat[0]), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(flat)
    if error:
        (folder / "error.txt").write_text("Failure # 1\nRuntimeError: boom\n")
    return folder


def _flatten(result: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
