"""DRIVE's experience as Parquet in RLlib's offline format: export, import, the settings' checks.

- **Export** (`export_experience`): a live run's replay, or a checkpoint's
  ``replay.npz``, written as Parquet files with the columns of
  ``ray.rllib.offline.offline_prelearner.SCHEMA`` (one row per transition,
  oldest first; see `drive_rllib.replay.parquet` for the columns, units and
  files). RLlib's readers (``config.offline_data(input_=...)`` of BC, MARWIL,
  CQL, IQL) take them as they are.
- **Import** (`import_dataset`): ``DRIVEConfig().offline_data(input_=PATH)``
  fills the replay from a Parquet dataset in ``DRIVE.setup``, before the first
  iteration. The rows count toward ``num_warmup_steps`` (a large enough dataset
  replaces the random warm-up) but not as env steps
  (``num_env_steps_sampled_lifetime`` counts the steps of this run); the
  first learning iteration's catch-up (``warmup_catch_up``) covers the rows this
  run collected only. Rows are checked as the EnvRunners' rows are (NaN/inf or
  beyond ``max_abs_value``: dropped and counted, the run fails beyond
  ``max_rejected_share``); a missing column or a wrong shape is one
  `DatasetError` naming file, column and expected shape, and leaves the replay
  as it was. The replay actor reads the files itself, in batches: memory is
  bounded by the replay's capacity, not by the dataset's size, and the rows
  never pass through the driver.

RLlib's settings that apply: ``input_`` (a path, URI, or list of them),
``input_read_schema`` (column names), ``input_filesystem`` (a pyarrow
filesystem, or "s3" / "gcs" with ``input_filesystem_kwargs``) and
``actions_in_input_normalized`` (files not written by DRIVE, e.g. RLlib's own
recordings under ``normalize_actions=True``, hold [-1, 1] actions: set it to
True; DRIVE's files say their units themselves). ``output=`` is not supported:
export the replay instead.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import pyarrow.fs
import ray

from drive_rllib.replay.parquet import (
    DEFAULT_MAX_ROWS_PER_FILE,
    ENV_UNITS,
    ActionBounds,
    DatasetError,
    ExportSummary,
    chronological_rows,
    read_into,
    write_rows,
)
from drive_rllib.replay.storage import FIELDS

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm import Algorithm

logger = logging.getLogger(__name__)

__all__ = [
    "DatasetError",
    "check_offline_settings",
    "export_experience",
    "import_dataset",
]

#: What `check_offline_settings` says about ``output=``.
OUTPUT_MESSAGE = (
    "DRIVE's EnvRunners do not write config.offline_data(output=...): remove it and export "
    "the replay instead (`rllib export-experience CHECKPOINT OUT_DIR`, or "
    "drive_rllib.algorithm.offline.export_experience(algo, OUT_DIR))."
)


def check_offline_settings(config: Any) -> str | None:
    """The one-line problem with a DRIVEConfig's offline settings, or None (see the module)."""
    if config.output:
        return OUTPUT_MESSAGE
    if not config.is_offline:
        return None
    paths = config.input_ if isinstance(config.input_, list) else [config.input_]
    if not all(isinstance(path, (str, os.PathLike)) for path in paths):
        return (
            f"config.offline_data(input_=...) must be a path or URI of Parquet files (or a "
            f"list of them) for DRIVE, got {config.input_!r}."
        )
    if config.input_read_episodes or config.input_read_sample_batches:
        return (
            "DRIVE reads one transition per row (RLlib's tabular columns, as written with "
            "output_write_episodes=False): remove input_read_episodes / "
            "input_read_sample_batches from config.offline_data(...)."
        )
    return None


def action_bounds(action_space: gym.spaces.Box) -> ActionBounds:
    """The env's action bounds (the replay's [-1, 1] maps to them)."""
    return ActionBounds.of(action_space.low, action_space.high)


def input_filesystem(config: Any) -> pyarrow.fs.FileSystem | None:
    """RLlib's ``input_filesystem`` as a pyarrow filesystem (None: from the path)."""
    filesystem, kwargs = config.input_filesystem, dict(config.input_filesystem_kwargs or {})
    if filesystem is None or isinstance(filesystem, pyarrow.fs.FileSystem):
        return filesystem
    if filesystem == "s3":
        return pyarrow.fs.S3FileSystem(**kwargs)
    if filesystem == "gcs":
        return pyarrow.fs.GcsFileSystem(**kwargs)
    raise ValueError(
        f"config.offline_data(input_filesystem={filesystem!r}): DRIVE reads through pyarrow: "
        "give a pyarrow.fs.FileSystem, 's3' or 'gcs' (or None, from the path)."
    )


# -- import -------------------------------------------------------------------------------


def _fill_replay(
    replay: Any,
    paths: Any,
    obs_dim: int,
    bounds: ActionBounds,
    options: dict[str, Any],
    max_rejected_share: float,
) -> dict[str, Any]:
    """Runs in the replay actor (``__ray_call__``): reads the dataset into it, or changes
    nothing and raises."""
    from ray.rllib.utils.compression import unpack_if_needed

    before = replay.get_state()
    try:
        summary = read_into(replay.push, paths, obs_dim, bounds, decode=unpack_if_needed, **options)
        if summary.rows_read and summary.rejected > max_rejected_share * summary.rows_read:
            raise DatasetError(
                f"{summary.rejected} of {summary.rows_read} rows of dataset {paths} were "
                f"dropped (first: row {summary.first_rejected}, {summary.reason}), more than "
                f"max_rejected_share={max_rejected_share}: clean the dataset, or raise "
                "config.training(max_abs_value=...) / max_rejected_share."
            )
    except BaseException:
        replay.set_state(before)
        raise
    return summary.to_dict()


def import_dataset(algo: Algorithm) -> int:
    """Fills ``algo``'s (empty) replay from ``config.input_``; returns the rows stored.

    Called by ``DRIVE.setup`` once the replay actor is up; returns 0 without
    an ``input_``. Rows dropped by the checks are logged and counted in the
    replay's ``rows_rejected``.

    Raises:
        DatasetError: a missing file or column, a wrong shape, or more dropped
            rows than ``max_rejected_share`` (the replay is left as it was).
    """
    config = algo.config
    if not config.is_offline:
        return 0
    from ray.rllib.core import DEFAULT_MODULE_ID

    observation_space, action_space = algo.spaces[DEFAULT_MODULE_ID]
    options = {
        "actions_normalized": bool(config.actions_in_input_normalized),
        "column_names": dict(config.input_read_schema or {}),
        "filesystem": input_filesystem(config),
    }
    paths = config.input_
    try:
        summary = ray.get(
            algo.replay_actor.__ray_call__.remote(
                _fill_replay,
                paths,
                int(np.prod(observation_space.shape)),
                action_bounds(action_space),
                options,
                float(config.max_rejected_share),
            )
        )
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, (DatasetError, OSError)):
            raise DatasetError(str(cause)) from None
        raise
    logger.info(
        "Read %d rows of %d file(s) of %s into the replay: %d stored, %d dropped%s%s.",
        summary["rows_read"],
        summary["files"],
        paths,
        summary["added"],
        summary["rejected"],
        f" (first: row {summary['first_rejected']}, {summary['reason']})"
        if summary["rejected"]
        else "",
        f", {summary['actions_clipped']} rows' actions clipped to the action space"
        if summary["actions_clipped"]
        else "",
    )
    if summary["rejected"] or summary["actions_clipped"]:
        logger.warning(
            "Dataset %s: %d rows dropped (NaN/inf or beyond max_abs_value), %d rows' "
            "actions clipped to the action space.",
            paths,
            summary["rejected"],
            summary["actions_clipped"],
        )
    return int(summary["added"])


# -- export -------------------------------------------------------------------------------


def _export_in_actor(
    replay: Any, out_dir: str, bounds: ActionBounds, options: dict[str, Any]
) -> ExportSummary:
    """Runs in the replay actor (``__ray_call__``): writes its rows, oldest first."""
    return write_rows(chronological_rows(replay.get_state()), out_dir, bounds, **options)


def export_experience(
    source: Algorithm | str,
    out_dir: str,
    *,
    actions: str = ENV_UNITS,
    max_rows_per_file: int = DEFAULT_MAX_ROWS_PER_FILE,
    filesystem: pyarrow.fs.FileSystem | None = None,
) -> ExportSummary:
    """Writes a DRIVE replay as Parquet in RLlib's offline columns.

    Args:
        source: A running DRIVE Algorithm (its replay actor writes the files,
            on its own node), or a checkpoint folder (or a trial folder: its last
            checkpoint), read without Ray.
        out_dir: A new or empty folder: a local path or a URI (``s3://...``).
        actions: "env" (the env's units, default) or "normalized" ([-1, 1], as
            the replay stores them and as RLlib's own recordings hold them under
            ``normalize_actions=True``).
        max_rows_per_file: Rows per file at most.
        filesystem: A pyarrow filesystem (None: from ``out_dir``).

    Returns:
        The files, rows and bytes written.
    """
    options = {
        "actions": actions,
        "max_rows_per_file": max_rows_per_file,
        "filesystem": filesystem,
    }
    if not isinstance(source, (str, os.PathLike)):
        from ray.rllib.core import DEFAULT_MODULE_ID

        _, action_space = source.spaces[DEFAULT_MODULE_ID]
        if "://" not in str(out_dir):
            out_dir = os.path.abspath(out_dir)
        options["source"] = f"replay of a running {type(source).__name__} ({source.logdir})"
        return ray.get(
            source.replay_actor.__ray_call__.remote(
                _export_in_actor, out_dir, action_bounds(action_space), options
            )
        )
    from drive_rllib.algorithm.checkpoint import REPLAY_FILE
    from drive_rllib.algorithm.evaluation import (
        evaluation_config,
        resolve_checkpoint,
        stored_config,
    )

    checkpoint = resolve_checkpoint(os.fspath(source))
    replay_file = os.path.join(checkpoint, REPLAY_FILE)
    if not os.path.isfile(replay_file):
        raise FileNotFoundError(
            f"{checkpoint} holds no {REPLAY_FILE}: only DRIVE checkpoints written with their "
            "replay can be exported."
        )
    _, action_space = evaluation_config(*stored_config(checkpoint)).env_spaces()
    with np.load(replay_file, allow_pickle=False) as data:
        state = {key: data[key] for key in ("capacity", "size", "cursor", *FIELDS)}
    options["source"] = os.path.abspath(checkpoint)
    return write_rows(chronological_rows(state), out_dir, action_bounds(action_space), **options)


def catch_up_rows(replay_size: int, rows_imported: int) -> int:
    """The replay rows the first learning iteration's catch-up covers: those this run
    collected, not those imported from a dataset."""
    return max(replay_size - rows_imported, 0)
