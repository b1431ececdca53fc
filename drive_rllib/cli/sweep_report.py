"""`rllib sweep-report RUN_DIR`: a sweep over H (``horizon``) and N (``num_samples``)
summed up offline, as tables and figures.

Reads every trial folder under RUN_DIR (``params.json`` and ``result.json``,
see `drive_rllib.cli.results`); starts no Ray. Per trial:

- **final return**: the mean of the last ``last`` reported training returns
  (``env_runners/episode_return_mean``). With the EnvRunner in the driver
  (``num_env_runners=0``) each reported value is the mean return of the
  episodes that *ended in that iteration* (RLlib's smoothing window does not
  carry over), and iterations in which none ended report NaN and are skipped.
  With 50-step iterations on Pendulum-v1 (200-step episodes) every reported
  value is one episode, so ``last=5`` is the mean of the last 5 episodes.
- **AUC return**: the area under the return curve over env steps 0..budget
  divided by the budget, i.e. the mean return over the whole run. The curve
  is linear between reported points and held constant before the first one
  and after the last one (a trial stopped early keeps its last return). The
  budget is the most env steps any trial under RUN_DIR reached.
- **wall time**: ``time_total_s``, the seconds the trial spent in training
  iterations (actor start-up and the time between an interruption and a
  resume are not counted).

Per (H, N), over its trials (the seeds): mean ± std (sample std, ddof 1; a
single seed has no std). Per value of H (and of N): the same over every trial
with that value, pooled over the other axis and the seeds (sweep.md's "By H"
and "By N" tables: with 2 seeds per cell, a trend along one axis rests on
these). Failed trials (Tune's ``error.txt``, not finished afterwards) are counted but left out of the statistics; unfinished ones
(interrupted and not resumed) are kept and counted. Trials a scheduler such as
ASHA stopped early count as finished, with fewer env steps (the ``env_steps``
column): their AUC holds their last return to the budget.

Tables need pandas (installed with ``ray[tune]``); figures need matplotlib
(the ``plot`` extra).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from drive_rllib import keys
from drive_rllib.cli.experiments import CLIError
from drive_rllib.cli.plot import ConfigCurves, Curve
from drive_rllib.cli.results import find_trials, read_params, read_rows, trial_status

#: The swept DRIVEConfig settings (paper symbols H and N).
HORIZON_KEY = "horizon"
SAMPLES_KEY = "num_samples"
#: Default number of last reported returns averaged into the final return.
DEFAULT_LAST = 5
TABLE_FILE = "sweep.csv"
TRIALS_FILE = "sweep_trials.csv"
MARKDOWN_FILE = "sweep.md"
HEATMAP_FILE = "heatmap.png"
CURVES_BY_H_FILE = "curves_by_H.png"
CURVES_BY_N_FILE = "curves_by_N.png"
WALL_TIME_FILE = "wall_time.png"
#: Trial states (see `drive_rllib.cli.results.trial_status`).
STATUSES = ("finished", "failed", "unfinished")
FIGURE_FILES = (HEATMAP_FILE, CURVES_BY_H_FILE, CURVES_BY_N_FILE, WALL_TIME_FILE)
INSTALL_HINT = (
    "the figures of rllib sweep-report need matplotlib: pip install 'drive-rllib[plot]' "
    "(or pip install matplotlib); --no-plots writes the tables only"
)


@dataclass
class Trial:
    """One trial of the sweep, in plain values.

    Attributes:
        name: the trial folder's name.
        horizon: H of its config.
        num_samples: N of its config (DRIVE's samples, not Tune's repeats).
        seed: its config's ``seed`` (None when unset: RLlib then seeds nothing).
        status: "finished", "failed" or "unfinished" (see `results.trial_status`).
        env_steps: env steps at each reported (finite) return.
        returns: the reported training returns.
        final_env_steps: env steps sampled by its last result (None: no result).
        wall_time_s: ``time_total_s`` of its last result.
    """

    name: str
    horizon: int
    num_samples: int
    seed: Any
    status: str
    env_steps: np.ndarray
    returns: np.ndarray
    final_env_steps: float | None
    wall_time_s: float | None


def read_trial(trial_dir: str, defaults: dict[str, int] | None = None) -> Trial:
    """One trial folder. ``defaults`` give H and N when params.json lacks them (a sweep
    that leaves one of them at DRIVEConfig's default)."""
    params = read_params(trial_dir)
    values = {}
    for key in (HORIZON_KEY, SAMPLES_KEY):
        value = params.get(key, (defaults or {}).get(key))
        if isinstance(value, bool) or not isinstance(value, int):
            raise CLIError(
                f"{trial_dir}: params.json has no integer {key!r} ({value!r}): not a DRIVE "
                "trial, or a search space that was never resolved"
            )
        values[key] = value
    rows = read_rows(trial_dir, (keys.ENV_STEPS, keys.RETURN, keys.TIME_TOTAL))
    curve = [
        (row[keys.ENV_STEPS], row[keys.RETURN])
        for row in rows
        if row[keys.ENV_STEPS] is not None and row[keys.RETURN] is not None
    ]
    steps = np.array([step for step, _ in curve], dtype=float)
    returns = np.array([value for _, value in curve], dtype=float)
    order = np.argsort(steps, kind="stable")
    last_steps = [row[keys.ENV_STEPS] for row in rows if row[keys.ENV_STEPS] is not None]
    times = [row[keys.TIME_TOTAL] for row in rows if row[keys.TIME_TOTAL] is not None]
    return Trial(
        name=os.path.basename(trial_dir.rstrip(os.sep)),
        horizon=values[HORIZON_KEY],
        num_samples=values[SAMPLES_KEY],
        seed=params.get("seed"),
        status=trial_status(trial_dir),
        env_steps=steps[order],
        returns=returns[order],
        final_env_steps=max(last_steps) if last_steps else None,
        wall_time_s=times[-1] if times else None,
    )


def read_sweep(run_dir: str) -> list[Trial]:
    """Every trial folder under ``run_dir``; `CLIError` when there is none."""
    if not os.path.isdir(run_dir):
        raise CLIError(f"no such folder: {run_dir}")
    trial_dirs = find_trials(run_dir)
    if not trial_dirs:
        raise CLIError(
            f"{run_dir}: no trial folders (none holds result.json or progress.csv); give the "
            "experiment folder, e.g. ~/ray_results/drive-sweep-h-n"
        )
    params = [read_params(trial_dir) for trial_dir in trial_dirs]
    defaults = None
    if any(HORIZON_KEY not in p or SAMPLES_KEY not in p for p in params):
        defaults = _config_defaults()
    return [read_trial(trial_dir, defaults) for trial_dir in trial_dirs]


def _config_defaults() -> dict[str, int]:
    from drive_rllib.algorithm import DRIVEConfig

    config = DRIVEConfig()
    return {HORIZON_KEY: config.horizon, SAMPLES_KEY: config.num_samples}


# -- numbers ------------------------------------------------------------------------------


def final_return(returns: np.ndarray, last: int = DEFAULT_LAST) -> float:
    """Mean of the last ``last`` reported returns; NaN when there is none."""
    if len(returns) == 0:
        return math.nan
    return float(np.mean(returns[-last:]))


def area_under_curve(env_steps: np.ndarray, returns: np.ndarray, budget: float) -> float:
    """Mean return over env steps 0..budget: the area under the curve through the points
    (linear between them, constant before the first and after the last) / budget.

    A curve of one point gives that point's return; no point gives NaN.
    """
    if len(returns) == 0 or not budget > 0:
        return math.nan
    inside = env_steps < budget
    steps = np.concatenate([[0.0], env_steps[inside], [budget]])
    values = np.concatenate(
        [[returns[0]], returns[inside], [np.interp(budget, env_steps, returns)]]
    )
    # Points at equal env steps (step 0, a repeated step) add no area.
    area = np.sum(np.diff(steps) * (values[1:] + values[:-1]) / 2.0)
    return float(area / budget)


def budget_of(trials: list[Trial]) -> float:
    """The env-step budget of the sweep: the most env steps any usable trial reached."""
    steps = [t.final_env_steps for t in trials if t.status != "failed" and t.final_env_steps]
    return max(steps) if steps else math.nan


def trials_table(trials: list[Trial], budget: float, last: int = DEFAULT_LAST) -> pd.DataFrame:
    """One row per trial: H, N, seed, status, env steps, final and AUC return, wall time."""
    rows = [
        {
            "H": trial.horizon,
            "N": trial.num_samples,
            "seed": trial.seed,
            "status": trial.status,
            "env_steps": trial.final_env_steps,
            "final_return": final_return(trial.returns, last),
            "auc_return": area_under_curve(trial.env_steps, trial.returns, budget),
            "wall_time_s": trial.wall_time_s,
            "trial": trial.name,
        }
        for trial in trials
    ]
    columns = ["H", "N", "seed", "status", "env_steps", "final_return", "auc_return"]
    table = pd.DataFrame(rows, columns=[*columns, "wall_time_s", "trial"])
    return table.sort_values(["H", "N", "trial"], kind="stable").reset_index(drop=True)


def sweep_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (H, N): seeds used, failed and unfinished trials, and mean/std over
    the seeds of final return, AUC return, wall time and env steps."""
    grouped = _mean_std_of_usable(
        trials, ["H", "N"], ["final_return", "auc_return", "wall_time_s", "env_steps"]
    )
    counts = trials.groupby(["H", "N"])["status"].agg(
        seeds=lambda s: int((s != "failed").sum()),
        failed=lambda s: int((s == "failed").sum()),
        unfinished=lambda s: int((s == "unfinished").sum()),
    )
    table = counts.join(grouped, how="left").reset_index()
    ordered = [
        "H",
        "N",
        "seeds",
        "failed",
        "unfinished",
        "final_return_mean",
        "final_return_std",
        "auc_return_mean",
        "auc_return_std",
        "wall_time_s_mean",
        "wall_time_s_std",
        "env_steps_mean",
    ]
    return table[ordered].sort_values(["H", "N"]).reset_index(drop=True)


def marginal_table(trials: pd.DataFrame, by: str) -> pd.DataFrame:
    """One row per value of ``by`` ("H" or "N"): the usable trials of every cell with
    that value pooled (all values of the other axis, all seeds), with the mean and
    sample std of final and AUC return and the mean wall time.

    With 2 seeds per cell a cell's mean is noisy; a marginal pools 2 x (cells on the
    other axis) trials, which is what a trend along one axis rests on.
    """
    grouped = _mean_std_of_usable(trials, [by], ["final_return", "auc_return", "wall_time_s"])
    usable = trials[trials["status"] != "failed"]
    grouped.insert(0, "trials", usable.groupby(by).size())
    return grouped.reset_index().sort_values(by).reset_index(drop=True)


def _mean_std_of_usable(trials: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean and sample std of ``metrics`` over the trials that did not fail, grouped by
    ``keys``; columns ``METRIC_mean`` and ``METRIC_std``."""
    usable = trials[trials["status"] != "failed"]
    grouped = usable.groupby(keys)[metrics].agg(["mean", "std"])
    grouped.columns = [f"{metric}_{stat}" for metric, stat in grouped.columns]
    return grouped


# -- text ---------------------------------------------------------------------------------


def mean_std(mean: float, std: float, digits: int = 1) -> str:
    """``"-150.2 ± 3.4"``; the mean alone without a std (one seed); ``"–"`` for no value."""
    if mean is None or not math.isfinite(mean):
        return "–"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def marginal_markdown(trials: pd.DataFrame, by: str) -> list[str]:
    """Markdown rows of `marginal_table`."""
    other = "N" if by == "H" else "H"
    lines = [
        (
            f"| {by} | trials (all {other}, all seeds) | final return | AUC return | "
            "wall time per trial (s) |"
        ),
        "|---|---|---|---|---|",
    ]
    for row in marginal_table(trials, by).itertuples(index=False):
        lines.append(
            f"| {getattr(row, by)} | {row.trials} | "
            f"{mean_std(row.final_return_mean, row.final_return_std)} | "
            f"{mean_std(row.auc_return_mean, row.auc_return_std)} | "
            f"{mean_std(row.wall_time_s_mean, math.nan, 0)} |"
        )
    return lines


def pivot_markdown(table: pd.DataFrame, metric: str) -> list[str]:
    """Markdown rows of ``metric`` (mean ± std) with H down and N across."""
    horizons = sorted(table["H"].unique())
    samples = sorted(table["N"].unique())
    cells = {(row.H, row.N): row for row in table.itertuples(index=False)}
    lines = [
        "| H \\ N | " + " | ".join(str(n) for n in samples) + " |",
        "|---|" + "---|" * len(samples),
    ]
    for h in horizons:
        values = []
        for n in samples:
            row = cells.get((h, n))
            values.append(
                "–"
                if row is None
                else mean_std(getattr(row, f"{metric}_mean"), getattr(row, f"{metric}_std"))
            )
        lines.append(f"| **{h}** | " + " | ".join(values) + " |")
    return lines


def markdown(
    table: pd.DataFrame,
    trials: pd.DataFrame,
    run_dir: str,
    budget: float,
    last: int,
    figures: list[str],
) -> str:
    """The text of sweep.md: what was measured, the pivots, the full table, the figures."""
    name = os.path.basename(os.path.abspath(run_dir))
    counts = {status: int((trials["status"] == status).sum()) for status in STATUSES}
    overview = (
        f"{len(trials)} trials ({counts['finished']} finished, {counts['failed']} failed, "
        f"{counts['unfinished']} unfinished) in {len(table)} (H, N) cells; budget "
        f"{budget:,.0f} env steps. H = `horizon`, N = `num_samples` (DRIVE's imagined "
        "samples per start state); the seeds are Tune's repeats. Cells: mean ± std over "
        "the seeds."
    )
    final = (
        f"- **final return**: mean of the last {last} reported training returns "
        "(`env_runners/episode_return_mean`) of a trial;"
    )
    auc = (
        "- **AUC return**: area under the return curve over env steps 0..budget / budget "
        "(the mean return over the run: higher means it learned sooner);"
    )
    wall = "- **wall time**: `time_total_s` of a trial (seconds in training iterations)."
    lines = [f"# Sweep over H and N: {name}", "", overview, "", final, auc, wall, ""]
    if table["final_return_mean"].notna().any() and table["auc_return_mean"].notna().any():
        best_final = table.loc[table["final_return_mean"].idxmax()]
        best_auc = table.loc[table["auc_return_mean"].idxmax()]
        best = (
            f"Highest final return: H={int(best_final.H)}, N={int(best_final.N)} "
            f"({mean_std(best_final.final_return_mean, best_final.final_return_std)}). "
            f"Highest AUC return: H={int(best_auc.H)}, N={int(best_auc.N)} "
            f"({mean_std(best_auc.auc_return_mean, best_auc.auc_return_std)})."
        )
        lines += [best, ""]
    lines += ["## Final return", "", *pivot_markdown(table, "final_return"), ""]
    lines += ["## AUC return", "", *pivot_markdown(table, "auc_return"), ""]
    lines += ["## By H (trials pooled over N and seeds)", "", *marginal_markdown(trials, "H"), ""]
    lines += ["## By N (trials pooled over H and seeds)", "", *marginal_markdown(trials, "N"), ""]
    lines += [
        "## All cells",
        "",
        "| H | N | seeds | final return | AUC return | wall time per trial (s) | env steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        seeds = str(row.seeds)
        if row.failed or row.unfinished:
            seeds += f" ({row.failed} failed, {row.unfinished} unfinished)"
        steps = "–" if not math.isfinite(row.env_steps_mean) else f"{row.env_steps_mean:,.0f}"
        lines.append(
            f"| {row.H} | {row.N} | {seeds} | "
            f"{mean_std(row.final_return_mean, row.final_return_std)} | "
            f"{mean_std(row.auc_return_mean, row.auc_return_std)} | "
            f"{mean_std(row.wall_time_s_mean, row.wall_time_s_std, 0)} | {steps} |"
        )
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{os.path.splitext(figure)[0]}]({figure})" for figure in figures]
    return "\n".join(lines) + "\n"


# -- figures (matplotlib) -----------------------------------------------------------------


def draw_figures(trials: list[Trial], table: pd.DataFrame, out_dir: str, plt: Any) -> list[str]:
    """Writes the PNGs into ``out_dir``; returns their file names."""
    _heatmaps(table, plt).savefig(os.path.join(out_dir, HEATMAP_FILE), dpi=120)
    _curves(trials, "horizon", "num_samples", plt).savefig(
        os.path.join(out_dir, CURVES_BY_H_FILE), dpi=120
    )
    _curves(trials, "num_samples", "horizon", plt).savefig(
        os.path.join(out_dir, CURVES_BY_N_FILE), dpi=120
    )
    _wall_time(trials, table, plt).savefig(os.path.join(out_dir, WALL_TIME_FILE), dpi=120)
    plt.close("all")
    return list(FIGURE_FILES)


def _heatmaps(table: pd.DataFrame, plt: Any) -> Any:
    horizons = sorted(table["H"].unique())
    samples = sorted(table["N"].unique())
    figure, axes = plt.subplots(
        1, 2, figsize=(4.5 + 1.6 * len(samples) * 2, 1.5 + 0.9 * len(horizons)), squeeze=False
    )
    titles = {"final_return": "final return", "auc_return": "AUC return (mean over the run)"}
    for axis, metric in zip(axes[0], titles):
        means = np.full((len(horizons), len(samples)), np.nan)
        labels = [["" for _ in samples] for _ in horizons]
        for row in table.itertuples(index=False):
            i, j = horizons.index(row.H), samples.index(row.N)
            mean, std = getattr(row, f"{metric}_mean"), getattr(row, f"{metric}_std")
            means[i, j] = mean
            labels[i][j] = (
                mean_std(mean, std, 0).replace(" ± ", "\n± ") + f"\n({_seeds(row.seeds)})"
            )
        image = axis.imshow(np.ma.masked_invalid(means), cmap="viridis", aspect="auto")
        axis.set_facecolor("lightgray")
        finite = means[np.isfinite(means)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for i in range(len(horizons)):
            for j in range(len(samples)):
                color = "white" if not np.isfinite(means[i, j]) or means[i, j] < middle else "black"
                axis.text(
                    j, i, labels[i][j] or "–", ha="center", va="center", color=color, fontsize=8
                )
        axis.set_xticks(range(len(samples)), [str(n) for n in samples])
        axis.set_yticks(range(len(horizons)), [str(h) for h in horizons])
        axis.set_xlabel("N (num_samples)")
        axis.set_ylabel("H (horizon)")
        axis.set_title(titles[metric])
        figure.colorbar(image, ax=axis, label="return")
    figure.suptitle("DRIVE sweep over H and N: mean ± std over seeds")
    figure.tight_layout()
    return figure


def _curves(trials: list[Trial], panel_key: str, line_key: str, plt: Any) -> Any:
    symbol = {"horizon": "H", "num_samples": "N"}
    panels = sorted({getattr(t, panel_key) for t in trials})
    columns = min(len(panels), 4)
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False, sharey=True
    )
    for index, panel in enumerate(panels):
        axis = axes[index // columns][index % columns]
        members = [t for t in trials if getattr(t, panel_key) == panel and t.status != "failed"]
        for line in sorted({getattr(t, line_key) for t in members}):
            curves = [
                Curve(t.name, {}, t.env_steps, t.returns)
                for t in members
                if getattr(t, line_key) == line and len(t.returns)
            ]
            if not curves:
                continue
            steps, mean, low, high = ConfigCurves("", curves).aggregate()
            (drawn,) = axis.plot(
                steps, mean, label=f"{symbol[line_key]}={line} ({_seeds(len(curves))})"
            )
            if len(curves) > 1:
                axis.fill_between(steps, low, high, color=drawn.get_color(), alpha=0.2, lw=0)
        axis.set_title(f"{symbol[panel_key]} = {panel}")
        axis.set_xlabel("env steps")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
        if index % columns == 0:
            axis.set_ylabel("training return")
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    figure.suptitle(f"Return vs env steps by {symbol[panel_key]}: mean over seeds, min–max band")
    figure.tight_layout()
    return figure


def _wall_time(trials: list[Trial], table: pd.DataFrame, plt: Any) -> Any:
    cells = [(row.H, row.N) for row in table.itertuples(index=False)]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.7 * len(cells) + 1.5), 3.8))
    axis.bar(range(len(cells)), table["wall_time_s_mean"].to_numpy(), color="tab:blue", alpha=0.5)
    for position, (h, n) in enumerate(cells):
        times = [
            t.wall_time_s
            for t in trials
            if (t.horizon, t.num_samples) == (h, n) and t.wall_time_s is not None
        ]
        axis.plot([position] * len(times), times, "k.", markersize=5)
    axis.set_xticks(range(len(cells)), [f"H{h}\nN{n}" for h, n in cells], fontsize=8)
    axis.set_ylabel("seconds in training iterations")
    axis.set_title("Wall time per trial (bar: mean over seeds, dots: trials)")
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure


def _seeds(count: int) -> str:
    return f"{count} seed{'' if count == 1 else 's'}"


# -- the command --------------------------------------------------------------------------


def report(run_dir: str, out: str | None, last: int = DEFAULT_LAST, plots: bool = True) -> int:
    """Runs ``rllib sweep-report``: writes the tables, then the figures; the exit status.

    The tables are written before matplotlib is imported, so they exist even when
    the figures cannot be drawn (that ends with `CLIError` and its install hint).
    """
    trials = read_sweep(run_dir)
    budget = budget_of(trials)
    if not math.isfinite(budget):
        raise CLIError(f"{run_dir}: no trial reported any env steps ({len(trials)} trial folders)")
    per_trial = trials_table(trials, budget, last)
    table = sweep_table(per_trial)
    out_dir = out or run_dir
    os.makedirs(out_dir, exist_ok=True)
    plt = None
    if plots:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            plt = None
    figures = list(FIGURE_FILES) if plt is not None else []
    table.to_csv(os.path.join(out_dir, TABLE_FILE), index=False)
    per_trial.to_csv(os.path.join(out_dir, TRIALS_FILE), index=False)
    with open(os.path.join(out_dir, MARKDOWN_FILE), "w", encoding="utf-8") as file:
        file.write(markdown(table, per_trial, run_dir, budget, last, figures))
    written = [MARKDOWN_FILE, TABLE_FILE, TRIALS_FILE]
    if plt is not None:
        written += draw_figures(trials, table, out_dir, plt)
    print(
        f"Wrote {', '.join(written)} to {os.path.abspath(out_dir)}: {len(table)} (H, N) cells "
        f"from {len(trials)} trials, budget {budget:,.0f} env steps",
        flush=True,
    )
    if plots and plt is None:
        raise CLIError(INSTALL_HINT)
    return 0
