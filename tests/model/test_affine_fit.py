"""Affine estimation: exact on clean correspondences, robust to 30 % outliers."""

import numpy as np
import pytest
import torch

from model.affine_fit import fit_affine_robust, fit_affine_wls, plausible

TRUE = torch.tensor([[[0.97, -0.21, 12.5], [0.19, 1.03, -7.25]]], dtype=torch.float32)


def correspondences(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.from_numpy(rng.uniform(0, 511, size=(1, n, 2))).float()
    dst = src @ TRUE[:, :, :2].transpose(1, 2) + TRUE[:, :, 2].unsqueeze(1)
    return src, dst


def test_wls_recovers_exact_affine():
    src, dst = correspondences(50, np.random.default_rng(0))
    est = fit_affine_wls(src, dst, torch.ones(1, 50))
    assert torch.allclose(est, TRUE, atol=1e-4)


def test_wls_is_differentiable():
    src, dst = correspondences(20, np.random.default_rng(1))
    w = torch.ones(1, 20, requires_grad=True)
    dst = dst.clone().requires_grad_(True)
    fit_affine_wls(src, dst + 0.3 * torch.randn_like(dst), w).sum().backward()
    assert w.grad is not None and dst.grad is not None and torch.isfinite(dst.grad).all()


def test_wls_without_weight_stays_at_prior():
    src, dst = correspondences(20, np.random.default_rng(2))
    prior = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]]])
    est = fit_affine_wls(src, dst, torch.zeros(1, 20), prior=prior)
    assert torch.allclose(est, prior, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_robust_fit_within_a_tenth_of_a_pixel_with_30_percent_outliers(seed):
    rng = np.random.default_rng(seed)
    n = 200
    src, dst = correspondences(n, rng)
    outliers = rng.choice(n, size=int(0.3 * n), replace=False)
    dst[0, outliers] += torch.from_numpy(rng.uniform(-60, 60, size=(len(outliers), 2))).float()
    est = fit_affine_robust(src, dst, torch.ones(1, n), threshold=2.0)
    corners = torch.tensor([[[0.0, 0.0], [511.0, 0.0], [0.0, 511.0], [511.0, 511.0]]])
    err = (corners @ (est - TRUE)[:, :, :2].transpose(1, 2) + (est - TRUE)[:, :, 2].unsqueeze(1)).norm(dim=-1)
    assert float(err.max()) < 0.1
    # least squares alone is pulled far off by the same outliers
    ls = fit_affine_wls(src, dst, torch.ones(1, n))
    ls_err = (corners @ (ls - TRUE)[:, :, :2].transpose(1, 2) + (ls - TRUE)[:, :, 2].unsqueeze(1)).norm(dim=-1)
    assert float(ls_err.max()) > 1.0


def test_robust_fit_is_deterministic():
    rng = np.random.default_rng(5)
    src, dst = correspondences(100, rng)
    dst = dst + torch.from_numpy(rng.normal(0, 0.5, size=dst.shape)).float()
    a = fit_affine_robust(src, dst, torch.ones(1, 100), threshold=2.0)
    b = fit_affine_robust(src, dst, torch.ones(1, 100), threshold=2.0)
    assert torch.equal(a, b)


def test_plausibility_rejects_reflections_and_collapse():
    good = TRUE
    reflect = torch.tensor([[[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    collapse = torch.tensor([[[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]]])
    assert plausible(torch.cat([good, reflect, collapse]), 1.5).tolist() == [True, False, False]
