"""Learning: a step lowers the loss; 100 steps overfit one real pair with a known misregistration."""

import dataclasses

import numpy as np
import pytest
import torch

from model import LITE
from model.network import build_network
from model.synthetic_warp import MisregistrationRange, random_misregistration
from model.training import evaluate_batch, make_batch, train_step
from tests.conftest import VOLKOV_187_Q1, VOLKOV_187_Q1_OFFSET

CROP = 128
ROW0, COL0 = VOLKOV_187_Q1[0].start + 200, VOLKOV_187_Q1[1].start + 188  # inside the agreed quadrant
OVERFIT_STEPS = 100
SMALL = MisregistrationRange(max_rotation_deg=3.0, max_translation_px=4.0, field_amplitude_px=0.5)


@pytest.fixture(scope="module")
def one_pair_batch(volkov_pair):
    opt, sar = volkov_pair
    window = (slice(None), slice(ROW0, ROW0 + CROP), slice(COL0, COL0 + CROP))
    mis = random_misregistration(np.random.default_rng(1), (CROP, CROP), SMALL)
    mis = dataclasses.replace(mis, pair_offset=VOLKOV_187_Q1_OFFSET)
    return make_batch([(opt[window], sar[window])], [mis])


def test_ground_truth_includes_the_pairs_own_offset(one_pair_batch):
    # Identity registration scores exactly the RMSE of the injected transform (+ the pair's own offset).
    from model.losses import flow_rmse

    b = one_pair_batch
    identity = flow_rmse(torch.zeros_like(b.flow), b.flow, b.valid)
    expected = b.flow.square().sum(1)[b.valid].mean().sqrt()
    assert torch.isclose(identity[0], expected)
    assert float(identity) > 2.0  # the misregistration is real, not a no-op


def test_one_step_lowers_the_loss(one_pair_batch):
    net = build_network(LITE, seed=0)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = evaluate_batch(net, one_pair_batch)["total"]
    train_step(net, optimiser, one_pair_batch)
    after = evaluate_batch(net, one_pair_batch)["total"]
    assert after < before


@pytest.mark.slow
def test_hundred_steps_overfit_one_pair_below_one_pixel(one_pair_batch):
    net = build_network(LITE, seed=0)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: 1 - i / OVERFIT_STEPS)
    start = evaluate_batch(net, one_pair_batch)["rmse"]
    for _ in range(OVERFIT_STEPS):
        train_step(net, optimiser, one_pair_batch)
        decay.step()
    end = evaluate_batch(net, one_pair_batch)["rmse"]  # inference path: robust affine fit, eval mode
    assert start > 4.0
    assert end < 1.0, f"RMSE after {OVERFIT_STEPS} steps: {end:.2f} px (start {start:.2f} px)"


def test_one_paper_training_step_runs_on_cpu_with_random_weights(one_pair_batch):
    from model import PAPER

    net = build_network(PAPER, seed=0)
    trainable = [p for p in net.parameters() if p.requires_grad]
    vit_before = next(net.encoders["vit"].parameters()).detach().clone()
    resnet_before = net.encoders["sar"].resnet.conv1.weight.detach().clone()
    optimiser = torch.optim.AdamW(trainable, lr=1e-4)
    terms = train_step(net, optimiser, one_pair_batch)
    assert all(np.isfinite(v) for v in terms.values())
    assert torch.equal(next(net.encoders["vit"].parameters()), vit_before)  # the shared ViT stays frozen
    assert not torch.equal(net.encoders["sar"].resnet.conv1.weight, resnet_before)  # the CNN trunk learns
