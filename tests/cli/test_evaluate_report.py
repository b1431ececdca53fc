"""The lines `rllib evaluate` prints (no Ray: a made-up `EvaluationResult`)."""

from __future__ import annotations

from drive_rllib.algorithm.evaluation import Acting, EpisodeOutcome, EvaluationResult
from drive_rllib.cli.evaluate import report


def test_the_risk_line_follows_the_table_it_summarises():
    outcomes = [
        EpisodeOutcome(seed, -150.0 - seed, -50.0 - seed, 200, False, -48.0, 4.0)
        for seed in range(3)
    ]
    result = EvaluationResult(
        "/runs/checkpoint_000001",
        "Pendulum-v1",
        0.99,
        "pi_theta",
        outcomes,
        acting=Acting("mean", 1.0),
    )
    lines, document = report(result)
    header = next(i for i, line in enumerate(lines) if line.startswith("  seed "))
    mean_row = next(i for i, line in enumerate(lines) if line.startswith("  mean "))
    risk_row = next(i for i, line in enumerate(lines) if line.startswith("risk-sensitive score"))
    assert header < mean_row < risk_row == len(lines) - 1
    assert all(line.startswith("  ") for line in lines[header : mean_row + 1])
    assert document["risk_score_mean"] == -52.0
