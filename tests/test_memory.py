"""course_utils.memory: bytes per category, counted by hand on a model whose sizes we know."""
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from course_utils.memory import (SavedActivations, breakdown, gradient_bytes, optimizer_state_bytes,  # noqa: E402
                                 parameter_bytes, tensor_bytes)

B, D, H, C = 8, 5, 7, 3  # batch, inputs, hidden, classes


def model_and_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, H), nn.Tanh(), nn.Linear(H, C))
    return model, torch.randn(B, D), torch.randint(0, C, (B,))


P = D * H + H + H * C + C  # parameters


def test_tensor_bytes_counts_numel_times_element_size_and_skips_none():
    assert tensor_bytes([torch.zeros(3, 4), None, torch.zeros(5, dtype=torch.float64)]) == 12 * 4 + 5 * 8


def test_parameters_gradients_and_adam_state_by_hand():
    model, x, y = model_and_batch()
    opt = torch.optim.Adam(model.parameters())
    assert parameter_bytes(model) == 4 * P
    assert gradient_bytes(model) == 0 and optimizer_state_bytes(opt) == 0  # nothing until used
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert gradient_bytes(model) == 4 * P
    assert optimizer_state_bytes(opt, moments_only=True) == 2 * 4 * P  # exp_avg and exp_avg_sq
    assert optimizer_state_bytes(opt) == 2 * 4 * P + 4 * 4  # plus one float32 step counter per tensor
    opt.zero_grad(set_to_none=True)
    assert gradient_bytes(model) == 0


def test_saved_activations_count_each_storage_once_and_not_the_weights():
    model, x, y = model_and_batch()
    with SavedActivations(model) as saved:
        loss = nn.functional.cross_entropy(model(x), y)
    # x; the Tanh output (saved by Tanh and by the next Linear: one storage); log-softmax output;
    # the int64 targets; a float32 scalar (nll_loss's total weight)
    assert saved.bytes == 4 * (B * D + B * H + B * C) + 8 * B + 4
    assert saved.count == len(saved.tensors) == 5
    loss.backward()  # the hooks only observe: backward still works


def test_breakdown_totals_and_dtensor_local_shard():
    model, x, y = model_and_batch()
    parts = breakdown(model, None, activations=10)
    assert parts["total"] == parts["parameters"] + 10 == 4 * P + 10

    class FakeDTensor:  # what FSDP2 hands out: a global shape, a local shard
        def __init__(self, local):
            self.local = local

        def to_local(self):
            return self.local
    assert tensor_bytes([FakeDTensor(torch.zeros(2, 3))]) == 24
