"""``env_runners/episode_return_mean`` is the mean of the last K finished episodes
(K = metrics_num_episodes_for_smoothing), whatever the number of EnvRunners, carried
across iterations and checkpoints: what stop rules and checkpoint scores read."""

from __future__ import annotations

import numpy as np
import pytest

from drive_rllib import keys
from drive_rllib.algorithm.returns import RecentReturns, smooth_returns
from drive_rllib.keys import nested_get


def iteration(*returns: float, rllib_mean: float | None = None) -> dict:
    """An iteration's results as RLlib 2.60 reduces them: its own episodes' mean only."""
    runners = {"episode_returns": list(returns), "num_episodes": len(returns)}
    if returns:
        runners["episode_return_mean"] = rllib_mean or float(np.mean(returns))
    return {"env_runners": runners}


def test_one_outlier_episode_does_not_stop_a_run():
    stop = 4800.0
    recent = RecentReturns(10)
    history = [iteration(r) for r in (1000, 1500, 2000, 2500, 3000, 3500, 3800, 3900, 4000)]
    history.append(iteration(5200.0))  # one lucky episode: RLlib's value would be 5,200
    stopped = []
    for results in history:
        assert (
            results["env_runners"]["episode_return_mean"]
            == results["env_runners"]["episode_returns"][0]
        )
        smoothed = smooth_returns(results, recent)
        stopped.append(nested_get(smoothed, keys.RETURN) >= stop)
    assert not any(stopped)
    assert nested_get(history[-1], keys.RETURN) == pytest.approx(
        np.mean([1000, 1500, 2000, 2500, 3000, 3500, 3800, 3900, 4000, 5200])
    )
    # Ten episodes at the level the rule asks for do stop it.
    for _ in range(10):
        last = smooth_returns(iteration(4900.0), recent)
    assert nested_get(last, keys.RETURN) >= stop


def test_the_mean_is_carried_across_iterations_without_a_finished_episode():
    recent = RecentReturns(3)
    assert keys.RETURN.split("/")[1] not in smooth_returns(iteration(), recent)["env_runners"]
    smooth_returns(iteration(-300.0, -100.0), recent)  # two runners' episodes
    quiet = smooth_returns(iteration(), recent)
    assert nested_get(quiet, keys.RETURN) == pytest.approx(-200.0)
    assert "episode_returns" not in quiet["env_runners"]
    last = smooth_returns(iteration(50.0, 80.0), recent)  # the window keeps the last 3
    assert nested_get(last, keys.RETURN) == pytest.approx((-100.0 + 50.0 + 80.0) / 3)
    copy = RecentReturns(3)
    copy.set_state(recent.get_state())
    assert copy.mean() == recent.mean()
    evaluation = {"evaluation": {"env_runners": {"episode_returns": [1.0]}}}
    assert smooth_returns(evaluation, recent) == {"evaluation": {"env_runners": {}}}


@pytest.mark.ray
def test_drive_reports_the_mean_of_the_last_k_episodes_across_iterations(ray_instance, tiny_config):
    # Pendulum's episodes are 200 steps, an iteration 50: one episode every 4 iterations.
    config = tiny_config(num_env_runners=0, updates_per_iteration=1).reporting(
        metrics_num_episodes_for_smoothing=2
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(12)]
    finally:
        algo.stop()
    means = [nested_get(result, keys.RETURN) for result in results]
    episodes = [nested_get(result, "env_runners/num_episodes") or 0 for result in results]
    assert [i for i, n in enumerate(episodes) if n] == [3, 7, 11]
    assert means[:3] == [None, None, None]
    # Carried through the iterations without an episode.
    assert means[3] == means[4] == means[5] == means[6]
    assert means[7] == means[8] == means[9] == means[10]
    # The last two episodes: the mean of the 2nd and 3rd, not the 3rd alone.
    third = nested_get(results[11], "env_runners/episode_return_max")
    second = 2 * means[7] - means[3]
    assert means[11] == pytest.approx((second + third) / 2)
    assert all("episode_returns" not in result["env_runners"] for result in results)
