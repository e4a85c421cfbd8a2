"""Training one candidate on small real-format data."""

import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

from nas import model_spec, spec_cost
from runners.datasets import Splits
from runners.train import TrainConfig, proxy_spec, train


def _toy(n: int = 256, seed: int = 0) -> Splits:
    """Two classes a binary CNN separates easily: a bright square top left or bottom right."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 60, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 2, (n,), generator=g)
    x[y == 0, :, :5, :5] = 250
    x[y == 1, :, 7:, 7:] = 250
    half = n * 3 // 4
    return Splits(
        "toy",
        TensorDataset(x[:half], y[:half]),
        TensorDataset(x[half:], y[half:]),
        2,
        1,
        12,
        (0.3,),
        (0.3,),
        flip=False,
    )


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_training_learns(precision):
    splits = _toy()
    spec = proxy_spec(model_spec("bireal_resnet18"), splits, width_mult=0.125)
    history = train(
        spec, splits, TrainConfig(epochs=4, batch_size=32, lr=5e-3, precision=precision, seed=1)
    )
    assert len(history) == 4
    assert history[-1].top1 >= 0.9
    assert history[-1].train_loss < history[0].train_loss
    assert all(h.top5 == 1.0 for h in history)  # two classes: top-5 is always right
    assert all(h.images_per_s > 0 for h in history)


def test_same_seed_same_training():
    splits = _toy()
    spec = proxy_spec(model_spec("igp_resnet21"), splits, width_mult=0.1)
    config = TrainConfig(epochs=1, batch_size=32, seed=3, precision="fp32")
    a, b = train(spec, splits, config), train(spec, splits, config)
    assert a[0].train_loss == b[0].train_loss and a[0].top1 == b[0].top1


def test_checkpoint_resume_ends_as_an_uninterrupted_run(tmp_path):
    splits = _toy()
    spec = proxy_spec(model_spec("bireal_resnet18"), splits, width_mult=0.125)
    config = TrainConfig(epochs=3, batch_size=32, seed=5, precision="fp32")
    straight = train(spec, splits, config, checkpoint=tmp_path / "a.pt")

    def crash(stats, model, optimizer):  # a run killed after its first epoch was saved
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(spec, splits, config, checkpoint=tmp_path / "b.pt", on_epoch=crash)
    seen = []
    resumed = train(
        spec,
        splits,
        config,
        checkpoint=tmp_path / "b.pt",
        on_epoch=lambda stats, model, opt: seen.append(stats.epoch),
    )
    assert seen == [2, 3]  # the first epoch is not trained again
    assert [h.train_loss for h in resumed] == [h.train_loss for h in straight]
    a = torch.load(tmp_path / "a.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_is_an_error_that_says_where():
    splits = dataclasses.replace(_toy(), std=(0.0,))  # x / 0: infinite inputs, a NaN loss
    spec = proxy_spec(model_spec("bireal_resnet18"), splits, width_mult=0.125)
    with pytest.raises(FloatingPointError, match="nan at epoch 1, step 1"):
        train(spec, splits, TrainConfig(epochs=1, batch_size=32))


def test_proxy_spec_scales_every_width():
    splits = _toy()
    base = model_spec("binary_densenet28")
    proxy = proxy_spec(base, splits, width_mult=0.5)
    assert (proxy.input_size, proxy.classes, proxy.in_channels) == (12, 2, 1)
    assert proxy.stem.kind == "small" and proxy.stem.channels == 32
    assert proxy.stages[1].transition.channels == base.stages[1].transition.channels // 2
    assert {b.width for s in proxy.stages for b in s.blocks} == {32}
    assert spec_cost(proxy).total.flops < spec_cost(base).total.flops
