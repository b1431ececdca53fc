"""Ring-buffer storage of flat transitions in preallocated numpy arrays.

Numpy only: no Ray, no torch. The Ray actor in `drive_rllib.replay.actor` is a
thin shell around `ReplayStorage`; everything here is testable in plain Python.

Shapes use one alphabet: `C` capacity, `T` rows in one `add` call, `B` batch
size of one `sample` call, `S` observation dim, `A` action dim.

Rows are stored at positions `0 .. C-1` in arrival order; once the buffer is
full the oldest row is overwritten. Positions are assigned to a split once and
for all: position `p` is *holdout* iff `p % k == k - 1` with
`k = holdout_every` (`k = 0` disables the holdout split), otherwise *train*.
A row overwriting position `p` therefore inherits its split, so a holdout row
is never trained on, however often the buffer wraps. Stored positions are
always `0 .. size-1`, which lets `sample` map a uniform index within a split
to a position in closed form (no rejection loop).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

OBS = "obs"
ACTION = "action"
REWARD = "reward"
NEXT_OBS = "next_obs"
TERMINATED = "terminated"
TRUNCATED = "truncated"
#: The keys of a batch passed to `ReplayStorage.add` and returned by `sample`.
FIELDS: tuple[str, ...] = (OBS, ACTION, REWARD, NEXT_OBS, TERMINATED, TRUNCATED)
# Float fields must be finite; a NaN that enters the buffer poisons every
# model trained on it long after the step that produced it.
_FLOAT_FIELDS: tuple[str, ...] = (OBS, ACTION, REWARD, NEXT_OBS)
# The magnitude bound of each float field: which constructor argument holds it.
_BOUND_OF_FIELD: dict[str, str] = {
    OBS: "max_abs_obs",
    NEXT_OBS: "max_abs_obs",
    REWARD: "max_abs_reward",
    ACTION: "max_abs_action",
}

TRAIN = "train"
HOLDOUT = "holdout"
ALL = "all"
SPLITS: tuple[str, ...] = (TRAIN, HOLDOUT, ALL)

_FORMAT_VERSION = 1
#: `save` writes ``<path><TEMPORARY_MARK><pid>`` first, then renames it to ``<path>``.
TEMPORARY_MARK = ".tmp-"
_SCALAR_STATE_KEYS: tuple[str, ...] = (
    "capacity",
    "obs_dim",
    "action_dim",
    "holdout_every",
    "size",
    "cursor",
    "total_added",
)
#: Counters written by newer versions only (0 when an older file lacks them).
_OPTIONAL_STATE_KEYS: tuple[str, ...] = ("rows_rejected",)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Flushes a directory's entries (new names, renames) to disk; a no-op where the OS
    cannot open directories (Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")


def split_count(size: int, split: str, holdout_every: int) -> int:
    """Number of positions of `split` among positions `0 .. size-1`.

    Args:
        size: Number of stored rows (positions `0 .. size-1` are filled).
        split: "train", "holdout" or "all".
        holdout_every: `k`; position `p` is holdout iff `p % k == k - 1`. 0
            disables the holdout split.

    Returns:
        The count of positions in `[0, size)` belonging to `split`.
    """
    _check_split(split)
    num_holdout = size // holdout_every if holdout_every > 0 else 0
    if split == HOLDOUT:
        return num_holdout
    if split == TRAIN:
        return size - num_holdout
    return size


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def split_index_to_position(index: np.ndarray, split: str, holdout_every: int) -> np.ndarray:
    """Maps the `j`-th position of a split to its position in the buffer.

    With `k = holdout_every >= 2`, the train positions are all `p` with
    `p % k != k - 1`: blocks of `k - 1` train positions separated by one
    holdout position, so train index `j` sits at `(j // (k-1)) * k + j % (k-1)`
    and holdout index `j` at `j * k + k - 1`. Both maps are increasing, so
    indices `0 .. split_count(size, split, k) - 1` cover exactly the positions
    of that split below `size`.

    Args:
        index: Integer array of indices within the split.
        split: "train", "holdout" or "all".
        holdout_every: `k` as in `split_count`.

    Returns:
        Integer array of buffer positions, same shape as `index`.
    """
    _check_split(split)
    index = np.asarray(index, dtype=np.int64)
    k = holdout_every
    if split == ALL or (split == TRAIN and k == 0):
        return index
    if split == HOLDOUT:
        if k == 0:
            raise ValueError("The holdout split is empty with holdout_every=0.")
        return index * k + (k - 1)
    return (index // (k - 1)) * k + index % (k - 1)


def row_layout(obs_dim: int, action_dim: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Each field's shape within one row and its dtype: what `ReplayStorage` allocates
    ``capacity`` times."""
    return {
        OBS: ((obs_dim,), np.float32),
        ACTION: ((action_dim,), np.float32),
        REWARD: ((), np.float32),
        NEXT_OBS: ((obs_dim,), np.float32),
        TERMINATED: ((), np.bool_),
        TRUNCATED: ((), np.bool_),
    }


def row_bytes(obs_dim: int, action_dim: int) -> int:
    """Bytes of one stored row (all fields): 4 (2 S + A + 1) + 2."""
    return sum(
        math.prod(shape) * np.dtype(dtype).itemsize
        for shape, dtype in row_layout(obs_dim, action_dim).values()
    )


class ReplayStorage:
    """Fixed-capacity ring buffer of transitions with a train/holdout split.

    Holds `obs` [C, S], `action` [C, A] (module space), `reward` [C],
    `next_obs` [C, S] (float32) and `terminated` [C], `truncated` [C] (bool),
    all preallocated. Not thread-safe: the Ray actor serialises calls.

    Args:
        capacity: Maximum number of stored transitions `C`; the oldest are
            overwritten beyond it.
        obs_dim: Observation dim `S`.
        action_dim: Action dim `A`.
        holdout_every: `k`: every `k`-th position (`p % k == k - 1`) is held
            out from training, e.g. for model validation. 0 disables the
            holdout split; 1 would hold out everything and is rejected.
        seed: Seed of the sampling generator; None draws fresh entropy.
        max_abs_obs: `add_valid_rows` drops rows whose `obs` or `next_obs`
            has an entry beyond this magnitude (None: no bound, only finiteness).
        max_abs_reward: the same bound for `reward`.
        max_abs_action: the same bound for `action`.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        action_dim: int,
        holdout_every: int = 10,
        seed: int | None = None,
        max_abs_obs: float | None = None,
        max_abs_reward: float | None = None,
        max_abs_action: float | None = None,
    ) -> None:
        for name, value in (
            ("capacity", capacity),
            ("obs_dim", obs_dim),
            ("action_dim", action_dim),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if (
            isinstance(holdout_every, bool)
            or not isinstance(holdout_every, (int, np.integer))
            or holdout_every < 0
            or holdout_every == 1
        ):
            raise ValueError(
                f"holdout_every must be 0 (no holdout split) or an int >= 2 (hold out "
                f"every k-th transition), got {holdout_every!r}."
            )
        bounds = {
            "max_abs_obs": max_abs_obs,
            "max_abs_reward": max_abs_reward,
            "max_abs_action": max_abs_action,
        }
        for name, bound in bounds.items():
            if bound is not None and (
                isinstance(bound, bool)
                or not isinstance(bound, (int, float, np.floating, np.integer))
                or not bound > 0
            ):
                raise ValueError(f"{name} must be None or a positive number, got {bound!r}.")
        self._bounds = {
            name: None if bound is None else float(bound) for name, bound in bounds.items()
        }
        self._capacity = int(capacity)
        self._obs_dim = int(obs_dim)
        self._action_dim = int(action_dim)
        self._holdout_every = int(holdout_every)
        self._rng = np.random.default_rng(seed)
        self._arrays: dict[str, np.ndarray] = {
            name: np.zeros((capacity, *shape), dtype=dtype)
            for name, (shape, dtype) in row_layout(obs_dim, action_dim).items()
        }
        self._size = 0
        self._cursor = 0  # Position the next row is written to.
        self._total_added = 0
        self._rows_rejected = 0

    # ------------------------------------------------------------------ info
    @property
    def capacity(self) -> int:
        """Maximum number of stored transitions `C`."""
        return self._capacity

    @property
    def size(self) -> int:
        """Number of stored transitions (at most `capacity`)."""
        return self._size

    @property
    def total_added(self) -> int:
        """Number of transitions added over the storage's lifetime."""
        return self._total_added

    @property
    def rows_rejected(self) -> int:
        """Rows `add_valid_rows` dropped over the storage's lifetime."""
        return self._rows_rejected

    @property
    def obs_dim(self) -> int:
        """Observation dim `S`."""
        return self._obs_dim

    @property
    def action_dim(self) -> int:
        """Action dim `A`."""
        return self._action_dim

    @property
    def holdout_every(self) -> int:
        """`k`: position `p` is holdout iff `p % k == k - 1`; 0 means no holdout."""
        return self._holdout_every

    def num_rows(self, split: str = ALL) -> int:
        """Number of stored transitions in `split` ("train", "holdout" or "all")."""
        return split_count(self._size, split, self._holdout_every)

    def _shapes(self, num_rows: int) -> dict[str, tuple[int, ...]]:
        return {name: (num_rows, *array.shape[1:]) for name, array in self._arrays.items()}

    # ------------------------------------------------------------------- add
    def add(self, batch: Mapping[str, np.ndarray]) -> int:
        """Adds `T` transitions at once, overwriting the oldest when full.

        Rows are written as if added one by one: row `i` goes to position
        `(cursor + i) % C`, so for `T > C` only the last `C` rows are kept.
        Inputs are copied (arrays from Ray's object store are read-only). The
        batch is validated as a whole before anything is written: a rejected
        batch leaves the storage unchanged.

        Args:
            batch: Exactly the keys `FIELDS`: `obs` [T, S], `action` [T, A],
                `reward` [T], `next_obs` [T, S], `terminated` [T],
                `truncated` [T]. Float fields must be finite.

        Returns:
            The number of transitions added, `T`.

        Raises:
            TypeError: If `batch` is not a mapping.
            ValueError: On missing or unexpected keys, wrong shapes, or NaN/inf
                in a float field.
        """
        return self._write(self._validate_batch(batch))

    def add_valid_rows(self, batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Adds the rows of a batch that pass the row checks; drops and counts the others.

        A row is dropped when one of its float fields holds NaN or inf, or an
        entry beyond the storage's magnitude bound (``max_abs_obs`` for `obs`
        and `next_obs`, ``max_abs_reward``, ``max_abs_action``). The other
        rows of the batch are stored, in order, as `add` would store them. A
        malformed batch (keys, shapes, dtypes) still raises: that is a bug of
        the caller, not bad data.

        Args:
            batch: As for `add`.

        Returns:
            ``added`` (rows stored), ``rejected`` (rows dropped), and for the
            first dropped row ``first_rejected`` (its index in the batch) and
            ``reason`` (e.g. "reward is NaN or inf"); those two are None when
            nothing was dropped.

        Raises:
            TypeError, ValueError: a malformed batch, as for `add`.
        """
        arrays = self._validate_batch(batch, check_finite=False)
        num_rows = len(arrays[REWARD])
        bad = np.zeros(num_rows, dtype=bool)
        reasons: dict[int, str] = {}
        for name in _FLOAT_FIELDS:
            values = arrays[name].reshape(num_rows, -1)
            bound = self._bounds[_BOUND_OF_FIELD[name]]
            with np.errstate(invalid="ignore"):
                not_finite = ~np.isfinite(values).all(axis=1)
                too_large = (
                    np.zeros(num_rows, dtype=bool)
                    if bound is None
                    else (np.abs(values) > bound).any(axis=1) & ~not_finite
                )
            exceeds = "" if bound is None else f"exceeds {bound:g}"
            for mask, why in ((not_finite, "is NaN or inf"), (too_large, exceeds)):
                first = np.flatnonzero(mask & ~bad)
                if len(first):
                    reasons.setdefault(int(first[0]), f"{name} {why}")
                bad |= mask
        num_bad = int(bad.sum())
        if num_bad:
            arrays = {name: array[~bad] for name, array in arrays.items()}
            self._rows_rejected += num_bad
        added = self._write(arrays)
        first_rejected = min(reasons) if reasons else None
        return {
            "added": added,
            "rejected": num_bad,
            "first_rejected": first_rejected,
            "reason": None if first_rejected is None else reasons[first_rejected],
        }

    def _write(self, arrays: dict[str, np.ndarray]) -> int:
        num_rows = len(arrays[REWARD])
        if num_rows == 0:
            return 0
        kept = min(num_rows, self._capacity)
        # Rows that would be overwritten within this same batch are skipped;
        # the survivors land where sequential adds would have put them.
        start = (self._cursor + num_rows - kept) % self._capacity
        first = min(kept, self._capacity - start)
        for name, array in arrays.items():
            source = array[num_rows - kept :]
            target = self._arrays[name]
            target[start : start + first] = source[:first]
            if kept > first:
                target[: kept - first] = source[first:]
        self._cursor = (self._cursor + num_rows) % self._capacity
        self._size = min(self._size + num_rows, self._capacity)
        self._total_added += num_rows
        return num_rows

    def _validate_batch(
        self, batch: Mapping[str, np.ndarray], check_finite: bool = True
    ) -> dict[str, np.ndarray]:
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"batch must be a dict with keys {list(FIELDS)}, got {type(batch).__name__}."
            )
        missing = [name for name in FIELDS if name not in batch]
        unexpected = sorted(str(name) for name in batch if name not in FIELDS)
        if missing or unexpected:
            raise ValueError(
                f"batch must have exactly the keys {list(FIELDS)}; missing {missing}, "
                f"unexpected {unexpected}."
            )
        arrays: dict[str, np.ndarray] = {}
        try:
            for name in FIELDS:
                dtype = self._arrays[name].dtype
                # asarray avoids a copy when the dtype already matches; the
                # slice assignment in `add` is the copy into the buffer.
                arrays[name] = np.asarray(batch[name], dtype=dtype)
        except (TypeError, ValueError) as error:
            raise ValueError(f"batch[{name!r}] is not convertible to {dtype}: {error}") from error
        num_rows = arrays[REWARD].shape[0] if arrays[REWARD].ndim == 1 else -1
        expected = self._shapes(max(num_rows, 0))
        wrong = {
            name: array.shape
            for name, array in arrays.items()
            if num_rows < 0 or array.shape != expected[name]
        }
        if wrong:
            shape_doc = {name: ("T", *shape[1:]) for name, shape in self._shapes(0).items()}
            raise ValueError(
                f"batch shapes must be {shape_doc} with S={self._obs_dim}, "
                f"A={self._action_dim} and one T for all keys; got {wrong} "
                f"(T taken from 'reward' = {num_rows if num_rows >= 0 else 'not 1-D'})."
            )
        for name in _FLOAT_FIELDS if check_finite else ():
            finite = np.isfinite(arrays[name])
            if not finite.all():
                bad_rows = np.flatnonzero(~finite.reshape(num_rows, -1).all(axis=1))
                raise ValueError(
                    f"batch[{name!r}] has NaN or inf in {len(bad_rows)} of {num_rows} rows "
                    f"(first rows: {bad_rows[:5].tolist()}); the whole batch was rejected and "
                    f"the stored data is unchanged. Fix or drop those transitions at the source."
                )
        return arrays

    # ---------------------------------------------------------------- sample
    def sample(self, batch_size: int, split: str = TRAIN) -> dict[str, np.ndarray]:
        """Samples `B` transitions uniformly, with replacement, from one split.

        Args:
            batch_size: `B`, a positive int.
            split: "train", "holdout" or "all".

        Returns:
            A dict with the keys `FIELDS` of freshly allocated arrays with
            leading dim `B`.

        Raises:
            ValueError: On a bad `batch_size` or `split`, or if the split holds
                no transition yet.
        """
        _check_positive_int("batch_size", batch_size)
        count = self.num_rows(split)
        if count == 0:
            hint = (
                " (holdout_every=0 disables the holdout split)"
                if split == HOLDOUT and self._holdout_every == 0
                else ""
            )
            raise ValueError(
                f"Cannot sample from the {split!r} split: it holds no transitions{hint}; "
                f"{self._size} stored in total. Add data before sampling."
            )
        index = self._rng.integers(0, count, size=int(batch_size))
        positions = split_index_to_position(index, split, self._holdout_every)
        # np.take copies (callers may keep or modify the rows) and, on rows of a 2-D array,
        # is several times faster than fancy indexing.
        return {name: np.take(array, positions, axis=0) for name, array in self._arrays.items()}

    def sample_recent(self, batch_size: int, window: int) -> dict[str, np.ndarray]:
        """Samples `B` transitions uniformly, with replacement, from the last ``window``
        rows written (all of them while fewer are stored), holdout rows included: the
        states the current policy visits, as opposed to `sample`'s whole history.

        Raises:
            ValueError: On a bad `batch_size` or `window`, or if nothing is stored yet.
        """
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("window", window)
        if self._size == 0:
            raise ValueError("Cannot sample recent rows: the replay holds none yet.")
        back = self._rng.integers(1, min(int(window), self._size) + 1, size=int(batch_size))
        positions = (self._cursor - back) % self._capacity
        return {name: np.take(array, positions, axis=0) for name, array in self._arrays.items()}

    # ----------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        """Summary of the stored data, for logging.

        Returns:
            `size`, `capacity`, `total_added`, `num_train`, `num_holdout`,
            `reward_mean`, `reward_std` (floats) and `obs_mean`, `obs_std`
            (lists of `S` floats). Means and stds are NaN while empty.
        """
        size = self._size
        result: dict[str, Any] = {
            "size": size,
            "capacity": self._capacity,
            "total_added": self._total_added,
            "num_train": self.num_rows(TRAIN),
            "num_holdout": self.num_rows(HOLDOUT),
        }
        if size == 0:
            nan = float("nan")
            result.update(
                reward_mean=nan,
                reward_std=nan,
                obs_mean=[nan] * self._obs_dim,
                obs_std=[nan] * self._obs_dim,
            )
            return result
        reward = self._arrays[REWARD][:size]
        obs = self._arrays[OBS][:size]
        result.update(
            reward_mean=float(reward.mean(dtype=np.float64)),
            reward_std=float(reward.std(dtype=np.float64)),
            obs_mean=obs.mean(axis=0, dtype=np.float64).tolist(),
            obs_std=obs.std(axis=0, dtype=np.float64).tolist(),
        )
        return result

    # ----------------------------------------------------------- persistence
    def get_state(self) -> dict[str, Any]:
        """Returns the stored rows, cursor, counters and sampler state.

        Only the filled rows `0 .. size-1` are included (copies), so a
        partly filled large buffer stays cheap to save.

        Returns:
            A dict of the arrays `FIELDS` (leading dim `size`), the ints
            `capacity`, `obs_dim`, `action_dim`, `holdout_every`, `size`,
            `cursor`, `total_added`, `rows_rejected`, and `rng_state` (the numpy bit generator
            state, a plain dict).
        """
        state: dict[str, Any] = {
            name: array[: self._size].copy() for name, array in self._arrays.items()
        }
        state.update(
            capacity=self._capacity,
            obs_dim=self._obs_dim,
            action_dim=self._action_dim,
            holdout_every=self._holdout_every,
            size=self._size,
            cursor=self._cursor,
            total_added=self._total_added,
            rows_rejected=self._rows_rejected,
            rng_state=self._rng.bit_generator.state,
        )
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restores a state from `get_state`, replacing all current contents.

        The storage needs the same `obs_dim`, `action_dim` and
        `holdout_every`, and a capacity of at least the state's `size`. Every
        row keeps its position, hence its train/holdout split. With the same
        capacity the round trip is exact. With a larger capacity, writing
        continues at the first free position; if the saved buffer had wrapped,
        eviction after the next wrap is then not strictly oldest-first for one
        pass (the price of keeping every row's split).

        Args:
            state: A dict as returned by `get_state`.

        Raises:
            ValueError: If the state is malformed or does not fit this storage.
                Nothing is changed then.
        """
        missing = [key for key in (*FIELDS, *_SCALAR_STATE_KEYS, "rng_state") if key not in state]
        if missing:
            raise ValueError(f"Replay state is missing keys {missing}; pass a get_state() dict.")
        scalars = {key: int(state[key]) for key in _SCALAR_STATE_KEYS}
        for key in ("obs_dim", "action_dim", "holdout_every"):
            if scalars[key] != getattr(self, key):
                raise ValueError(
                    f"Replay state has {key}={scalars[key]} but this storage has "
                    f"{key}={getattr(self, key)}; create the storage with {key}={scalars[key]}"
                    + (
                        " so every row keeps its train/holdout split."
                        if key == "holdout_every"
                        else "."
                    )
                )
        size = scalars["size"]
        if size > self._capacity:
            raise ValueError(
                f"Replay state holds {size} transitions but this storage's capacity is "
                f"{self._capacity}; create the storage with capacity >= {size}."
            )
        if not 0 <= scalars["cursor"] < max(scalars["capacity"], 1) or size > scalars["capacity"]:
            raise ValueError(
                f"Replay state is inconsistent: size={size}, cursor={scalars['cursor']}, "
                f"capacity={scalars['capacity']}."
            )
        arrays = {name: np.asarray(state[name]) for name in FIELDS}
        expected = self._shapes(size)
        wrong = {n: a.shape for n, a in arrays.items() if a.shape != expected[n]}
        if wrong:
            raise ValueError(f"Replay state arrays must have shapes {expected}, got {wrong}.")
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state["rng_state"]
        except (TypeError, ValueError, KeyError) as error:
            raise ValueError(f"Replay state has an invalid rng_state: {error}") from error

        for name, array in arrays.items():
            self._arrays[name][:size] = array
            self._arrays[name][size:] = 0
        self._size = size
        # A full buffer keeps its cursor; otherwise positions 0 .. size-1 are
        # filled and writing continues right after them.
        self._cursor = scalars["cursor"] % self._capacity if size == self._capacity else size
        self._total_added = scalars["total_added"]
        self._rows_rejected = int(state.get("rows_rejected", 0))
        self._rng = rng

    def save(self, path: str | os.PathLike[str]) -> str:
        """Writes `get_state()` to one `.npz` file (no pickle), atomically.

        Args:
            path: Target file; `.npz` is appended if missing. Parent
                directories are created.

        Returns:
            The path written.
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        state = self.get_state()
        # The 128-bit generator state does not fit an integer array: store JSON.
        state["rng_state"] = np.array(json.dumps(state["rng_state"]))
        state["format_version"] = _FORMAT_VERSION
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        temporary = f"{path}{TEMPORARY_MARK}{os.getpid()}"
        try:
            with open(temporary, "wb") as file:
                np.savez(file, **state)
                # Durable before it is visible: a crash after the rename must not
                # leave a file whose blocks never reached the disk.
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
            fsync_directory(directory)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return path

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restores contents saved by `save` (see `set_state` for the rules).

        Args:
            path: A file written by `save`; `.npz` is appended if missing.
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format_version"]) if "format_version" in data else None
            if version != _FORMAT_VERSION:
                raise ValueError(
                    f"{path} has replay format version {version}; this code reads "
                    f"version {_FORMAT_VERSION}."
                )
            state: dict[str, Any] = {key: data[key] for key in data.files}
        state["rng_state"] = json.loads(str(state["rng_state"]))
        self.set_state(state)
