"""`rllib plot RUN_DIR`: return vs env steps of every trial under RUN_DIR, seeds
aggregated, and the value distribution's calibration from `rllib evaluate`'s files.

Trials whose ``params.json`` are equal once ``seed`` is removed are one
configuration: its line is the mean over seeds, its band the min-max. Each
``evaluation.json`` under RUN_DIR adds its episodes to a second panel:
predicted mean ± sigma of p_psi(U | s0, a0) against the discounted return
obtained. Reading is plain Python and numpy; only drawing needs matplotlib
(the optional ``plot`` extra).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drive_rllib import keys
from drive_rllib.cli.experiments import CLIError
from drive_rllib.cli.results import (
    EVALUATION_FILE,
    EVALUATION_GLOB,
    find_trials,
    read_params,
    read_rows,
)

#: File written when --out is not given, inside RUN_DIR.
DEFAULT_OUT = "drive_plot.png"
INSTALL_HINT = (
    "rllib plot needs matplotlib: pip install 'drive-rllib[plot]' (or pip install matplotlib)"
)


@dataclass
class Curve:
    """Return vs env steps of one trial."""

    trial: str
    params: dict[str, Any]
    env_steps: np.ndarray
    returns: np.ndarray


@dataclass
class ConfigCurves:
    """The trials of one configuration (equal params but for the seed)."""

    label: str
    curves: list[Curve] = field(default_factory=list)

    def aggregate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(env steps, mean, min, max) over seeds, each seed interpolated onto the union
        of all env steps within its own range (no extrapolation)."""
        steps = np.unique(np.concatenate([curve.env_steps for curve in self.curves]))
        stacked = np.full((len(self.curves), len(steps)), np.nan)
        for row, curve in enumerate(self.curves):
            inside = (steps >= curve.env_steps[0]) & (steps <= curve.env_steps[-1])
            stacked[row, inside] = np.interp(steps[inside], curve.env_steps, curve.returns)
        counted = ~np.isnan(stacked).all(axis=0)
        stacked = stacked[:, counted]
        with np.errstate(invalid="ignore"):
            return (
                steps[counted],
                np.nanmean(stacked, 0),
                np.nanmin(stacked, 0),
                np.nanmax(stacked, 0),
            )


def read_curve(trial_dir: str) -> Curve | None:
    """The return curve of a trial folder (None when no episode finished). Read from
    result.json, which, unlike progress.csv, keeps keys that first appear after the
    first iteration (see `drive_rllib.cli.results`)."""
    steps, returns = [], []
    for row in read_rows(trial_dir, (keys.ENV_STEPS, keys.RETURN)):
        if row[keys.ENV_STEPS] is not None and row[keys.RETURN] is not None:
            steps.append(row[keys.ENV_STEPS])
            returns.append(row[keys.RETURN])
    if not steps:
        return None
    order = np.argsort(steps, kind="stable")
    return Curve(
        os.path.basename(trial_dir),
        read_params(trial_dir),
        np.asarray(steps)[order],
        np.asarray(returns)[order],
    )


def group_by_config(curves: list[Curve]) -> list[ConfigCurves]:
    """Curves grouped by their params without ``seed``; labels name what differs."""
    groups: dict[str, list[Curve]] = {}
    for curve in curves:
        key = json.dumps(
            {k: v for k, v in curve.params.items() if k != "seed"}, sort_keys=True, default=str
        )
        groups.setdefault(key, []).append(curve)
    configs = [json.loads(key) for key in groups]
    varying = sorted(
        {
            k
            for config in configs
            for k in config
            if any(other.get(k) != config.get(k) for other in configs)
        }
    )
    result = []
    for config, members in zip(configs, groups.values()):
        label = ", ".join(f"{k}={config.get(k)}" for k in varying) or str(
            config.get("env", "DRIVE")
        )
        result.append(
            ConfigCurves(f"{label} ({len(members)} seed{'s' if len(members) > 1 else ''})", members)
        )
    return result


def read_evaluations(run_dir: str) -> list[dict[str, Any]]:
    """Every evaluation file (evaluation*.json) under ``run_dir`` (the folder itself
    included), oldest name first."""
    documents = []
    for folder, _, files in sorted(os.walk(run_dir)):
        for name in sorted(fnmatch.filter(files, EVALUATION_GLOB)):
            with open(os.path.join(folder, name), encoding="utf-8") as file:
                document = json.load(file)
            document.setdefault(FILE_KEY, name)
            documents.append(document)
    return documents


#: Where `read_evaluations` notes the file name of each document.
FILE_KEY = "_file"


def evaluation_labels(documents: list[dict[str, Any]]) -> list[str]:
    """One legend entry per evaluation: ``checkpoint_000003 (5 episodes)``, and where two
    evaluations would share it (one checkpoint evaluated twice), what tells them apart:
    the acting (risk K), the seeds, and as the last resort the file name."""

    def base(document: dict[str, Any]) -> str:
        name = os.path.basename(str(document.get("checkpoint", "?")).rstrip("/"))
        return f"{name} ({len(document.get('per_episode', []))} episodes"

    def details(document: dict[str, Any]) -> list[str]:
        parts = []
        acting = document.get("acting") or {}
        if acting.get("policy") == "risk":
            parts.append(f"acting by mu - {acting.get('risk', 0):g} sigma")
        elif document.get("risk"):
            parts.append(f"risk {document['risk']:g}")
        seeds = sorted({e["seed"] for e in document.get("per_episode", []) if "seed" in e})
        if seeds:
            parts.append(f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}")
        return parts

    labels = [base(document) for document in documents]
    if len(set(labels)) < len(labels):
        labels = [
            ", ".join([label, *details(document)]) if labels.count(label) > 1 else label
            for label, document in zip(labels, documents, strict=True)
        ]
    if len(set(labels)) < len(labels):
        labels = [
            f"{label}, {os.path.splitext(str(document.get(FILE_KEY, '?')))[0]}"
            if labels.count(label) > 1
            else label
            for label, document in zip(labels, documents, strict=True)
        ]
    return [f"{label})" for label in labels]


def plot(run_dir: str, out: str | None) -> int:
    """Runs ``rllib plot``; returns the exit status."""
    if not os.path.isdir(run_dir):
        raise CLIError(f"no such folder: {run_dir}")
    trial_dirs = find_trials(run_dir)
    curves = [curve for curve in map(read_curve, trial_dirs) if curve is not None]
    evaluations = read_evaluations(run_dir)
    if not curves and not evaluations:
        raise CLIError(
            f"{run_dir}: no returns to plot ({len(trial_dirs)} trial folders with results, "
            f"none with a finished episode; no {EVALUATION_FILE})"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError(INSTALL_HINT) from None
    groups = group_by_config(curves)
    panels = int(bool(groups)) + int(bool(evaluations))
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)
    axes = list(axes[0])
    if groups:
        axis = axes.pop(0)
        for group in groups:
            steps, mean, low, high = group.aggregate()
            (line,) = axis.plot(steps, mean, label=group.label)
            if len(group.curves) > 1:
                axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        axis.set_xlabel("env steps")
        axis.set_ylabel("mean episode return (training)")
        axis.set_title(f"Return vs env steps: {os.path.basename(os.path.abspath(run_dir))}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    if evaluations:
        axis = axes.pop(0)
        low, high = math.inf, -math.inf
        for document, label in zip(evaluations, evaluation_labels(evaluations), strict=True):
            episodes = document["per_episode"]
            predicted = np.array([e["predicted_mean"] for e in episodes])
            sigma = np.array([e["predicted_sigma"] for e in episodes])
            obtained = np.array([e["discounted_return"] for e in episodes])
            axis.errorbar(
                predicted,
                obtained,
                xerr=sigma,
                fmt="o",
                alpha=0.7,
                capsize=2,
                label=label,
            )
            low = min(low, float(np.min(predicted - sigma)), float(np.min(obtained)))
            high = max(high, float(np.max(predicted + sigma)), float(np.max(obtained)))
        axis.plot([low, high], [low, high], "k--", linewidth=1, label="obtained = predicted")
        axis.set_xlabel("predicted mu ± sigma of p_psi(U | s0, a0)")
        axis.set_ylabel(f"discounted return obtained (gamma {evaluations[0].get('gamma', '?')})")
        axis.set_title("Value distribution calibration")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    out = out or os.path.join(run_dir, DEFAULT_OUT)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    seeds = sum(len(group.curves) for group in groups)
    print(
        f"Wrote {os.path.abspath(out)}: {len(groups)} configuration(s) from {seeds} trial(s)"
        + (
            f", calibration of {len(evaluations)} evaluation(s)"
            if evaluations
            else f"; no {EVALUATION_FILE} under {run_dir} (rllib evaluate CHECKPOINT writes one)"
        )
    )
    return 0
