"""Forward shapes, the paper config, checkpoints and determinism."""

import numpy as np
import pytest
import torch

from model import LITE, PAPER, CheckpointError, Registrar
from model.checkpoint import load_network, save_checkpoint
from model.network import build_network


@pytest.fixture(scope="module")
def registrar() -> Registrar:
    return Registrar(build_network(LITE), torch.device("cpu"), "untrained")


@pytest.mark.parametrize("shape", [(64, 64), (256, 256), (300, 500), (512, 512)])
def test_forward_shapes(registrar, shape):
    rng = np.random.default_rng(0)
    r = registrar.register(rng.random((3, *shape), dtype=np.float32), rng.random(shape, dtype=np.float32))
    assert r.flow.shape == (2, *shape) and r.flow.dtype == np.float32
    assert r.certainty.shape == shape and r.certainty.dtype == np.float32
    assert ((r.certainty >= 0) & (r.certainty <= 1)).all()
    assert r.valid.shape == shape and r.valid.dtype == bool
    assert r.affine.shape == (2, 3) and r.affine.dtype == np.float64
    assert np.isfinite(r.flow).all()


def test_batch_equals_single(registrar, volkov_pair):
    opt, sar = volkov_pair
    tiles = [(opt[:, :128, :128], sar[:, :128, :128]), (opt[:, 128:256, :128], sar[:, 128:256, :128])]
    batch = registrar.register_batch([o for o, _ in tiles], [s for _, s in tiles])
    for (o, s), rb in zip(tiles, batch):
        r1 = registrar.register(o, s)
        np.testing.assert_allclose(rb.flow, r1.flow, atol=1e-3)  # batched convs round differently
        np.testing.assert_allclose(rb.affine, r1.affine, atol=1e-4)


def test_inference_is_deterministic(registrar, volkov_pair):
    opt, sar = volkov_pair
    a = registrar.register(opt[:, :256, :256], sar[:, :256, :256])
    b = registrar.register(opt[:, :256, :256], sar[:, :256, :256])
    assert np.array_equal(a.flow, b.flow) and np.array_equal(a.certainty, b.certainty)


def test_paper_config_forward_with_random_weights():
    net = build_network(PAPER).eval()
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params > 300e6  # ViT-L/14 (~300 M) + two ResNet-50 trunks
    vit = net.encoders["vit"]
    assert not any(p.requires_grad for p in vit.parameters())
    with torch.no_grad():
        out = net(torch.rand(1, 3, 128, 128), torch.rand(1, 1, 128, 128), torch.ones(1, 128, 128, dtype=torch.bool),
                  torch.ones(1, 128, 128, dtype=torch.bool))
    assert out.flow.shape == (1, 2, 128, 128) and torch.isfinite(out.flow).all()


def test_paper_config_refuses_missing_backbone_weights(tmp_path):
    from dataclasses import replace

    cfg = replace(PAPER, encoder=replace(PAPER.encoder, dinov2_weights=str(tmp_path / "dinov2_vitl14_reg4.pth")))
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_network(cfg)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, volkov_pair):
    net = build_network(LITE, seed=3)
    path = save_checkpoint(tmp_path / "soma.pt", net, meta={"note": "round trip"})
    loaded, meta = load_network(path)
    assert meta == {"note": "round trip"}
    opt, sar = volkov_pair
    a = Registrar(net, torch.device("cpu"), "x").register(opt[:, :192, :192], sar[:, :192, :192])
    b = Registrar.load(path, device="cpu").register(opt[:, :192, :192], sar[:, :192, :192])
    assert np.array_equal(a.flow, b.flow) and np.array_equal(a.affine, b.affine)


def test_checkpoint_that_is_not_soma_is_refused(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a SOMA checkpoint"):
        Registrar.load(other)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        Registrar.load(garbage)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "soma-checkpoint/1", "config": Evil(), "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        Registrar.load(path)


def test_checkpoint_with_wrong_weights_is_refused(tmp_path):
    net = build_network(LITE)
    path = save_checkpoint(tmp_path / "soma.pt", net)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match"):
        Registrar.load(path)
