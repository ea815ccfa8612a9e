"""`soma train`: learns on real crops, validates, and resumes exactly where it stopped."""

import json
from dataclasses import replace

import pytest
import torch

from model import LITE, Registrar
from model.registrar import BUNDLED_CHECKPOINT
from model.network import build_network
from training.config import TrainConfig
from training.data import read_quadrants, select_quadrants
from training.loop import CHECKPOINT_FILE, STATE_FILE, train, validate, validation_batches
from tests.conftest import SAMPLE

SMOKE = TrainConfig(data_root=str(SAMPLE), train_tiles=("T11SMT",), val_tiles=("T11SMT",), crop=128,
                    large_every=0, batch_size=2, val_cases=3, val_every=1000, checkpoint_every=2, warmup_steps=2,
                    curriculum_steps=20)


def test_quadrants_carry_the_offsets_of_offsets_csv():
    quadrants = read_quadrants(SAMPLE)
    q = next(q for q in quadrants if q.pair_id == "187" and (q.x0, q.y0) == (512, 0))
    assert q.agree and q.tile == "T11SMT"
    assert q.offset == pytest.approx(((1.98 + 2.0) / 2, (2.01 + 2.0) / 2))
    trusted = select_quadrants(quadrants, ("T11SMT",), agree_only=True)
    assert {(q.pair_id, q.x0, q.y0) for q in trusted} == {("142", 512, 512), ("187", 0, 0), ("187", 512, 0),
                                                         ("187", 512, 512)}


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="s1s2_volkov"):
        read_quadrants(tmp_path)


@pytest.mark.slow
def test_a_few_steps_lower_the_validation_loss(tmp_path):
    config = replace(SMOKE, out_dir=str(tmp_path / "run"), steps=30, lr=2e-3)
    val = validation_batches(config)
    before = validate(build_network(LITE, seed=config.seed), val)["val_loss"]
    checkpoint = train(config, echo=lambda _: None)
    after = validate(Registrar.load(checkpoint, device="cpu").net, val)["val_loss"]
    assert after < before
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 31)) and "val_loss" in log[-1]


@pytest.mark.slow
def test_resume_after_a_crash_continues_exactly(tmp_path, monkeypatch):
    straight = replace(SMOKE, out_dir=str(tmp_path / "straight"), steps=6)
    train(straight, echo=lambda _: None)

    import training.loop as loop

    real_sample, calls = loop.sample_batch, []

    def crash_at_fifth_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == SMOKE.val_cases + 5:  # the validation cases come first; then past the step-4 checkpoint
            raise KeyboardInterrupt("killed")
        return real_sample(*args, **kwargs)

    interrupted = replace(straight, out_dir=str(tmp_path / "resumed"))
    monkeypatch.setattr(loop, "sample_batch", crash_at_fifth_step)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, echo=lambda _: None)
    monkeypatch.setattr(loop, "sample_batch", real_sample)
    messages = []
    train(interrupted, echo=messages.append)
    assert any("resumed at step 4" in m for m in messages)
    a = torch.load(tmp_path / "straight" / STATE_FILE, weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / STATE_FILE, weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "resumed" / CHECKPOINT_FILE).is_file()


def test_a_second_stage_starts_from_the_given_weights(tmp_path):
    bundled = Registrar.load(device="cpu")
    config = replace(SMOKE, out_dir=str(tmp_path / "stage2"), steps=1, lr=1e-9, warmup_steps=1,
                     init_from=str(BUNDLED_CHECKPOINT))
    messages = []
    checkpoint = train(config, echo=messages.append)
    assert any("starting from the weights of" in m for m in messages)
    start, after = bundled.net.state_dict(), Registrar.load(checkpoint, device="cpu").net.state_dict()
    fresh = build_network(LITE, seed=config.seed).state_dict()
    for key in start:
        torch.testing.assert_close(after[key], start[key], rtol=0, atol=1e-6)
    assert any(not torch.allclose(fresh[k], start[k]) for k in start if start[k].is_floating_point())
