"""The core's settings: each checked once, with the config's messages; a round trip as a dict."""

from __future__ import annotations

import json

import pytest

from drive_rllib.core import (
    ActingSpec,
    DRIVESpec,
    InferencePolicy,
    NetworkSpec,
    PolicyUpdate,
    UpdateSpec,
    ValueLoss,
)


def test_update_spec_rejects_bad_values():
    # Moved from test_losses (loss_weights and update_terms no longer check their settings:
    # the spec does, once, with DRIVEConfig.validate()'s messages).
    with pytest.raises(ValueError, match="`alpha` must be a number > 0"):
        UpdateSpec(alpha=0.0)
    with pytest.raises(ValueError, match="`policy_update` must be one of"):
        UpdateSpec(alpha=1.0, policy_update="both")
    with pytest.raises(ValueError, match="`value_loss` must be one of"):
        UpdateSpec(alpha=1.0, value_loss="mse")
    with pytest.raises(ValueError, match="`horizon` must be >= 1"):
        UpdateSpec(horizon=0)


def test_network_spec_checks_sizes_and_their_relation():
    with pytest.raises(
        ValueError, match=r"`num_elites` \(8\) must not exceed `ensemble_size` \(7\)"
    ):
        NetworkSpec(num_elites=8, ensemble_size=7)
    with pytest.raises(ValueError, match="`model_hiddens` must be a non-empty list"):
        NetworkSpec(model_hiddens=[])
    with pytest.raises(ValueError, match="`entropy_floor` must be True or False"):
        NetworkSpec(entropy_floor=1)
    with pytest.raises(ValueError, match="`target_entropy` must be a finite number or None"):
        NetworkSpec(target_entropy=float("inf"))
    with pytest.raises(ValueError, match="`inference_policy` must be one of"):
        ActingSpec(inference_policy="q")


def test_choices_become_enums_that_equal_their_strings_and_widths_tuples():
    spec = UpdateSpec(policy_update="distill", value_loss="cross_entropy")
    assert spec.policy_update is PolicyUpdate.DISTILL and spec.policy_update == "distill"
    assert spec.value_loss is ValueLoss.CROSS_ENTROPY
    assert NetworkSpec(model_hiddens=[8, 8]).model_hiddens == (8, 8)
    assert ActingSpec().inference_policy is InferencePolicy.PRIOR


def test_spec_round_trips_through_a_json_dict():
    spec = DRIVESpec(
        networks=NetworkSpec(
            ensemble_size=3, num_elites=2, model_hiddens=(16,), target_entropy=-1.5
        ),
        update=UpdateSpec(horizon=2, num_samples=3, gamma=0.9, policy_update="distill"),
        acting=ActingSpec(inference_policy="posterior"),
    )
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["update"]["policy_update"] == "distill"
    assert data["networks"]["model_hiddens"] == [16]
    assert DRIVESpec.from_dict(data) == spec


def test_settings_are_the_flat_plain_defaults_and_names_are_unique():
    settings = DRIVESpec().settings()
    assert tuple(settings) == DRIVESpec.setting_names()
    assert settings["horizon"] == 5 and settings["num_samples"] == 1
    assert settings["model_hiddens"] == [200, 200, 200]
    assert settings["policy_update"] == "joint" and type(settings["policy_update"]) is str


def test_from_settings_reads_attributes_and_checks_them():
    class Source:
        pass

    source = Source()
    for name, value in DRIVESpec().settings().items():
        setattr(source, name, value)
    source.horizon = 3
    assert DRIVESpec.from_settings(source).update.horizon == 3
    source.horizon = 2.5
    with pytest.raises(ValueError, match="`horizon` must be an integer, got 2.5"):
        DRIVESpec.from_settings(source)
