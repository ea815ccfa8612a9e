"""The resumable training loop: progress, periodic validation, atomic checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from model import SomaConfig, get_config
from model.checkpoint import load_network, save_checkpoint
from model.network import build_network
from model.registrar import resolve_device
from model.training import TrainingBatch, evaluate_batch, train_step

from .config import TrainConfig
from .data import load_pairs, read_quadrants, select_quadrants
from .sampling import sample_batch

STATE_FILE = "state.pt"
CHECKPOINT_FILE = "soma.pt"
LOG_FILE = "log.jsonl"


def model_config(config: TrainConfig) -> SomaConfig:
    """The network to train; `paper` takes its backbone weights from the local files named in `config`."""
    base = get_config(config.model)
    if base.encoder.kind != "paper":
        return base
    if not (config.resnet_weights and config.dinov2_weights):
        raise ValueError("the paper config trains from pretrained backbones: pass --resnet-weights and "
                         "--dinov2-weights (local files; nothing is downloaded)")
    return dataclasses.replace(base, encoder=dataclasses.replace(
        base.encoder, resnet_weights=config.resnet_weights, dinov2_weights=config.dinov2_weights))


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to `min_lr`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))


def step_rng(config: TrainConfig, step: int) -> np.random.Generator:
    """The sample generator of one step: stateless, so a resumed run draws what it would have drawn."""
    return np.random.default_rng([config.seed, step])


def validation_batches(config: TrainConfig) -> list[TrainingBatch]:
    """Fixed, seeded cases from the validation tiles' agreeing quadrants (no appearance changes)."""
    quadrants = select_quadrants(read_quadrants(config.data_root), config.val_tiles, agree_only=True)
    pairs = load_pairs(config.data_root, {q.pair_id for q in quadrants})
    rng = np.random.default_rng([config.seed, 10**6])
    return [sample_batch(rng, quadrants, pairs, config.crop, 1, config.warp_for(config.crop), None)
            for _ in range(config.val_cases)]


def validate(net: torch.nn.Module, batches: list[TrainingBatch]) -> dict[str, float]:
    """Mean loss and the CMR@k of the inference path over the validation cases."""
    results = [evaluate_batch(net, b) for b in batches]
    rmse = np.array([r["rmse"] for r in results])
    return {"val_loss": float(np.mean([r["total"] for r in results])), "val_median_rmse": float(np.median(rmse)),
            **{f"val_cmr@{k}": float((rmse < k).mean()) for k in (1, 3, 5)}}


def _save_state(path: Path, net: torch.nn.Module, optimiser: torch.optim.Optimizer, step: int,
                config: TrainConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": net.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
                "config": json.dumps(dataclasses.asdict(config))}, tmp)
    tmp.replace(path)


def train(config: TrainConfig, echo: Callable[[str], None] = print) -> Path:
    """Train (or resume) the run in `config.out_dir`; returns the path of its model checkpoint."""
    torch.set_num_threads(config.threads)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quadrants = select_quadrants(read_quadrants(config.data_root), config.train_tiles,
                                 config.max_offset_disagreement_px)
    if not quadrants:
        raise ValueError(f"no training quadrants in tiles {config.train_tiles} under {config.data_root}")
    pairs = load_pairs(config.data_root, {q.pair_id for q in quadrants})
    val = validation_batches(config)
    echo(f"training on {len(quadrants)} quadrants of {len(pairs)} pairs ({', '.join(config.train_tiles)}); "
         f"validating on {len(val)} cases ({', '.join(config.val_tiles)}); device {resolve_device(config.device)}")

    device = resolve_device(config.device)
    val = [b.to(device) for b in val]
    net = build_network(model_config(config), seed=config.seed).to(device)
    optimiser = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    step = 0
    state_path = out / STATE_FILE
    if state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step = int(state["step"])
        echo(f"resumed at step {step} from {state_path}")
    elif config.init_from:
        start, meta = load_network(config.init_from)
        net.load_state_dict(start.state_dict())
        echo(f"starting from the weights of {config.init_from} (its step {meta.get('step', '?')})")

    started, log = time.perf_counter(), open(out / LOG_FILE, "a")
    try:
        while step < config.steps:
            rng = step_rng(config, step)
            large = config.large_every and step % config.large_every == config.large_every - 1
            crop, size = (config.large_crop, 1) if large else (config.crop, config.batch_size)
            batch = sample_batch(rng, quadrants, pairs, crop, size, config.warp_for(crop, step)).to(device)
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(config, step)
            terms = train_step(net, optimiser, batch, grad_clip=config.grad_clip, refinement=config.refinement,
                               generator=torch.Generator().manual_seed(config.seed * 1_000_003 + step))
            step += 1
            record = {"step": step, "lr": optimiser.param_groups[0]["lr"], "crop": crop,
                      "seconds": round(time.perf_counter() - started, 1), **{k: round(v, 4) for k, v in terms.items()}}
            if step % config.val_every == 0 or step == config.steps:
                record.update(validate(net, val))
                echo(f"step {step}/{config.steps}  loss {terms['total']:.3f}  val median RMSE "
                     f"{record['val_median_rmse']:.2f} px  CMR@1/3/5 {record['val_cmr@1']:.0%}/"
                     f"{record['val_cmr@3']:.0%}/{record['val_cmr@5']:.0%}  {record['seconds']:.0f} s")
            elif step % 10 == 0:
                echo(f"step {step}/{config.steps}  loss {terms['total']:.3f}  flow {terms['flow']:.2f}  "
                     f"{record['seconds']:.0f} s")
            log.write(json.dumps(record) + "\n")
            log.flush()
            if step % config.checkpoint_every == 0 or step == config.steps:
                _save_state(state_path, net, optimiser, step, config)
                save_checkpoint(out / CHECKPOINT_FILE, net, meta={"step": step, "recipe": dataclasses.asdict(config)})
    finally:
        log.close()
    return out / CHECKPOINT_FILE
