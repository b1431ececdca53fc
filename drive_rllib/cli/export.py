"""`rllib export-experience CHECKPOINT OUT_DIR`: a checkpoint's replay as Parquet (I/O only).

The rows of the checkpoint's ``replay.npz``, oldest first, in RLlib's offline
columns (`drive_rllib.algorithm.offline.export_experience`); read without Ray.
"""

from __future__ import annotations

import click

from drive_rllib.cli.experiments import CLIError


@click.command("export-experience")
@click.argument("checkpoint")
@click.argument("out_dir")
@click.option(
    "--actions",
    type=click.Choice(["env", "normalized"]),
    default="env",
    show_default=True,
    help="env: the env's own units; normalized: [-1, 1] as the replay stores them (RLlib's "
    "recordings under normalize_actions=True hold these).",
)
@click.option(
    "--max-rows-per-file",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Rows per Parquet file at most.",
)
def export_experience(checkpoint: str, out_dir: str, actions: str, max_rows_per_file: int) -> int:
    """Write the replay of CHECKPOINT as Parquet files in RLlib's offline format into OUT_DIR.

    CHECKPOINT is a checkpoint folder, or a trial folder (its last checkpoint).
    OUT_DIR is a new or empty folder, a local path or a URI (s3://..., gs://...).
    RLlib reads it with config.offline_data(input_=OUT_DIR); DRIVE too.
    """
    from drive_rllib.algorithm.evaluation import EvaluationError
    from drive_rllib.algorithm.offline import export_experience as export

    try:
        summary = export(checkpoint, out_dir, actions=actions, max_rows_per_file=max_rows_per_file)
    except (EvaluationError, FileNotFoundError, ValueError) as error:
        raise CLIError(str(error)) from None
    print(
        f"Wrote {summary.rows} transitions ({summary.segments} episode segments, actions in "
        f"{'the env units' if actions == 'env' else '[-1, 1]'}) to {len(summary.files)} "
        f"Parquet file(s) in {out_dir}, {summary.bytes / 1e6:.1f} MB."
    )
    return 0
