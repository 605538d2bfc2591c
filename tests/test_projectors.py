"""Built-in projectors: shapes, gradients, argument checks."""

import pytest
import torch

import llara_kit
from llara_kit.errors import LlaraKitError


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_output_shape_and_gradients(name):
    torch.manual_seed(0)
    projector = llara_kit.get_projector(name)(64, 576)
    x = torch.randn(2, 20, 64, requires_grad=True)  # (B, items, d)
    y = projector(x)
    assert y.shape == (2, 20, 576)
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for param in projector.parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_mlp_is_two_layers_with_gelu():
    mlp = llara_kit.get_projector("mlp")(64, 576)
    kinds = [type(m).__name__ for m in mlp.net]
    assert kinds == ["Linear", "GELU", "Linear"]
    assert mlp.net[0].weight.shape == (576, 64) and mlp.net[2].weight.shape == (576, 576)


def test_linear_is_affine():
    lin = llara_kit.get_projector("linear")(8, 4)
    a, b = torch.randn(8), torch.randn(8)
    assert torch.allclose(lin(a + b) + lin(torch.zeros(8)), lin(a) + lin(b), atol=1e-5)


@pytest.mark.parametrize("args", [(0, 576), (64, -1), (64.0, 576)])
def test_bad_dimensions_are_rejected(args):
    with pytest.raises(LlaraKitError, match="must be a positive integer"):
        llara_kit.get_projector("mlp")(*args)
