"""`evaluate_checkpoint` from Python: the deterministic policy of a saved DRIVE, and p_psi."""

from __future__ import annotations

import math

import pytest

from drive_rllib.algorithm.evaluation import (
    EvaluationError,
    EvaluationResult,
    evaluate_checkpoint,
    resolve_checkpoint,
)

pytestmark = pytest.mark.ray


def test_evaluate_checkpoint_runs_seeded_deterministic_episodes(
    ray_instance, tiny_config, tmp_path
):
    algo = tiny_config().build_algo()
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "checkpoint_000000"))
    finally:
        algo.stop()

    # A trial folder resolves to its last checkpoint.
    assert resolve_checkpoint(str(tmp_path)) == path
    result = evaluate_checkpoint(path, episodes=2, seed=5)
    assert isinstance(result, EvaluationResult)
    assert (result.env_id, result.policy, result.gamma) == ("Pendulum-v1", "pi_theta", 0.99)
    assert [episode.seed for episode in result.episodes] == [5, 6]
    for episode in result.episodes:
        assert episode.length == 200 and not episode.terminated  # Pendulum truncates at 200
        assert episode.predicted_sigma >= 0.1  # sigma_min
        assert math.isfinite(episode.predicted_mean) and math.isfinite(episode.z_score)
    summary = result.summary()
    assert summary["episodes"] == 2 and len(summary["per_episode"]) == 2
    assert summary["return_mean"] == pytest.approx(
        sum(episode.episode_return for episode in result.episodes) / 2
    )
    # The policy is deterministic and the env seeded: the same numbers again.
    again = evaluate_checkpoint(path, episodes=2, seed=5)
    assert [e.episode_return for e in again.episodes] == [e.episode_return for e in result.episodes]


def test_evaluate_checkpoint_refuses_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(EvaluationError, match="no such checkpoint"):
        evaluate_checkpoint(str(tmp_path / "missing"), episodes=1)
    with pytest.raises(EvaluationError, match="is not an RLlib checkpoint"):
        evaluate_checkpoint(str(tmp_path), episodes=1)
    with pytest.raises(EvaluationError, match="episodes must be >= 1"):
        evaluate_checkpoint(str(tmp_path), episodes=0)
