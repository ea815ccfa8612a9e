"""Test-time refinement: recovers injected motion on a real image, the guard, batching, determinism, and
that with refinement off the Registrar gives the network's output."""

import numpy as np
import pytest
import torch

from model import LITE, Registrar
from model.config import RefineConfig
from model.network import build_network
from model.normalize import prepare_optical, prepare_sar
from model.refine import CANDIDATES, refine, refine_guarded
from model.similarity import Descriptor
from model.translation_search import search_translation, shift_costs
from model.synthetic_warp import Misregistration, centred_affine, move_sar, smooth_field, true_flow
from model.training import sample_mask

SIZE = 256
CONFIG = RefineConfig(enabled=True)


def tensors(optical: np.ndarray, sar: np.ndarray) -> tuple[torch.Tensor, ...]:
    o, s = prepare_optical(optical), prepare_sar(sar)
    return (torch.from_numpy(o.image)[None], torch.from_numpy(o.valid)[None],
            torch.from_numpy(s.image)[None], torch.from_numpy(s.valid)[None])


@pytest.fixture(scope="module")
def sar_case(volkov_pair):
    """A real SAR crop as the reference and the same crop moved by a known sub-pixel shift, 0.6 deg
    rotation and a smooth 0.8 px field: one modality, so the similarity's optimum is the truth."""
    _, sar = volkov_pair
    reference = sar[:, 600 : 600 + SIZE, 300 : 300 + SIZE].astype(np.float32)
    grid = np.random.default_rng(3).uniform(-1, 1, size=(2, 4, 4))
    field = smooth_field(grid, (SIZE, SIZE))
    field *= 0.8 / np.hypot(*field).max()
    mis = Misregistration(centred_affine((SIZE, SIZE), 0.6, 1.0, 0.0, (0.7, -0.4)), field)
    moved = move_sar(sar.astype(np.float32), mis, (SIZE, SIZE), (300, 600))
    truth, defined = true_flow(mis, (SIZE, SIZE))
    valid = defined & sample_mask(np.isfinite(moved[0]), truth)
    return np.repeat(reference, 3, axis=0), moved, truth, valid


def rmse(flow: torch.Tensor, truth: np.ndarray, valid: np.ndarray) -> float:
    return float(np.sqrt(((flow[0].numpy() - truth) ** 2).sum(axis=0)[valid].mean()))


def test_refinement_recovers_an_injected_shift_rotation_and_field(sar_case):
    reference, moved, truth, valid = sar_case
    o, ov, s, sv = tensors(reference, moved)
    start = torch.zeros(1, 2, SIZE, SIZE)
    before = rmse(start, truth, valid)
    out = refine(Descriptor(CONFIG), o, ov, s, sv, start, CONFIG)
    after = rmse(out.flow, truth, valid)
    assert before > 1.0
    assert after < 0.3, f"refined RMSE {after:.2f} px (start {before:.2f} px)"


def test_the_guard_replaces_a_wrong_start(sar_case):
    reference, moved, truth, valid = sar_case
    o, ov, s, sv = tensors(reference, moved)
    wrong = torch.zeros(1, 2, SIZE, SIZE)
    wrong[:, 0] += 40.0  # far outside any basin
    out = refine_guarded(Descriptor(CONFIG), o, ov, s, sv, wrong, CONFIG)
    assert out.chosen[0] != "start"
    assert rmse(out.flow, truth, valid) < rmse(wrong, truth, valid) / 10


def test_a_batch_gives_what_single_tiles_give(volkov_pair):
    optical, sar = volkov_pair
    tiles = [(optical[:, :SIZE, :SIZE], sar[:, :SIZE, :SIZE]),
             (optical[:, SIZE : 2 * SIZE, :SIZE], sar[:, SIZE : 2 * SIZE, :SIZE])]
    prepared = [tensors(o, s) for o, s in tiles]
    batched = [torch.cat(parts) for parts in zip(*prepared)]
    start = torch.zeros(2, 2, SIZE, SIZE)
    descriptor = Descriptor(CONFIG)
    together = refine_guarded(descriptor, *batched, start, CONFIG)
    for i, parts in enumerate(prepared):
        alone = refine_guarded(descriptor, *parts, start[i : i + 1], CONFIG)
        assert alone.chosen[0] == together.chosen[i]
        np.testing.assert_allclose(together.flow[i].numpy(), alone.flow[0].numpy(), atol=1e-3)
    again = refine_guarded(descriptor, *batched, start, CONFIG)
    assert torch.equal(again.flow, together.flow)  # deterministic


def test_with_refinement_off_the_output_is_the_network_s(volkov_pair):
    optical, sar = volkov_pair
    o, s = optical[:, :SIZE, :SIZE], sar[:, :SIZE, :SIZE]
    net = build_network(LITE)
    plain = Registrar(net, torch.device("cpu"), "untrained", RefineConfig(enabled=False)).register(o, s)
    o_img, o_val, s_img, s_val = tensors(o, s)
    with torch.inference_mode():
        direct = net(o_img, s_img, o_val, s_val, robust=True).flow[0].numpy()
    assert plain.chosen == "network"
    np.testing.assert_array_equal(plain.flow, direct)
    refined = Registrar(net, torch.device("cpu"), "untrained", CONFIG).register(o, s)
    assert refined.chosen in CANDIDATES


def test_refine_config_round_trips():
    config = RefineConfig(enabled=True, levels=(4, 2, 1), iterations=(3, 2, 1), objective="ngf", linear="affine")
    assert RefineConfig.from_dict(config.to_dict()) == config


def test_shift_costs_equal_the_masked_ssd_computed_directly():
    gen = torch.Generator().manual_seed(0)
    h, w = 20, 24
    ref, moved = torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen)
    wr, wm = ((torch.rand(1, h, w, generator=gen) > 0.2).float() for _ in range(2))
    cost, share = shift_costs(ref, wr, moved, wm)
    for tx, ty in ((0, 0), (3, -2), (-5, 4)):
        at_p = (..., slice(max(0, -ty), h - max(0, ty)), slice(max(0, -tx), w - max(0, tx)))
        at_pt = (..., slice(max(0, ty), h + min(0, ty)), slice(max(0, tx), w + min(0, tx)))  # p + t
        weight = wr[at_p] * wm[at_pt]
        direct = (weight * ((ref[at_p] - moved[at_pt]) ** 2).sum(dim=1)).sum() / weight.sum()
        torch.testing.assert_close(cost[0, ty % (2 * h), tx % (2 * w)], direct, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(share[0, ty % (2 * h), tx % (2 * w)], weight.sum() / wr.sum(), rtol=1e-4, atol=1e-4)


def test_the_shift_search_brings_a_start_far_outside_the_basin_back_to_it(sar_case):
    reference, moved, truth, valid = sar_case
    o, ov, s, sv = tensors(reference, moved)
    start = torch.from_numpy(truth)[None].float() + torch.tensor([11.0, -9.0]).view(1, 2, 1, 1)
    searched = search_translation(Descriptor(CONFIG), o, ov, s, sv, start, CONFIG)
    assert rmse(start, truth, valid) > 14
    assert rmse(searched, truth, valid) < CONFIG.levels[0]  # the search steps by the coarsest level's factor
    assert torch.equal(search_translation(Descriptor(CONFIG), o, ov, s, sv, start,
                                          RefineConfig(search_radius_px=0)), start)
