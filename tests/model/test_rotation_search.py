"""The robust start: the sweep's shift score is the centred cosine it claims to be, and on a real optical/SAR
pair moved by a large rotation, scale and shift, the sweep finds the basin the network's start missed."""

import numpy as np
import pytest
import torch

from model.config import RefineConfig
from model.normalize import prepare_optical, prepare_sar
from model.rotation_search import ShiftScorer, centred_similarity, sweep_candidates, sweep_start
from model.similarity import Descriptor
from model.synthetic_warp import Misregistration, centred_affine, move_sar, true_flow
from model.training import sample_mask
from model.geometry import affine_to_flow
from tests.conftest import VOLKOV_187_Q1, VOLKOV_187_Q1_OFFSET

SIZE = 512
CONFIG = RefineConfig()


def test_the_shift_score_is_the_cosine_of_the_overlapping_descriptors():
    gen = torch.Generator().manual_seed(0)
    h, w = 20, 24
    ref, moved = torch.randn(1, 3, h, w, generator=gen), torch.randn(1, 3, h, w, generator=gen)
    wr, wm = ((torch.rand(1, h, w, generator=gen) > 0.2).float() for _ in range(2))
    cost, share = ShiftScorer(ref, wr)(moved, wm)
    for tx, ty in ((0, 0), (3, -2), (-5, 4)):
        at_p = (..., slice(max(0, -ty), h - max(0, ty)), slice(max(0, -tx), w - max(0, tx)))
        at_pt = (..., slice(max(0, ty), h + min(0, ty)), slice(max(0, tx), w + min(0, tx)))  # p + t
        weight = wr[at_p] * wm[at_pt]
        a, b = ref[at_p] * weight.sqrt(), moved[at_pt] * weight.sqrt()
        direct = 1 - (a * b).sum() / (a.norm() * b.norm())
        torch.testing.assert_close(cost[0, ty % (2 * h), tx % (2 * w)], direct, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(share[0, ty % (2 * h), tx % (2 * w)], weight.sum() / wr.sum(), rtol=1e-4, atol=1e-4)


def test_a_centred_similarity_rotates_and_scales_about_the_centre():
    affine = centred_similarity(torch.tensor([16.0], dtype=torch.float64), torch.tensor([1.08], dtype=torch.float64),
                                (SIZE, SIZE))
    expected = centred_affine((SIZE, SIZE), 16.0, 1.08, 0.0, (0.0, 0.0))
    np.testing.assert_allclose(affine[0].numpy(), expected, atol=1e-9)


@pytest.fixture(scope="module")
def rotated_case(volkov_pair):
    """The agreed quadrant of a real pair, its SAR moved by 17 deg, scale 0.93 and (27, -31) px."""
    optical, sar = volkov_pair
    rows, cols = VOLKOV_187_Q1
    mis = Misregistration(centred_affine((SIZE, SIZE), 17.0, 0.93, 0.0, (27.0, -31.0)), None, VOLKOV_187_Q1_OFFSET)
    moved = move_sar(sar.astype(np.float32), mis, (SIZE, SIZE), (cols.start, rows.start))
    truth, defined = true_flow(mis, (SIZE, SIZE))
    valid = defined & sample_mask(np.isfinite(moved[0]), truth)
    o, s = prepare_optical(optical[:, rows, cols]), prepare_sar(moved)
    tensors = (torch.from_numpy(o.image)[None], torch.from_numpy(o.valid)[None],
               torch.from_numpy(s.image)[None], torch.from_numpy(s.valid)[None])
    return tensors, truth, valid


def rmse(flow: torch.Tensor, truth: np.ndarray, valid: np.ndarray) -> float:
    return float(np.sqrt(((flow[0].numpy() - truth) ** 2).sum(axis=0)[valid].mean()))


def test_the_sweep_finds_a_large_rotation_the_start_missed(rotated_case):
    (o, ov, s, sv), truth, valid = rotated_case
    descriptor = Descriptor(CONFIG)
    with torch.inference_mode():
        best = sweep_candidates(descriptor, o, ov, s, sv, CONFIG)[0][0]
        wrong = affine_to_flow(centred_similarity(torch.tensor([-5.0]), torch.tensor([1.0]), (SIZE, SIZE)).float(),
                               (SIZE, SIZE))
        chosen = sweep_start(descriptor, o, ov, s, sv, wrong, CONFIG)
    assert rmse(wrong, truth, valid) > 40
    assert rmse(best, truth, valid) < 16  # the sweep's grid: 2 deg and 5 % of scale at worst, 4 px shift steps
    assert chosen.chosen == ("sweep",)
    assert rmse(chosen.flow, truth, valid) < 4  # after the coarse similarity fit: inside the refinement's basin


def test_a_good_start_is_kept_as_it_is(rotated_case):
    (o, ov, s, sv), truth, valid = rotated_case
    good = torch.from_numpy(truth)[None].float()
    with torch.inference_mode():
        chosen = sweep_start(Descriptor(CONFIG), o, ov, s, sv, good, CONFIG)
    assert chosen.chosen == ("network",)
    assert torch.equal(chosen.flow, good)
