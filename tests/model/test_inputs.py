"""Input handling: physical units without manual scaling, nodata, and clear errors on bad input."""

import numpy as np
import pytest
import torch

from model import LITE, InvalidInputError, Registrar
from model.network import build_network
from model.normalize import prepare_optical, prepare_sar


@pytest.fixture(scope="module")
def registrar() -> Registrar:
    return Registrar(build_network(LITE), torch.device("cpu"), "untrained")


def test_bigearthnet_physical_units_normalise_like_scaled_products(bigearthnet_pair):
    opt, sar = bigearthnet_pair
    assert opt.dtype == np.uint16 and sar.dtype == np.float32 and (sar < 0).any()
    o, s = prepare_optical(opt, nodata=0), prepare_sar(sar)
    assert o.image.shape == (3, 120, 120) and s.image.shape == (1, 120, 120)
    for img in (o.image, s.image):
        assert img.min() >= 0 and img.max() <= 1
        assert 0.2 < float(img.mean()) < 0.8  # stretched, not crushed into a corner
    # dB and the same data as linear power normalise to the same tile
    linear = (10 ** (sar / 10)).astype(np.float32)
    np.testing.assert_allclose(prepare_sar(linear).image, s.image, atol=1e-3)


def test_registrar_takes_bigearthnet_as_it_is(registrar, bigearthnet_pair):
    opt, sar = bigearthnet_pair
    r = registrar.register(opt, sar, optical_nodata=0)
    assert r.flow.shape == (2, 120, 120) and np.isfinite(r.flow).all() and r.valid.any()


def test_nodata_and_nan_are_invalid(registrar, volkov_pair):
    opt, sar = volkov_pair
    opt = opt[:, :128, :128].astype(np.uint16)
    sar = sar[0, :128, :128].astype(np.float32) - 300.0  # negative: read as dB
    opt[:, :, :32] = 0
    sar[:40] = np.nan
    o, s = prepare_optical(opt, nodata=0), prepare_sar(sar)
    assert not o.valid[:, :32].any() and o.valid[:, 32:].all()
    assert not s.valid[:40].any() and s.valid[40:].all()
    assert (o.image[:, :, :32] == 0).all() and np.isfinite(s.image).all()
    r = registrar.register(opt, sar, optical_nodata=0)
    assert not r.valid[:, :32].any()
    assert (r.certainty[~r.valid] == 0).all()


@pytest.mark.parametrize(
    ("optical", "sar", "message"),
    [
        (np.zeros((1, 3, 64, 64)), np.zeros((64, 64)), "ndim 4"),
        (np.zeros((3, 32, 64)), np.zeros((32, 64)), "too small"),
        (np.full((3, 64, 64), np.nan), np.zeros((64, 64)), "no valid pixels"),
        (np.zeros((3, 64, 64)), np.full((64, 64), np.nan), "sar: no valid pixels"),
        (np.zeros((3, 64, 64)), np.zeros((80, 64)), "must both be"),
        (np.zeros((5, 64, 64)), np.zeros((64, 64)), "5 channels"),
        (np.zeros((3, 64, 64)), np.zeros((3, 64, 64)), "sar: 3 channels"),
        (np.array([["a"] * 64] * 64), np.zeros((64, 64)), "not numeric"),
    ],
)
def test_bad_input_raises_a_clear_value_error(registrar, optical, sar, message):
    with pytest.raises(ValueError, match=message):
        registrar.register(optical, sar)


def test_batch_lengths_must_match(registrar):
    with pytest.raises(InvalidInputError, match="same, non-zero number"):
        registrar.register_batch([np.zeros((3, 64, 64))], [])
