"""Mixed precision (`UpdateSpec.precision` "bfloat16"): hidden layers in bfloat16, the rest float32.

Under ``torch.autocast`` every matmul runs in bfloat16; the networks cast their
(small) outputs back to float32, so that every loss term, rollout state and
gradient is float32. Weights that several calls reuse are cast once
(`autocast_weights`). Without autocast nothing may change. The update step itself
must be the float32 one up to bfloat16 rounding, with the same gradient routing.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from drive_rllib.core import Precision, UpdateSpec, update_terms
from drive_rllib.core.networks import TanhGaussianPolicy, autocast_weights, ensemble_mlp
from drive_rllib.core.spec import Activation
from drive_rllib.core.update import mixed_precision
from tests.core.helpers import random_batch, small_spec, tiny_nets


def ensemble_params(widths: list[int], members: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    return [
        (torch.randn(members, i, o) / i**0.5, torch.randn(members, 1, o))
        for i, o in itertools.pairwise(widths)
    ]


def reference_mlp(x, params, dtype):
    """ensemble_mlp written out: layer-normed SiLU layers computed in ``dtype`` (as
    autocast's matmuls: bfloat16 products summed in float32, then rounded; then the
    bias added in ``dtype``), the output cast to float32."""
    x = x.expand(params[0][0].shape[0], *x.shape).to(dtype)
    for index, (weight, bias) in enumerate(params):
        if index > 0:
            x = F.layer_norm(x, x.shape[-1:])
        x = torch.bmm(x, weight.to(dtype)) + bias.to(dtype)
        if index < len(params) - 1:
            x = F.silu(x)
    return x.float()


def test_under_autocast_the_layers_run_in_bfloat16_and_the_output_is_float32():
    params = ensemble_params([5, 32, 32, 4])
    x = torch.randn(64, 5)
    with mixed_precision(x.device, Precision.BFLOAT16):
        assert torch.mm(x, x.T).dtype == torch.bfloat16  # autocast is on
        out = ensemble_mlp(x, params, Activation.SILU, layer_norm=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference_mlp(x, params, torch.bfloat16), rtol=0, atol=0)
    exact = ensemble_mlp(x, params, Activation.SILU, layer_norm=True)
    # bfloat16 layers: close to the float32 network, but not equal to it.
    assert 0 < (out - exact).abs().max() < 0.1


def test_weights_cast_once_give_what_autocast_gives_and_stay_put_without_it():
    params = ensemble_params([5, 32, 4])
    x = torch.randn(64, 5)
    assert autocast_weights(params) is params  # no autocast: the very same tensors
    with mixed_precision(x.device, Precision.BFLOAT16):
        cast = autocast_weights(params)
        assert all(w.dtype == b.dtype == torch.bfloat16 for w, b in cast)
        torch.testing.assert_close(
            ensemble_mlp(x, cast, Activation.RELU), ensemble_mlp(x, params, Activation.RELU)
        )


def test_without_autocast_the_mlp_is_exactly_the_float32_one():
    params = ensemble_params([5, 32, 32, 4])
    x = torch.randn(64, 5)
    torch.testing.assert_close(
        ensemble_mlp(x, params, Activation.SILU, layer_norm=True),
        reference_mlp(x, params, torch.float32),
        rtol=0,
        atol=0,
    )


def test_policy_outputs_are_float32_under_autocast():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(5, 2, hiddens=(32, 32))
    obs = torch.randn(64, 5)
    exact_mean, exact_std = policy(obs)
    with mixed_precision(obs.device, Precision.BFLOAT16):
        mean, std = policy(obs)
    assert mean.dtype == std.dtype == torch.float32
    torch.testing.assert_close(mean, exact_mean, rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(std, exact_std, rtol=5e-2, atol=5e-2)
    assert not torch.equal(mean, exact_mean)


def test_float32_precision_is_no_autocast():
    with mixed_precision(torch.device("cpu"), Precision.FLOAT32):
        assert not torch.is_autocast_enabled("cpu")
        assert torch.mm(torch.randn(2, 2), torch.randn(2, 2)).dtype == torch.float32


def terms_and_grads(precision: str):
    torch.manual_seed(0)
    nets = tiny_nets(model_hiddens=(32, 32), value_hiddens=(32, 32), policy_hiddens=(32, 32))
    batch = random_batch(64)
    nets.obs_normalizer.update(torch.randn(64, 3))
    spec = small_spec(precision=precision)
    torch.manual_seed(1)
    terms, diagnostics = update_terms(nets, batch, spec)
    sum(term.mean() for term in terms.values()).backward()
    grads = {name: p.grad for name, p in nets.named_parameters() if p.grad is not None}
    return terms, diagnostics, grads


def test_bfloat16_step_is_the_float32_step_up_to_rounding():
    """Same seed, same draws: every term float32 and within bf16 rounding of float32's,
    every gradient float32 with the same parameters reached and the same direction."""
    terms, diagnostics, grads = terms_and_grads("bfloat16")
    exact_terms, _exact_diagnostics, exact_grads = terms_and_grads("float32")
    assert terms.keys() == exact_terms.keys()
    for name, term in terms.items():
        assert term.dtype == torch.float32, name
        torch.testing.assert_close(term, exact_terms[name], rtol=5e-2, atol=5e-2, msg=name)
    assert not all(torch.equal(terms[n], exact_terms[n]) for n in terms)  # bf16 did run
    for name, value in diagnostics.items():
        assert value.dtype == torch.float32, name
    assert grads.keys() == exact_grads.keys()
    for name, grad in grads.items():
        assert grad.dtype == torch.float32, name
        exact = exact_grads[name].flatten()
        if exact.norm() > 1e-6:
            cosine = torch.nn.functional.cosine_similarity(grad.flatten(), exact, dim=0)
            assert cosine > 0.98, (name, cosine)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_spec_takes_the_precision_by_name(precision):
    assert UpdateSpec(precision=precision).precision is Precision(precision)


def test_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'float32', 'bfloat16'"):
        UpdateSpec(precision="float16")


def test_auto_is_bfloat16_only_where_the_device_has_it(monkeypatch):
    from drive_rllib.core import update

    cpu = torch.device("cpu")
    for native, expected in ((True, Precision.BFLOAT16), (False, Precision.FLOAT32)):
        monkeypatch.setattr(update, "native_bfloat16", lambda device, native=native: native)
        assert update.resolve_precision(Precision.AUTO, cpu) is expected
        with mixed_precision(cpu, Precision.AUTO):
            assert torch.is_autocast_enabled("cpu") is native
        # An explicit choice is kept whatever the device has.
        assert update.resolve_precision(Precision.FLOAT32, cpu) is Precision.FLOAT32
        assert update.resolve_precision(Precision.BFLOAT16, cpu) is Precision.BFLOAT16


def test_native_bfloat16_reads_the_cpus_bf16_instructions(monkeypatch):
    from drive_rllib.core import update

    for capabilities, expected in (
        ({"amx_bf16": True, "avx512_bf16": False}, True),
        ({"amx_bf16": False, "avx512_bf16": True}, True),
        ({"amx_bf16": False, "avx512_bf16": False, "avx2": True}, False),
    ):
        monkeypatch.setattr(update, "_NATIVE_BFLOAT16", {})
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda c=capabilities: c)
        assert update.native_bfloat16(torch.device("cpu")) is expected


def test_distribution_rollouts_run_in_the_update_steps_precision():
    from drive_rllib.core.update import distribution_rollout_states

    torch.manual_seed(0)
    nets = tiny_nets(model_hiddens=(32, 32), policy_hiddens=(32, 32))
    nets.obs_normalizer.update(torch.randn(64, 3))
    start = torch.randn(32, 3)
    states = {}
    for precision in ("float32", "bfloat16"):
        spec = UpdateSpec(distribution_rollout_horizon=1, precision=precision)
        torch.manual_seed(1)
        states[precision] = distribution_rollout_states(nets, start, spec)
    assert states["bfloat16"].dtype == torch.float32
    assert states["bfloat16"].shape == states["float32"].shape
    torch.testing.assert_close(states["bfloat16"], states["float32"], rtol=5e-2, atol=5e-2)
    assert not torch.equal(states["bfloat16"], states["float32"])
