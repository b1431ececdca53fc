"""Helpers of the algorithm tests: pull state out of a running DRIVE algorithm."""

from __future__ import annotations

from typing import Any

import numpy as np

MODULE_ID = "default_policy"


def learner_module_states(algo: Any) -> list[dict[str, np.ndarray]]:
    """state_dict (parameters and buffers) of the RLModule on every Learner, as numpy."""

    def pull(learner: Any) -> dict[str, np.ndarray]:
        module = learner.module[MODULE_ID].unwrapped()
        return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}

    return [result.get() for result in algo.learner_group.foreach_learner(pull)]


def learner_optimizer_states(algo: Any) -> list[dict[str, Any]]:
    """Every Learner's optimizer states (one entry per component optimizer)."""
    return [
        result.get()
        for result in algo.learner_group.foreach_learner(
            lambda learner: learner._get_optimizer_state()
        )
    ]


def assert_same_optimizer_states(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert set(first) == set(second)
    for name in first:
        first_state, second_state = first[name]["state"]["state"], second[name]["state"]["state"]
        assert set(first_state) == set(second_state), name
        for index, param_state in first_state.items():
            for field, value in param_state.items():
                np.testing.assert_array_equal(
                    value, second_state[index][field], err_msg=f"{name} {index} {field}"
                )


def changed_groups(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> set[str]:
    """Parts (the core's children: model, prior, ...; or module buffers) with a changed tensor."""
    return {
        key.split(".")[1] if key.startswith("nets.") else key
        for key in before
        if not np.array_equal(before[key], after[key], equal_nan=True)
    }
