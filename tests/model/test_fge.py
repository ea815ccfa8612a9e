"""FGE: the oriented filter bank responds to its own orientation; the block keeps shapes and learns."""

import math

import pytest
import torch

from model.config import FGEConfig
from model.fge import FeatureGradientEnhancer, GradientFilterBank, orientations_deg


def step_edge(angle_deg: float, size: int = 65) -> torch.Tensor:
    """`(1, 1, S, S)` unit step (slightly smoothed) whose intensity increases along `angle_deg` (x right, y down)."""
    r = torch.arange(size, dtype=torch.float32) - size // 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    t = math.radians(angle_deg)
    return (0.5 * (1 + torch.tanh(2 * (x * math.cos(t) + y * math.sin(t)))))[None, None]


def test_bank_has_eight_orientations_at_two_scales():
    cfg = FGEConfig()
    bank = GradientFilterBank(cfg.orientations, cfg.sigmas, cfg.kernel_radius_sigmas)
    assert cfg.orientations >= 8 and len(cfg.sigmas) >= 2
    assert bank.num_filters == cfg.orientations * len(cfg.sigmas)
    flat = bank.weight.flatten(1)
    # All kernels distinct (the released code repeats 5 kernels).
    dists = torch.cdist(flat, flat) + torch.eye(len(flat)) * 1e9
    assert dists.min() > 1e-3
    assert bank.weight.requires_grad


@pytest.mark.parametrize("index", range(8))
def test_each_orientation_channel_responds_most_to_its_own_edge(index):
    cfg = FGEConfig()
    bank = GradientFilterBank(cfg.orientations, cfg.sigmas, cfg.kernel_radius_sigmas)
    angle = orientations_deg(cfg.orientations)[index]
    with torch.no_grad():
        resp = bank(step_edge(angle))[0, :, 32, 32].abs()  # at the edge, centre pixel
    for scale in range(len(cfg.sigmas)):
        per_orientation = resp[scale * cfg.orientations : (scale + 1) * cfg.orientations]
        assert int(per_orientation.argmax()) == index
        # and clearly: the orthogonal filter barely responds
        orth = (index + cfg.orientations // 2) % cfg.orientations
        assert per_orientation[orth] < 0.1 * per_orientation[index]


def test_response_to_unit_step_is_about_one():
    cfg = FGEConfig()
    bank = GradientFilterBank(cfg.orientations, cfg.sigmas, cfg.kernel_radius_sigmas)
    with torch.no_grad():
        resp = bank(step_edge(0.0))[0, 0, 32, 32]
    assert 0.8 < float(resp) < 1.2


def test_block_keeps_shape_and_gradients_reach_the_filters():
    fge = FeatureGradientEnhancer(32, FGEConfig())
    x = torch.randn(2, 32, 40, 48)
    out = fge(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert fge.bank.weight.grad is not None and fge.bank.weight.grad.abs().sum() > 0
