"""Flow and coordinate conventions: coregistered(p) = sar(p + flow(p)), pixel centres at integers."""

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from model import warp_numpy
from model.geometry import affine_to_flow, cell_centres, downsample_flow, nearest_similarity, upsample_flow, warp


def smooth_flow(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.uniform(-3, 3, size=2)
    return np.stack([a + 2.0 * np.sin(y / 17.0) + 0.01 * x, b + 1.5 * np.cos(x / 23.0)]).astype(np.float32)


def test_warp_matches_backward_map_definition(volkov_pair):
    sar = volkov_pair[1][0, 100:196, 200:328].astype(np.float32)  # real SAR, 96 x 128
    flow = smooth_flow(*sar.shape, np.random.default_rng(0))
    ours = warp_numpy(sar, flow)
    y, x = np.mgrid[0 : sar.shape[0], 0 : sar.shape[1]].astype(np.float64)
    reference = map_coordinates(sar.astype(np.float64), [y + flow[1], x + flow[0]], order=1, mode="constant",
                                cval=np.nan)
    both = np.isfinite(ours) & np.isfinite(reference)
    assert both.mean() > 0.8
    np.testing.assert_allclose(ours[both], reference[both], atol=1e-3)


def test_integer_shift_is_a_slice():
    img = torch.arange(64 * 80, dtype=torch.float32).reshape(1, 1, 64, 80)
    flow = torch.zeros(1, 2, 64, 80)
    flow[:, 0], flow[:, 1] = 3.0, -2.0
    out = warp(img, flow)
    # out[y, x] = img[y - 2, x + 3] (up to grid_sample's float rounding)
    torch.testing.assert_close(out[0, 0, 2:, :-3], img[0, 0, :-2, 3:], atol=2e-3, rtol=0)


def test_cell_centres_follow_stride_convention():
    c = cell_centres(32, 32, 4)
    assert c.shape == (2, 8, 8)
    assert float(c[0, 0, 0]) == 1.5 and float(c[0, 0, 1]) == 5.5  # pixels 0..3 -> centre 1.5


@pytest.mark.parametrize("stride", [2, 4, 8, 16])
def test_affine_flow_is_consistent_across_strides(stride):
    affine = torch.tensor([[[1.01, -0.05, 3.2], [0.04, 0.99, -1.7]]])
    full = affine_to_flow(affine, (64, 64), 1)
    coarse = affine_to_flow(affine, (64, 64), stride)
    pooled, _ = downsample_flow(full, torch.ones(1, 64, 64, dtype=torch.bool), stride)
    assert torch.allclose(coarse, pooled, atol=1e-4)
    # bilinear upsampling of an affine flow reproduces it away from the border
    up = upsample_flow(coarse, stride)
    m = stride
    assert torch.allclose(up[..., m:-m, m:-m], full[..., m:-m, m:-m], atol=1e-3)


def test_warp_at_a_coarse_stride_samples_the_same_positions():
    img = torch.rand(1, 1, 64, 64)
    coarse = torch.nn.functional.avg_pool2d(img, 4)
    flow = torch.full((1, 2, 16, 16), 4.0)  # one cell right and down, in full-resolution px
    out = warp(coarse, flow, (64, 64))
    assert torch.allclose(out[0, 0, :-1, :-1], coarse[0, 0, 1:, 1:], atol=1e-6)


def test_nearest_similarity_keeps_a_similarity_and_drops_shear_about_the_centre():
    size = (64, 96)
    angle, scale = np.deg2rad(7.0), 1.05
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    similar = torch.tensor(np.hstack([rot, [[3.0], [-2.0]]])[None])
    torch.testing.assert_close(nearest_similarity(similar, size), similar)
    shear = np.array([[0.0, 0.04], [0.04, 0.0]])  # symmetric: orthogonal to every similarity
    sheared = torch.tensor(np.hstack([rot + shear, [[3.0], [-2.0]]])[None])
    got = nearest_similarity(sheared, size)
    torch.testing.assert_close(got[:, :, :2], similar[:, :, :2])
    centre = torch.tensor([[[(96 - 1) / 2.0, (64 - 1) / 2.0]]], dtype=torch.float64)
    moved = lambda a: centre @ a[:, :, :2].transpose(1, 2) + a[:, :, 2]  # noqa: E731
    torch.testing.assert_close(moved(got), moved(sheared))
