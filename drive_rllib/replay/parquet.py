"""Replay rows as Parquet in RLlib's tabular offline format, read and written with pyarrow.

numpy and pyarrow only: no Ray, no RLlib. `drive_rllib.algorithm.offline` connects
this to a DRIVE run (export from a live replay or a checkpoint, import into the
replay before the first iteration).

**Columns** (the names of ``ray.rllib.offline.offline_prelearner.SCHEMA``, one
row per transition, as RLlib's ``config.offline_data(output=...)`` writes them
with ``output_write_episodes=False``): ``eps_id`` (string), ``agent_id`` and
``module_id`` (null: single-agent), ``obs`` and ``new_obs`` (``S`` float32
each), ``actions`` (``A`` floats), ``rewards`` (float64), ``terminateds`` and
``truncateds`` (bool, kept apart as the replay keeps them), ``t`` (the step's
index within its episode segment). RLlib compresses ``obs`` / ``new_obs`` into
strings by default; these files keep plain float lists, which RLlib's reader
takes as they are.

**Actions.** The replay stores the policy's actions in [-1, 1] (module space,
``normalize_actions=True``); files hold them in the env's own units
(``env``: ``low + (a + 1) / 2 (high - low)``, the convention of datasets that
other tools write) unless written with ``actions="normalized"`` (RLlib's own
recordings, under ``normalize_actions=True``, store the module's output, i.e.
normalized actions). Env-unit actions are float32 where the conversion is
exact (bounds symmetric around 0 with a power-of-two half-width: Pendulum,
most MuJoCo tasks) and float64 otherwise, so an export read back gives the
replay's float32 actions again. Each file records its units in its schema
metadata (`METADATA_KEY`); files without it (e.g. RLlib's) are read in the
units the reader is told.

**Files** hold at most ``max_rows_per_file`` rows, ``part-000000.parquet``,
... in the order of the rows (oldest first), on any filesystem pyarrow reaches
(a local path, ``s3://...``, ``gs://...``).

Shapes: ``T`` rows, ``S`` observation dim, ``A`` action dim.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs
import pyarrow.parquet as pq

from drive_rllib.replay.storage import (
    ACTION,
    FIELDS,
    NEXT_OBS,
    OBS,
    REWARD,
    TERMINATED,
    TRUNCATED,
)

# RLlib's column names (ray.rllib.core.columns.Columns), spelled out to stay Ray-free.
EPS_ID = "eps_id"
AGENT_ID = "agent_id"
MODULE_ID = "module_id"
OBS_COLUMN = "obs"
ACTIONS_COLUMN = "actions"
REWARDS_COLUMN = "rewards"
NEW_OBS_COLUMN = "new_obs"
TERMINATEDS_COLUMN = "terminateds"
TRUNCATEDS_COLUMN = "truncateds"
T_COLUMN = "t"
#: The column that RLlib's old recordings use instead of ``terminateds``.
DONES_COLUMN = "dones"
#: Replay field -> the column it is written to and read from.
COLUMN_OF_FIELD: dict[str, str] = {
    OBS: OBS_COLUMN,
    ACTION: ACTIONS_COLUMN,
    REWARD: REWARDS_COLUMN,
    NEXT_OBS: NEW_OBS_COLUMN,
    TERMINATED: TERMINATEDS_COLUMN,
    TRUNCATED: TRUNCATEDS_COLUMN,
}
#: The schema metadata key of a file's `FileInfo` (JSON).
METADATA_KEY = b"drive_rllib"
#: Units of the ``actions`` column: the env's own, or [-1, 1] (RLlib's module space).
ENV_UNITS = "env"
NORMALIZED = "normalized"
ACTION_UNITS = (ENV_UNITS, NORMALIZED)
FORMAT_VERSION = 1
PART_PREFIX = "part-"
SUFFIX = ".parquet"
DEFAULT_MAX_ROWS_PER_FILE = 100_000
DEFAULT_BATCH_ROWS = 65_536
#: Normalized actions beyond [-1, 1] by more than this are clipped and counted.
ACTION_TOLERANCE = 1e-5


class DatasetError(ValueError):
    """A dataset that cannot be read into the replay (the message names file, column, shape)."""


@dataclass(frozen=True)
class ActionBounds:
    """The env's Box action bounds, to convert between [-1, 1] and the env's units.

    Args:
        low: [A] lower bounds (finite).
        high: [A] upper bounds (finite, above ``low``).
    """

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, low: Any, high: Any) -> ActionBounds:
        """Bounds from array-likes (e.g. a gymnasium Box's ``low`` and ``high``), flattened."""
        low = np.asarray(low, dtype=np.float64).reshape(-1)
        high = np.asarray(high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"Action bounds must be finite and of one shape: {low}, {high}.")
        if not (high > low).all():
            raise ValueError(f"Action bounds need high > low: low={low}, high={high}.")
        return cls(low, high)

    @property
    def center(self) -> np.ndarray:
        return (self.high + self.low) / 2

    @property
    def half_width(self) -> np.ndarray:
        return (self.high - self.low) / 2

    @property
    def exact_in_float32(self) -> bool:
        """Whether ``a * half_width`` (center 0, half-width a power of two) round-trips
        through float32 exactly."""
        mantissa, _ = np.frexp(self.half_width)
        return bool((self.center == 0).all() and (mantissa == 0.5).all())

    @property
    def env_dtype(self) -> np.dtype:
        """The dtype of env-unit actions in a file: float32 where exact, else float64."""
        return np.dtype(np.float32 if self.exact_in_float32 else np.float64)

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """[T, A] actions in [-1, 1] -> the env's units (`env_dtype`)."""
        env = np.asarray(action, dtype=np.float64) * self.half_width + self.center
        return env.astype(self.env_dtype)

    def to_normalized(self, action: np.ndarray) -> np.ndarray:
        """[T, A] actions in the env's units -> [-1, 1] (float64, not clipped)."""
        return (np.asarray(action, dtype=np.float64) - self.center) / self.half_width


# -- writing -------------------------------------------------------------------------------


def chronological_rows(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The rows of a replay state (`ReplayStorage.get_state`) in the order they were added.

    A full buffer's oldest row sits at its cursor; a buffer that is not full holds
    its rows at positions ``0 .. size-1`` in order.
    """
    size, capacity, cursor = int(state["size"]), int(state["capacity"]), int(state["cursor"])
    rows = {name: np.asarray(state[name])[:size] for name in FIELDS}
    if size == capacity and cursor % capacity:
        order = np.roll(np.arange(size), -cursor)
        rows = {name: array[order] for name, array in rows.items()}
    return rows


def episode_segments(rows: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Episode segment of every row, and the row's step within it.

    The replay keeps no episode ids; a row starts a new segment when the row
    before it ended an episode (terminated or truncated) or its ``next_obs`` is
    not this row's ``obs`` (rows of several EnvRunners interleave in blocks).
    An episode may so span several segments, never the other way round.

    Returns:
        ``segment`` [T] (int64, from 0) and ``t`` [T] (int64, from 0 in each segment).
    """
    num_rows = len(rows[REWARD])
    if num_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    obs = rows[OBS].reshape(num_rows, -1)
    next_obs = rows[NEXT_OBS].reshape(num_rows, -1)
    ended = np.asarray(rows[TERMINATED], bool) | np.asarray(rows[TRUNCATED], bool)
    starts = np.ones(num_rows, dtype=bool)
    starts[1:] = ended[:-1] | (next_obs[:-1] != obs[1:]).any(axis=1)
    segment = np.cumsum(starts) - 1
    first_row = np.flatnonzero(starts)
    t = np.arange(num_rows) - first_row[segment]
    return segment.astype(np.int64), t.astype(np.int64)


@dataclass
class ExportSummary:
    """What `write_rows` wrote: ``files`` (paths), ``rows``, ``bytes`` on disk, units."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    actions: str = ENV_UNITS
    segments: int = 0


def _vectors(array: np.ndarray, dtype: Any) -> pa.FixedSizeListArray:
    array = np.ascontiguousarray(array, dtype=dtype)
    width = array.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), width)


def write_rows(
    rows: Mapping[str, np.ndarray],
    out_dir: str,
    bounds: ActionBounds,
    *,
    actions: str = ENV_UNITS,
    max_rows_per_file: int = DEFAULT_MAX_ROWS_PER_FILE,
    filesystem: pyarrow.fs.FileSystem | None = None,
    source: str | None = None,
    compression: str = "zstd",
) -> ExportSummary:
    """Writes replay rows (oldest first) as Parquet files in RLlib's offline columns.

    Args:
        rows: `FIELDS` -> arrays with leading dim T (actions in [-1, 1]).
        out_dir: A folder (local path or URI such as ``s3://bucket/prefix``); it
            must be empty or absent.
        bounds: The env's action bounds.
        actions: "env" (the env's units) or "normalized" (as stored, [-1, 1]).
        max_rows_per_file: Rows per file at most.
        filesystem: A pyarrow filesystem; None resolves ``out_dir`` (paths made absolute).
        source: Recorded in the files' metadata (e.g. the checkpoint's path).
        compression: Parquet compression codec.

    Returns:
        The files written, rows, bytes on disk.

    Raises:
        ValueError: bad arguments, or ``out_dir`` holds files already.
    """
    if actions not in ACTION_UNITS:
        raise ValueError(f"actions must be one of {ACTION_UNITS}, got {actions!r}.")
    if isinstance(max_rows_per_file, bool) or not int(max_rows_per_file) >= 1:
        raise ValueError(f"max_rows_per_file must be >= 1, got {max_rows_per_file!r}.")
    filesystem, root = resolve(out_dir, filesystem)
    info = filesystem.get_file_info(root)
    if info.type == pyarrow.fs.FileType.File:
        raise ValueError(f"{out_dir} is a file; give a folder to write the Parquet files into.")
    if info.type == pyarrow.fs.FileType.Directory and filesystem.get_file_info(
        pyarrow.fs.FileSelector(root, recursive=False)
    ):
        raise ValueError(
            f"{out_dir} is not empty: give a new or empty folder, so that no file of an "
            "earlier export is mixed into this one."
        )
    filesystem.create_dir(root, recursive=True)

    num_rows = len(rows[REWARD])
    action = np.asarray(rows[ACTION], dtype=np.float32).reshape(num_rows, -1)
    if action.shape[1] != bounds.low.shape[0]:
        raise ValueError(
            f"The rows hold {action.shape[1]} action dims, the bounds {bounds.low.shape[0]}."
        )
    if actions == ENV_UNITS:
        action_values, action_dtype = bounds.to_env(action), bounds.env_dtype
    else:
        action_values, action_dtype = action, np.dtype(np.float32)
    obs = np.asarray(rows[OBS], dtype=np.float32).reshape(num_rows, -1)
    next_obs = np.asarray(rows[NEXT_OBS], dtype=np.float32).reshape(num_rows, -1)
    segment, t = episode_segments(rows)
    prefix = uuid.uuid4().hex[:16]
    metadata = {
        "format_version": FORMAT_VERSION,
        "actions": actions,
        "action_low": bounds.low.tolist(),
        "action_high": bounds.high.tolist(),
        "obs_dim": int(obs.shape[1]),
        "action_dim": int(action.shape[1]),
        "source": source,
    }
    schema = pa.schema(
        [
            (EPS_ID, pa.string()),
            (AGENT_ID, pa.null()),
            (MODULE_ID, pa.null()),
            (OBS_COLUMN, pa.list_(pa.float32(), obs.shape[1])),
            (ACTIONS_COLUMN, pa.list_(pa.from_numpy_dtype(action_dtype), action.shape[1])),
            (REWARDS_COLUMN, pa.float64()),
            (NEW_OBS_COLUMN, pa.list_(pa.float32(), obs.shape[1])),
            (TERMINATEDS_COLUMN, pa.bool_()),
            (TRUNCATEDS_COLUMN, pa.bool_()),
            (T_COLUMN, pa.int64()),
        ],
        metadata={METADATA_KEY: json.dumps(metadata).encode()},
    )
    summary = ExportSummary(actions=actions, segments=int(segment[-1]) + 1 if num_rows else 0)
    step = int(max_rows_per_file)
    for part, start in enumerate(range(0, num_rows, step)):
        stop = min(start + step, num_rows)
        piece = slice(start, stop)
        eps_id = pa.array([f"{prefix}-{s}" for s in range(segment[start], segment[stop - 1] + 1)])
        table = pa.Table.from_arrays(
            [
                eps_id.take(pa.array(segment[piece] - segment[start])),
                pa.nulls(stop - start),
                pa.nulls(stop - start),
                _vectors(obs[piece], np.float32),
                _vectors(action_values[piece], action_dtype),
                pa.array(np.asarray(rows[REWARD][piece], dtype=np.float64)),
                _vectors(next_obs[piece], np.float32),
                pa.array(np.asarray(rows[TERMINATED][piece], dtype=bool)),
                pa.array(np.asarray(rows[TRUNCATED][piece], dtype=bool)),
                pa.array(t[piece]),
            ],
            schema=schema,
        )
        path = f"{root.rstrip('/')}/{PART_PREFIX}{part:06d}{SUFFIX}"
        _write_file(table, path, filesystem, compression)
        summary.files.append(path)
        summary.bytes += filesystem.get_file_info(path).size
        summary.rows += stop - start
    return summary


def _write_file(
    table: pa.Table, path: str, filesystem: pyarrow.fs.FileSystem, compression: str
) -> None:
    """One file; on a local disk under a hidden name first, renamed once complete."""
    local = isinstance(filesystem, pyarrow.fs.LocalFileSystem)
    directory, name = path.rsplit("/", 1)
    target = f"{directory}/.{name}.tmp-{os.getpid()}" if local else path
    pq.write_table(
        table,
        target,
        filesystem=filesystem,
        compression=compression,
        use_dictionary=[EPS_ID],
        row_group_size=DEFAULT_BATCH_ROWS,
    )
    if local:
        filesystem.move(target, path)


def resolve(
    path: str, filesystem: pyarrow.fs.FileSystem | None = None
) -> tuple[pyarrow.fs.FileSystem, str]:
    """(filesystem, path within it) of a local path or URI (local paths made absolute)."""
    path = os.fspath(path)
    if filesystem is not None:
        return filesystem, path
    if "://" not in path:
        return pyarrow.fs.LocalFileSystem(), os.path.abspath(path)
    return pyarrow.fs.FileSystem.from_uri(path)


# -- reading -------------------------------------------------------------------------------


def parquet_files(
    paths: str | Sequence[str], filesystem: pyarrow.fs.FileSystem | None = None
) -> tuple[pyarrow.fs.FileSystem, list[str]]:
    """The ``.parquet`` files of files or folders (searched recursively, hidden and
    ``_``-prefixed names skipped), sorted per folder.

    Raises:
        DatasetError: a path that does not exist, or no Parquet file at all.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[str] = []
    resolved_filesystem = filesystem
    for given in paths:
        resolved_filesystem, path = resolve(given, filesystem)
        info = resolved_filesystem.get_file_info(path)
        if info.type == pyarrow.fs.FileType.NotFound:
            raise DatasetError(f"Dataset {given}: no such file or folder.")
        if info.type == pyarrow.fs.FileType.File:
            files.append(path)
            continue
        found = resolved_filesystem.get_file_info(pyarrow.fs.FileSelector(path, recursive=True))
        relative = [
            entry.path
            for entry in found
            if entry.type == pyarrow.fs.FileType.File
            and entry.path.endswith(SUFFIX)
            and not any(
                part.startswith((".", "_"))
                for part in entry.path[len(path.rstrip("/")) + 1 :].split("/")
            )
        ]
        files.extend(sorted(relative))
    if not files:
        raise DatasetError(f"Dataset {paths}: no {SUFFIX} file found.")
    return resolved_filesystem, files


@dataclass
class ImportSummary:
    """What `read_into` did: rows read, added, dropped (and why the first), actions clipped."""

    files: int = 0
    rows_read: int = 0
    added: int = 0
    rejected: int = 0
    first_rejected: int | None = None
    reason: str | None = None
    actions_clipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def file_info(schema: pa.Schema) -> dict[str, Any] | None:
    """The `METADATA_KEY` document of a file written by `write_rows` (None for others)."""
    metadata = schema.metadata or {}
    if METADATA_KEY not in metadata:
        return None
    return json.loads(metadata[METADATA_KEY])


def iter_batches(
    paths: str | Sequence[str],
    obs_dim: int,
    bounds: ActionBounds,
    *,
    actions_normalized: bool = False,
    column_names: Mapping[str, str] | None = None,
    decode: Callable[[Any], Any] | None = None,
    filesystem: pyarrow.fs.FileSystem | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Streams a Parquet dataset as replay batches, ``batch_rows`` rows at a time.

    Args:
        paths: Files or folders (local paths or URIs).
        obs_dim: S; ``obs`` and ``new_obs`` must hold S values per row.
        bounds: The env's action bounds (A from their shape).
        actions_normalized: Units of the actions of files without `METADATA_KEY`
            (RLlib's recordings): True for [-1, 1], False for the env's units.
        column_names: RLlib's column name -> the dataset's (``input_read_schema``).
        decode: Turns a string/binary cell into an array (RLlib's compressed
            columns); None rejects such columns.
        filesystem: A pyarrow filesystem for all paths (None: from each path).
        batch_rows: Rows per batch (memory per batch).

    Yields:
        (batch of `FIELDS` -> arrays with actions in [-1, 1], actions clipped to it).

    Raises:
        DatasetError: a missing column, or a column whose rows do not hold the
            expected number of values (the message names file, column and shape).
    """
    names = {column: column for column in COLUMN_OF_FIELD.values()}
    names.update(column_names or {})
    action_dim = int(bounds.low.shape[0])
    filesystem, files = parquet_files(paths, filesystem)
    for path in files:
        with filesystem.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            schema = parquet.schema_arrow
            info = file_info(schema)
            normalized = actions_normalized if info is None else info["actions"] == NORMALIZED
            columns = _columns_to_read(schema, names, path)
            for record_batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
                batch, clipped = _to_fields(
                    record_batch, names, obs_dim, action_dim, bounds, normalized, decode, path
                )
                yield batch, clipped


def _columns_to_read(schema: pa.Schema, names: Mapping[str, str], path: str) -> list[str]:
    present = set(schema.names)
    if names[TERMINATEDS_COLUMN] not in present and DONES_COLUMN in present:
        names = {**names, TERMINATEDS_COLUMN: DONES_COLUMN}
    required = [OBS_COLUMN, ACTIONS_COLUMN, REWARDS_COLUMN, NEW_OBS_COLUMN, TERMINATEDS_COLUMN]
    missing = [names[column] for column in required if names[column] not in present]
    if missing:
        raise DatasetError(
            f"{path} lacks the column(s) {missing} (it has {sorted(present)}): DRIVE reads "
            f"one transition per row with the columns {required} (truncateds optional) of "
            "RLlib's offline schema; map other names with "
            "config.offline_data(input_read_schema={...})."
        )
    columns = [names[column] for column in required]
    if names[TRUNCATEDS_COLUMN] in present:
        columns.append(names[TRUNCATEDS_COLUMN])
    return columns


def _to_fields(
    record_batch: pa.RecordBatch,
    names: Mapping[str, str],
    obs_dim: int,
    action_dim: int,
    bounds: ActionBounds,
    normalized: bool,
    decode: Callable[[Any], Any] | None,
    path: str,
) -> tuple[dict[str, np.ndarray], int]:
    present = set(record_batch.schema.names)
    terminated_name = (
        names[TERMINATEDS_COLUMN] if names[TERMINATEDS_COLUMN] in present else DONES_COLUMN
    )
    num_rows = record_batch.num_rows

    def column(name: str) -> pa.Array:
        return record_batch.column(record_batch.schema.get_field_index(name))

    obs = _matrix(
        column(names[OBS_COLUMN]), obs_dim, names[OBS_COLUMN], "observation", decode, path
    )
    next_obs = _matrix(
        column(names[NEW_OBS_COLUMN]), obs_dim, names[NEW_OBS_COLUMN], "observation", decode, path
    )
    action = _matrix(
        column(names[ACTIONS_COLUMN]), action_dim, names[ACTIONS_COLUMN], "action", decode, path
    )
    if not normalized:
        action = bounds.to_normalized(action)
    with np.errstate(invalid="ignore"):
        outside = (np.abs(action) > 1 + ACTION_TOLERANCE).any(axis=1)
    action = np.clip(action, -1.0, 1.0)  # NaN stays NaN: the replay drops that row
    truncated_name = names[TRUNCATEDS_COLUMN]
    batch = {
        OBS: obs,
        ACTION: action.astype(np.float32),
        REWARD: _scalars(column(names[REWARDS_COLUMN]), names[REWARDS_COLUMN], np.float32, path),
        NEXT_OBS: next_obs,
        TERMINATED: _scalars(column(terminated_name), terminated_name, bool, path),
        TRUNCATED: (
            _scalars(column(truncated_name), truncated_name, bool, path)
            if truncated_name in present
            else np.zeros(num_rows, dtype=bool)
        ),
    }
    return batch, int(outside.sum())


def _scalars(array: pa.Array, name: str, dtype: Any, path: str) -> np.ndarray:
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    if (
        pa.types.is_list(array.type)
        or pa.types.is_large_list(array.type)
        or (pa.types.is_fixed_size_list(array.type))
    ):
        lengths = pc.list_value_length(array)
        if array.null_count or pc.min(lengths).as_py() != 1 or pc.max(lengths).as_py() != 1:
            raise DatasetError(
                f"{path}: column {name!r} must hold one value per row (shape ()), got lists."
            )
        array = array.flatten()
    if array.null_count:
        raise DatasetError(f"{path}: column {name!r} has {array.null_count} null row(s).")
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)) and not (
        pa.types.is_boolean(array.type)
    ):
        raise DatasetError(
            f"{path}: column {name!r} has type {array.type}; expected numbers of shape ()."
        )
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=dtype)


def _matrix(
    array: pa.Array,
    width: int,
    name: str,
    what: str,
    decode: Callable[[Any], Any] | None,
    path: str,
) -> np.ndarray:
    """[T, width] float arrays of a list, fixed-size list, tensor or compressed column."""
    num_rows = len(array)
    expected = f"({width},), the env's {what} shape"
    if isinstance(array.type, pa.ExtensionType):  # e.g. ray.data's tensor columns
        array = array.storage
    if array.null_count:
        raise DatasetError(f"{path}: column {name!r} has {array.null_count} null row(s).")
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        if decode is None:
            raise DatasetError(
                f"{path}: column {name!r} holds compressed strings, and no decoder was given."
            )
        rows = [np.asarray(decode(cell), dtype=np.float32) for cell in array.to_pylist()]
        wrong = [row.shape for row in rows if row.size != width]
        if wrong:
            raise DatasetError(
                f"{path}: column {name!r} has rows of shape {wrong[0]}; expected {expected}."
            )
        return np.stack(rows).reshape(num_rows, width) if rows else np.zeros((0, width))
    if pa.types.is_fixed_size_list(kind):
        if kind.list_size != width:
            raise DatasetError(
                f"{path}: column {name!r} has rows of shape ({kind.list_size},); "
                f"expected {expected}."
            )
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.list_value_length(array)
        if num_rows and (pc.min(lengths).as_py() != width or pc.max(lengths).as_py() != width):
            bad = pc.index(pc.not_equal(lengths, width), True).as_py()
            raise DatasetError(
                f"{path}: column {name!r} row {bad} has shape ({lengths[bad].as_py()},); "
                f"expected {expected}."
            )
    elif width == 1 and (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, 1)
    else:
        raise DatasetError(
            f"{path}: column {name!r} has type {kind}; expected lists of floats of shape "
            f"{expected}."
        )
    values = array.flatten()
    if values.null_count:
        raise DatasetError(f"{path}: column {name!r} has null entries.")
    if pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type):
        raise DatasetError(f"{path}: column {name!r} holds nested lists; expected {expected}.")
    return np.asarray(values.to_numpy(zero_copy_only=False)).reshape(num_rows, width)


def read_into(
    push: Callable[[dict[str, np.ndarray]], Mapping[str, Any]],
    paths: str | Sequence[str],
    obs_dim: int,
    bounds: ActionBounds,
    **options: Any,
) -> ImportSummary:
    """Pushes every row of a dataset through ``push`` (e.g. `ReplayStorage.add_valid_rows`).

    Rows are checked as the replay checks live rows: ``push`` drops and counts
    rows with NaN/inf or too large values; a wrong shape or a missing column
    raises `DatasetError` (the caller restores what it held before: see
    `drive_rllib.algorithm.offline`).

    Args:
        push: Takes one batch, returns ``added``, ``rejected``, ``first_rejected``,
            ``reason`` as `ReplayStorage.add_valid_rows` does.
        paths, obs_dim, bounds, options: As for `iter_batches`.
    """
    summary = ImportSummary()
    _, files = parquet_files(paths, options.get("filesystem"))
    summary.files = len(files)
    for batch, clipped in iter_batches(paths, obs_dim, bounds, **options):
        if not len(batch[REWARD]):
            continue
        result = push(batch)
        if result["rejected"] and summary.first_rejected is None:
            summary.first_rejected = summary.rows_read + int(result["first_rejected"])
            summary.reason = result["reason"]
        summary.rows_read += len(batch[REWARD])
        summary.added += int(result["added"])
        summary.rejected += int(result["rejected"])
        summary.actions_clipped += clipped
    return summary
