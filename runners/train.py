"""Training one candidate: binary layers with straight-through gradients, a Bi-Real-style recipe.

Adam with a cosine or linear decay of the learning rate (Bi-Real trains from scratch with Adam and
a linear decay; Liu et al. 2018), SGD as an option, optional label smoothing. bf16 autocast with
channels_last by default on CPU (AMX) and GPU: the convolutions of binary layers see +/-1 inputs
and weights, whose products and fp32-accumulated sums bf16 holds exactly; ``precision="fp32"``
turns it off, and ``"auto"`` (the default) turns it on only where the device computes bf16
natively. Seeded. Reports top-1, top-5, loss and images per second every epoch.

Proxy settings for small machines (:func:`proxy_spec`): the small-image stem (stride 2 halves the
resolution, a quarter of the MACs), a width multiplier, a train subset and few epochs.

Speed (``python -m nas.benchmarks training``, docs/training_speed.md): batches are cut
from the dataset's tensors in memory (the order a shuffling ``DataLoader`` with the same generator
gives, its draws replayed), and binary convs run fused (:class:`nas.nn.binary.BinaryConv2d`). Both
give the same bits as the ``reference=True`` path (a ``DataLoader`` and the reference modules),
which the benchmark and the tests run beside them.
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

from nas.core.atomic import atomic_write_bytes
from nas.core.spec import ArchSpec, Stage
from nas.nn.model import build_model
from runners.datasets import Splits, augment
from runners.options import PRECISIONS, TrainConfig


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


def evaluate(
    model: nn.Module,
    splits: Splits,
    config: TrainConfig,
    device: torch.device,
    reference: bool = False,
):
    """(loss, top-1, top-5) on the test split."""
    model.eval()
    data = _subset(splits.test, config.eval_subset, config.seed)
    total, loss, top1, top5 = 0, 0.0, 0, 0
    with torch.no_grad(), _autocast(config, device):
        for images, labels in _batches(data, 512, None, reference):
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


def cpu_info() -> tuple[str, set[str]]:
    """This CPU's model name and feature flags (from /proc/cpuinfo; empty where there is none)."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0]
    except OSError:
        return "an unknown CPU", set()
    fields = {
        k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())
    }
    return fields.get("model name", "an unknown CPU"), set(fields.get("flags", "").split())


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a GPU, or a CPU with AVX-512 BF16 or AMX (on
    other CPUs oneDNN emulates it, up to 15x slower than fp32: docs/reproducibility.md)."""
    return device.type != "cpu" or bool({"avx512_bf16", "amx_bf16"} & cpu_info()[1])


def training_precision(config: TrainConfig, device: torch.device) -> str:
    """``config.precision`` with auto made bf16 or fp32 for ``device``."""
    if config.precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return config.precision


def _autocast(config: TrainConfig, device: torch.device):
    bf16 = training_precision(config, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _tensors(data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """(images, labels, indices or None) of a TensorDataset of two tensors, or of a Subset of
    one; None for any other dataset (read item by item through a DataLoader)."""
    indices = None
    if isinstance(data, torch.utils.data.Subset):
        indices = torch.as_tensor(data.indices, dtype=torch.int64)
        data = data.dataset
    if not isinstance(data, torch.utils.data.TensorDataset) or len(data.tensors) != 2:
        return None
    return data.tensors[0], data.tensors[1], indices


def _batches(data, batch_size: int, generator: torch.Generator | None, reference: bool = False):
    """(images, labels) batches of ``data``, shuffled with ``generator`` (in order without one),
    the last one short, as ``DataLoader(data, batch_size, shuffle=generator is not None,
    generator=generator)`` gives them. A dataset held in tensors is cut from them directly: the
    DataLoader's draws from the generator are replayed (its base seed, then the sampler's
    permutation, and the permutation it draws when it runs dry, before a short last batch is
    returned), so ``augment`` sees the generator in the same state. ``reference``: the
    DataLoader itself."""
    tensors = None if reference else _tensors(data)
    if tensors is None:
        loader = torch.utils.data.DataLoader(
            data, batch_size=batch_size, shuffle=generator is not None, generator=generator
        )
        yield from loader
        return
    images, labels, indices = tensors
    n = len(data)
    if generator is None:
        order = torch.arange(n)
    else:
        torch.empty((), dtype=torch.int64).random_(generator=generator)  # the loader's base seed
        order = torch.randperm(n, generator=generator)
    if indices is not None:
        order = indices[order]
    for start in range(0, n, batch_size):
        if generator is not None and start + batch_size > n:
            torch.randperm(n, generator=generator)  # the sampler runs dry before a short batch
        index = order[start : start + batch_size]
        yield images[index], labels[index]


def _subset(dataset, n: int | None, seed: int):
    if n is None or n >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    return torch.utils.data.Subset(dataset, order.tolist())


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, history: list[EpochStats]
) -> None:
    """Weights, optimizer state and the epochs done so far, written atomically."""
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


def make_model(
    spec: ArchSpec, config: TrainConfig, device: torch.device, reference: bool = False
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The seeded model of ``spec`` (channels_last on ``device``) and its optimizer."""
    if config.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {config.precision!r}; use {', '.join(PRECISIONS)}")
    torch.manual_seed(config.seed)
    model = build_model(spec, fused=not reference).to(device, memory_format=torch.channels_last)
    params = model.parameters()
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use adam or sgd")
    return model, optimizer


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data,
    splits: Splits,
    config: TrainConfig,
    device: torch.device,
    epoch: int,
    reference: bool = False,
) -> tuple[float, int, float]:
    """One epoch (0-based ``epoch``) over ``data``: (sum of the batch losses times their sizes,
    images seen, seconds)."""
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    decay = _schedule(config.schedule, steps_per_epoch * config.epochs)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    model.train()
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    batches = _batches(data, config.batch_size, generator, reference)
    start, seen, running = time.perf_counter(), 0, 0.0
    for step, (images, labels) in enumerate(batches):
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
    return running, seen, time.perf_counter() - start


def train(
    spec: ArchSpec,
    splits: Splits,
    config: TrainConfig,
    on_epoch: Callable[[EpochStats, nn.Module, torch.optim.Optimizer], None] | None = None,
    checkpoint: Path | None = None,
    *,
    reference: bool = False,
) -> list[EpochStats]:
    """Train ``spec`` on ``splits``; ``on_epoch`` sees each epoch's figures. With ``checkpoint``,
    the state is saved there after every epoch, and a run finds it and goes on from the next
    epoch (loaded with ``weights_only=True``): a killed run loses at most the epoch in progress,
    and ends as an uninterrupted one would. A non-finite loss raises FloatingPointError naming the
    epoch and step. ``reference``: the slower path of the same results (batches through a
    DataLoader, the reference binary conv modules), for the benchmark and the tests."""
    device = pick_device(config.device)
    model, optimizer = make_model(spec, config, device, reference)
    history: list[EpochStats] = []
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [EpochStats(*h) for h in state["history"]]
    data = _subset(splits.train, config.train_subset, config.seed)
    for epoch in range(len(history), config.epochs):
        running, seen, seconds = train_epoch(
            model, optimizer, data, splits, config, device, epoch, reference
        )
        test_loss, top1, top5 = evaluate(model, splits, config, device, reference)
        stats = EpochStats(
            epoch + 1, running / seen, test_loss, top1, top5, seen / seconds, seconds
        )
        history.append(stats)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, history)
        if on_epoch is not None:
            on_epoch(stats, model, optimizer)
    return history
