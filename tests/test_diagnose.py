"""``benchmarks/diagnose.py``: the replay indexing behind its fall tables, on hand-made
replays whose answers are known."""

from __future__ import annotations

import importlib.util
import pathlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "diagnose.py"


@pytest.fixture(scope="module")
def diagnose():
    spec = importlib.util.spec_from_file_location("diagnose", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def replay(terminated: list[int], truncated: list[int] | None = None) -> dict[str, np.ndarray]:
    """A replay of len(terminated) rows whose observation is its own row index."""
    size = len(terminated)
    return {
        "size": np.array(size),
        "obs": np.arange(size, dtype=np.float32)[:, None],
        "next_obs": np.arange(1, size + 1, dtype=np.float32)[:, None],
        "action": np.zeros((size, 1), dtype=np.float32),
        "reward": np.ones(size, dtype=np.float32),
        "terminated": np.asarray(terminated, dtype=np.float32),
        "truncated": np.asarray(truncated or [0] * size, dtype=np.float32),
    }


def test_discounted_returns_by_hand(diagnose):
    returns = diagnose._discounted_returns(np.array([1.0, 2.0, 3.0]), 0.5)
    # 3; 2 + 0.5 * 3 = 3.5; 1 + 0.5 * 3.5 = 2.75
    np.testing.assert_allclose(returns, [2.75, 3.5, 3.0])


def test_fall_rows_are_back_steps_before_each_fall_within_its_episode(diagnose):
    # Falls at rows 4 and 9; row 6 ends an episode by truncation.
    terminated = [0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    truncated = [0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    data = replay(terminated, truncated)
    assert diagnose._fall_rows(data, 0) == [4, 9]
    assert diagnose._fall_rows(data, 2) == [2, 7]
    # 4 back from 9 is row 5, with the truncation at 6 between: left out; 4 back from 4 is 0.
    assert diagnose._fall_rows(data, 4) == [0]
    # 5 back from 4 is before the replay starts; 5 back from 9 crosses fall 4's episode end.
    assert diagnose._fall_rows(data, 5) == []
    # Only the falls among the last `window` rows count.
    assert diagnose._fall_rows(data, 0, window=3) == [9]


def test_before_fall_return_is_the_reward_to_the_fall_inclusive(diagnose, monkeypatch):
    data = replay([0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    monkeypatch.setattr(diagnose, "_mu", lambda nets, obs, action: obs[:, 0])
    table = diagnose._before_fall(None, data, gamma=0.5)
    # k = 1 before each fall: rows 3 and 8, return 1 + 0.5 (the falling row's reward counts).
    assert table[1] == {"rows": 2, "mu": 5.5, "return_to_fall": 1.5}
    assert table[2]["return_to_fall"] == pytest.approx(1.75)


def test_foresight_of_a_model_that_replays_the_real_episode_is_one(diagnose, monkeypatch):
    """A rollout that continues exactly as the replayed episode did (its i-th transition
    from row r ends the episode iff row r + i terminated) foresees every fall: by the
    fall, and ten transitions later, the share fallen is 1, closed and open loop."""
    terminated = np.zeros(400, dtype=int)
    terminated[[150, 399]] = 1
    data = replay(terminated.tolist())

    def rollout(nets, start_obs, horizon, actions=None):
        rows = torch.as_tensor(start_obs[:, 0]).long()
        index = (rows[None] + torch.arange(horizon)[:, None]).clamp(max=399)
        continue_probs = 1.0 - torch.as_tensor(data["terminated"])[index]
        return torch.zeros_like(continue_probs), continue_probs

    monkeypatch.setattr(diagnose, "_imagined_rollout", rollout)
    nets = SimpleNamespace(model=SimpleNamespace(learn_termination=True), termination_rule=None)
    table = diagnose._foresight(nets, data, samples=2)
    assert sorted(table) == [5, 10, 20, 50, 100]
    for back, row in table.items():
        assert row["falls"] == (2 if back < 150 else 1)
        assert row["by_fall"] == row["by_fall_plus_10"] == row["by_fall_real_actions"] == 1.0


def test_written_before_counts_back_from_the_cursor_across_the_wrap(diagnose):
    # A full ring of 5 rows whose next write goes to position 2: the last row written
    # sits at 1, then 0, 4, 3, 2.
    data = {"size": np.array(5), "cursor": np.array(2)}
    np.testing.assert_array_equal(diagnose._written_before(data, np.arange(1, 6)), [1, 0, 4, 3, 2])
    # Not yet full (cursor == size): the last rows are the highest positions.
    data = {"size": np.array(5), "cursor": np.array(5)}
    np.testing.assert_array_equal(diagnose._written_before(data, np.arange(3, 0, -1)), [2, 3, 4])


def test_value_at_reads_the_heads_mean_and_spread_at_the_mean_action(diagnose):
    # Two heads whose mu is 1 and 3 at every (s, a): mean 2, spread std(1, 3) = sqrt(2).
    class Heads:
        def __call__(self, obs_n, action, scale):
            assert torch.equal(action, torch.tanh(obs_n[:, :1]))  # pi_theta's mean action
            ones = torch.ones(obs_n.shape[0])
            return torch.stack([ones, 3 * ones]), torch.stack([ones, ones])

    nets = SimpleNamespace(
        obs_normalizer=lambda s: s,
        prior=lambda s: (s[:, :1], torch.ones(s.shape[0], 1)),
        value=Heads(),
        value_scale=lambda: None,
    )
    out = diagnose._value_at(nets, torch.randn(5, 2))
    assert out["mu"] == pytest.approx(2.0)
    assert out["spread"] == pytest.approx(2**0.5)
