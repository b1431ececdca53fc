"""``torch.compile`` of the update step: the compiled step computes what eager does.

The ``aot_eager`` backend traces the step (dynamo + AOTAutograd, as inductor does)
but runs the traced graph with eager kernels, so every term, diagnostic and gradient
must equal the eager step's to float rounding, and the random numbers drawn are the
same. The branch-free normaliser and return range (written so the trace has no break)
must still keep their limit cases.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from drive_rllib.core import NetworkSpec, combine_terms, loss_weights, update_terms
from drive_rllib.core.networks import (
    ACTIVATIONS,
    ModelStateBuffer,
    ReturnRange,
    RunningNormalizer,
    ensemble_mlp,
)
from drive_rllib.core.spec import Activation
from tests.core.helpers import random_batch, small_spec, tiny_nets


def step(nets, batch, spec, update_fn):
    """Terms, diagnostics and every parameter's gradient of one update step."""
    torch.manual_seed(1)
    terms, diagnostics = update_fn(nets, batch, spec)
    loss = combine_terms(terms, loss_weights(spec, NetworkSpec()))
    loss.backward()
    grads = {name: p.grad.clone() for name, p in nets.named_parameters() if p.grad is not None}
    return terms, diagnostics, grads


@pytest.mark.parametrize(
    "policy_update, precision",
    [("joint", "float32"), ("distill", "float32"), ("joint", "bfloat16")],
)
def test_compiled_update_step_equals_the_eager_one(policy_update, precision):
    """In float32 to float rounding; in bfloat16 to bfloat16 rounding (the traced graph
    may sum the same bfloat16 products in another order)."""
    nets = tiny_nets()
    batch = random_batch(16)
    # Statistics set, so the branch-free paths take their "set" side.
    nets.obs_normalizer.update(torch.randn(64, 3))
    spec = small_spec(policy_update=policy_update, precision=precision)
    tolerance = {} if precision == "float32" else {"rtol": 2e-2, "atol": 2e-2}
    compiled_nets = copy.deepcopy(nets)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(update_terms, backend="aot_eager", fullgraph=False)

    eager_terms, eager_diag, eager_grads = step(nets, batch, spec, update_terms)
    terms, diagnostics, grads = step(compiled_nets, batch, spec, compiled)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it did trace

    assert terms.keys() == eager_terms.keys()
    for name in terms:
        torch.testing.assert_close(terms[name], eager_terms[name], msg=name, **tolerance)
    assert diagnostics.keys() == eager_diag.keys()
    for name in diagnostics:
        torch.testing.assert_close(diagnostics[name], eager_diag[name], msg=name, **tolerance)
    assert grads.keys() == eager_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name], msg=name, **tolerance)


@pytest.mark.parametrize("held", [0, 5])
@pytest.mark.parametrize("value_model_fraction", [0.0, 0.25])
def test_the_step_from_model_start_states_traces_as_one_graph(held, value_model_fraction):
    # Eq. 6's start states read the model-state buffer's size as a tensor, not on the
    # host (``int(size)`` was a Tensor.item() graph break), empty buffer or not.
    torch._dynamo.reset()
    nets = tiny_nets()
    nets.model_states = ModelStateBuffer(obs_dim=3, capacity=8)
    nets.model_states.add(torch.randn(held, 3))
    spec = small_spec(start_state_model_fraction=0.5, value_model_fraction=value_model_fraction)
    explained = torch._dynamo.explain(update_terms)(nets, random_batch(16), spec)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_the_smoothed_termination_mask_traces_as_one_graph():
    # Hopper's rule and its margin (termination_gradient_width) in Eq. 6's model step.
    from drive_rllib.core.termination import rule_for

    torch._dynamo.reset()
    nets = tiny_nets(obs_dim=11, action_dim=3, termination_rule=rule_for("Hopper-v5"))
    spec = small_spec(termination_gradient_width=0.02)
    batch = random_batch(16, obs_dim=11, action_dim=3)
    explained = torch._dynamo.explain(update_terms)(nets, batch, spec)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_normalizer_is_the_identity_before_two_rows_and_standardises_after():
    normalizer = RunningNormalizer(2)  # float64 statistics
    zeros, ones = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    assert torch.equal(normalizer.mean, zeros) and torch.equal(normalizer.std, ones)
    normalizer.update(torch.tensor([[1.0, 2.0]]))  # one row: still the identity
    assert torch.equal(normalizer.mean, zeros) and torch.equal(normalizer.std, ones)
    normalizer.update(torch.tensor([[3.0, 2.0]]))  # two rows: mean (2, 2), variance (1, 0)
    torch.testing.assert_close(normalizer.mean, 2 * ones)
    variance = torch.tensor([1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(normalizer.std, torch.sqrt(variance + normalizer.eps))


def test_return_range_is_unit_and_clips_nothing_until_set():
    returns = torch.tensor([-1e6, 0.5, 1e6])
    unset = ReturnRange()
    center, width = unset.scale()
    assert (center.item(), width.item()) == (0.0, 1.0)
    assert torch.equal(unset.clip(returns), returns)

    low, high = torch.tensor(-10.0), torch.tensor(30.0)
    unset.update(low, high, gamma=0.0, rate=1.0)  # returns = rewards
    center, width = unset.scale()
    assert (center.item(), width.item()) == (10.0, 20.0)
    assert torch.equal(unset.clip(returns), torch.tensor([-10.0, 0.5, 30.0]))
    # A narrow range keeps a width of at least 1.
    narrow = ReturnRange()
    narrow.update(torch.tensor(2.0), torch.tensor(2.5), gamma=0.0, rate=1.0)
    assert narrow.scale()[1].item() == 1.0


def test_normalizer_and_return_range_trace_without_a_break():
    # fullgraph=True raises on data-dependent Python control flow (``if count < 2``).
    torch._dynamo.reset()
    normalizer, returns = RunningNormalizer(3), ReturnRange()
    x = torch.randn(5)

    @torch.compile(backend="eager", fullgraph=True)
    def read(normalizer, returns, x):
        center, width = returns.scale()
        return normalizer.mean, normalizer.std, center, width, returns.clip(x)

    unset = read(normalizer, returns, x)
    normalizer.update(torch.randn(4, 3))
    returns.update(torch.tensor(-1.0), torch.tensor(1.0), gamma=0.5, rate=1.0)
    set_ = read(normalizer, returns, x)
    assert torch.equal(unset[4], x) and torch.equal(set_[4], x.clamp(-2.0, 2.0))
    torch.testing.assert_close(set_[0], normalizer.total / normalizer.count)


def saved_dtypes_and_grads(params, x):
    """The dtypes a compiled ``ensemble_mlp`` (psi's layout: ReLU, layer norms) saves for
    its backward, its output and its parameters' gradients. The backend partitions the
    graph as inductor does (the min-cut partitioner), then runs eager kernels."""
    torch._dynamo.reset()
    for weight, bias in params:
        weight.grad = bias.grad = None
    compiled = torch.compile(
        lambda x: ensemble_mlp(x, params, Activation.RELU, layer_norm=True),
        backend="aot_eager_decomp_partition",
    )
    dtypes = []

    def pack(tensor):
        dtypes.append(tensor.dtype)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = compiled(x)
    out.sum().backward()
    return dtypes, out.detach(), [p.grad.clone() for layer in params for p in layer]


def test_compiled_relu_saves_no_bool_mask_and_has_f_relus_values_and_gradients(monkeypatch):
    # On AVX2 CPUs inductor stores and loads bool tensors slowly; F.relu's mask, where
    # the activation feeds a layer norm, is saved as one (`networks.relu`).
    torch.manual_seed(0)
    sizes = [(3, 8), (8, 8), (8, 1)]
    params = [
        (torch.randn(2, i, o, requires_grad=True), torch.randn(2, 1, o, requires_grad=True))
        for i, o in sizes
    ]
    # Row 0 puts the first layer's pre-activations at exactly 0, where F.relu's
    # gradient is 0 (and (x + |x|) / 2's would be 1/2).
    x = torch.cat([torch.zeros(1, 3), torch.randn(5, 3)])
    with torch.no_grad():
        params[0][1].zero_()
    eager_out = ensemble_mlp(x, params, Activation.RELU, layer_norm=True)
    eager_out.sum().backward()
    eager_grads = [p.grad.clone() for layer in params for p in layer]

    dtypes, out, grads = saved_dtypes_and_grads(params, x)
    assert dtypes and torch.bool not in dtypes
    torch.testing.assert_close(out, eager_out.detach())  # decomposed layer norm: rounding
    for grad, eager_grad in zip(grads, eager_grads):
        torch.testing.assert_close(grad, eager_grad)

    monkeypatch.setitem(ACTIVATIONS, Activation.RELU, F.relu)
    f_relu_dtypes, f_relu_out, _ = saved_dtypes_and_grads(params, x)
    assert torch.bool in f_relu_dtypes  # what the compiled networks.relu avoids
    assert torch.equal(f_relu_out, out)
