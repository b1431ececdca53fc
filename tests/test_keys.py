"""Metric keys: every key one update step logs is declared in drive_rllib.keys, and none twice.

Ray-free: runs one update step of the core and builds what the Learner logs
from it (``keys.update_step_metrics``).
"""

from __future__ import annotations

import pytest
import torch

from drive_rllib import keys
from drive_rllib.core import NetworkSpec, UpdateSpec, combine_terms, loss_weights, update_terms
from tests.core.helpers import random_batch, tiny_nets


@pytest.mark.parametrize(
    "update, networks",
    [
        ({}, {}),
        (
            {"policy_update": "distill", "value_loss": "cross_entropy", "num_samples": 2},
            {"entropy_floor": False, "termination": "none"},
        ),
    ],
    ids=["defaults", "other_branches"],
)
def test_one_update_step_logs_declared_keys_once(update, networks):
    torch.manual_seed(0)
    update_spec = UpdateSpec(horizon=2, **update)
    nets = tiny_nets(**networks)
    terms, diagnostics = update_terms(nets, random_batch(8), update_spec)
    total = combine_terms(terms, loss_weights(update_spec, NetworkSpec(**networks)))
    logged = keys.update_step_metrics(
        {name: term.detach().mean() for name, term in terms.items()}, diagnostics, total.detach()
    )
    undeclared = set(logged) - set(keys.KEYS)
    assert not undeclared, f"undeclared metric keys {sorted(undeclared)}"
    # Nothing overwritten: one entry per term, per diagnostic, and the total.
    assert len(logged) == len(terms) + len(diagnostics) + 1
    assert {keys.term_key(name) for name in terms} | set(diagnostics) | {keys.LOSS_TOTAL} == set(
        logged
    )
    assert all(key == key.lower() for key in logged)
    # The per-member model values are the summed terms divided by E.
    members = nets.model.num_members
    assert logged[keys.MODEL_NLL_PER_MEMBER] == pytest.approx(
        float(logged[keys.LOSS_MODEL]) / members
    )
    if "termination" in terms:
        assert logged[keys.MODEL_TERMINATION_PER_MEMBER] == pytest.approx(
            float(logged[keys.LOSS_TERMINATION]) / members
        )


def test_update_step_metrics_refuses_undeclared_and_doubled_keys():
    with pytest.raises(KeyError, match="would be logged twice"):
        keys.update_step_metrics({"model": 1.0}, {keys.LOSS_MODEL: 2.0}, 3.0)
    with pytest.raises(KeyError, match="not declared"):
        keys.update_step_metrics({}, {"value/new_thing": 1.0}, 3.0)
    with pytest.raises(KeyError, match="has no metric key"):
        keys.update_step_metrics({"new_term": 1.0}, {}, 3.0)


def test_every_key_is_lower_case_slash_grouped_and_explained():
    for key, meaning in keys.KEYS.items():
        assert key == key.lower(), key
        assert meaning and "\n" not in meaning, key
    assert set(keys.TERM_KEYS.values()) <= set(keys.KEYS)
    assert all(key.startswith("loss/") for key in keys.TERM_KEYS.values())


def test_nested_get_reads_nested_and_flat_results():
    assert keys.nested_get({"a": {"b": 1}}, "a/b") == 1
    assert keys.nested_get({"a/b": 2}, "a/b") == 2
    assert keys.nested_get({"a": {}}, "a/b") is None
