"""Training one candidate: binary layers with straight-through gradients, a Bi-Real-style recipe.

Adam with a cosine or linear decay of the learning rate (Bi-Real trains from scratch with Adam and
a linear decay; Liu et al. 2018), SGD as an option, optional label smoothing. bf16 autocast with
channels_last by default on CPU (AMX) and GPU: the convolutions of binary layers see +/-1 inputs
and weights, whose products and fp32-accumulated sums bf16 holds exactly; ``precision="fp32"``
turns it off. Seeded. Reports top-1, top-5, loss and images per second every epoch.

Proxy settings for small machines (:func:`proxy_spec`): the small-image stem (stride 2 halves the
resolution, a quarter of the MACs), a width multiplier, a train subset and few epochs.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nas.model import build_model
from nas.spec import ArchSpec, Stage
from runners.datasets import Splits, augment


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adam"  # or "sgd"
    schedule: str = "cosine"  # or "linear"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    precision: str = "bf16"  # or "fp32"
    seed: int = 0
    train_subset: int | None = None
    eval_subset: int | None = None
    augment: bool = True  # random crop with padding, and flips where the dataset allows them
    device: str = "auto"


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    test_loss: float
    top1: float
    top5: float
    images_per_s: float
    seconds: float


def proxy_spec(
    spec: ArchSpec,
    splits: Splits,
    width_mult: float = 1.0,
    input_size: int | None = None,
    stem_stride: int = 1,
) -> ArchSpec:
    """``spec`` for a dataset: its image size (below 64 px the small-image 3x3 stem, of stride
    ``stem_stride``), channels and classes, and every width (stem, transitions, block widths,
    growth rates) times ``width_mult``, but not below 8 channels."""
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
    input_size = input_size or splits.size
    classes = splits.classes

    def scale(c: int) -> int:  # never below 8 channels (or the original width, if smaller)
        return max(min(c, 8), round(c * width_mult))

    stages = tuple(
        Stage(
            blocks=tuple(dataclasses.replace(b, width=scale(b.width)) for b in stage.blocks),
            transition=None
            if stage.transition is None
            else dataclasses.replace(stage.transition, channels=scale(stage.transition.channels)),
        )
        for stage in spec.stages
    )
    stem = dataclasses.replace(
        spec.stem,
        kind="imagenet" if input_size >= 64 else ("small" if stem_stride == 1 else "small_s2"),
        channels=scale(spec.stem.channels),
    )
    return spec.replace(
        stages=stages,
        stem=stem,
        input_size=input_size,
        classes=classes,
        in_channels=splits.channels,
    )


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _schedule(kind: str, total_steps: int) -> Callable[[int], float]:
    if kind == "linear":
        return lambda step: max(0.0, 1 - step / total_steps)
    if kind == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    raise ValueError(f"unknown schedule {kind!r}; use cosine or linear")


def evaluate(model: nn.Module, splits: Splits, config: TrainConfig, device: torch.device):
    """(loss, top-1, top-5) on the test split."""
    model.eval()
    loader = torch.utils.data.DataLoader(
        _subset(splits.test, config.eval_subset, config.seed), batch_size=512
    )
    total, loss, top1, top5 = 0, 0.0, 0, 0
    with torch.no_grad(), _autocast(config, device):
        for images, labels in loader:
            x = augment(images.to(device), splits, train=False)
            x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            labels = labels.to(device)
            loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += (best[:, 0] == labels).sum().item()
            top5 += (best == labels[:, None]).any(dim=1).sum().item()
            total += len(labels)
    return loss / total, top1 / total, top5 / total


def _autocast(config: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


def _subset(dataset, n: int | None, seed: int):
    if n is None or n >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    return torch.utils.data.Subset(dataset, order.tolist())


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, history: list[EpochStats]
) -> None:
    """Weights, optimizer state and the epochs done so far, written atomically."""
    from results.run import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": [dataclasses.astuple(h) for h in history],
        },
        buffer,
    )
    atomic_write_bytes(Path(path), buffer.getvalue())


def train(
    spec: ArchSpec,
    splits: Splits,
    config: TrainConfig,
    on_epoch: Callable[[EpochStats, nn.Module, torch.optim.Optimizer], None] | None = None,
    checkpoint: Path | None = None,
) -> list[EpochStats]:
    """Train ``spec`` on ``splits``; ``on_epoch`` sees each epoch's figures. With ``checkpoint``,
    the state is saved there after every epoch, and a run finds it and goes on from the next
    epoch (loaded with ``weights_only=True``): a killed run loses at most the epoch in progress,
    and ends as an uninterrupted one would. A non-finite loss raises FloatingPointError naming the
    epoch and step."""
    if config.precision not in ("bf16", "fp32"):
        raise ValueError(f"unknown precision {config.precision!r}; use bf16 or fp32")
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    model = build_model(spec).to(device, memory_format=torch.channels_last)
    params = model.parameters()
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use adam or sgd")
    history: list[EpochStats] = []
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [EpochStats(*h) for h in state["history"]]
    start_epoch = len(history)
    data = _subset(splits.train, config.train_subset, config.seed)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    decay = _schedule(config.schedule, steps_per_epoch * config.epochs)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        loader = torch.utils.data.DataLoader(
            data, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=False
        )
        start, seen, running = time.perf_counter(), 0, 0.0
        for step, (images, labels) in enumerate(loader):
            for group in optimizer.param_groups:
                group["lr"] = config.lr * decay(epoch * steps_per_epoch + step)
            x = augment(images.to(device), splits, train=config.augment, generator=generator)
            x = x.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device)
            with _autocast(config, device):
                loss = criterion(model(x).float(), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(labels)
            seen += len(labels)
        seconds = time.perf_counter() - start
        test_loss, top1, top5 = evaluate(model, splits, config, device)
        stats = EpochStats(
            epoch + 1, running / seen, test_loss, top1, top5, seen / seconds, seconds
        )
        history.append(stats)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, history)
        if on_epoch is not None:
            on_epoch(stats, model, optimizer)
    return history
