"""Training one candidate on small real-format data."""

import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

from nas import model_spec, spec_cost
from runners import train as train_module
from runners.datasets import Splits
from runners.options import TrainConfig
from runners.train import proxy_spec, train


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_same_seed_same_training():
    splits = _toy()
    spec = proxy_spec(model_spec("igp_resnet21"), splits, width_mult=0.1)
    config = TrainConfig(epochs=1, batch_size=32, seed=3, precision="fp32")
    a, b = train(spec, splits, config), train(spec, splits, config)
    assert a[0].train_loss == b[0].train_loss and a[0].top1 == b[0].top1


@pytest.mark.parametrize(("flags", "native"), [({"avx2"}, "fp32"), ({"avx512_bf16"}, "bf16")])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch, flags, native):
    """auto trains as the precision the CPU's flags call for would, bit for bit; bf16 where
    the CPU has native bf16 (emulated it is up to 15x slower than fp32), else fp32."""
    monkeypatch.setattr(train_module, "cpu_info", lambda: ("a CPU", flags))
    splits = _toy(64)
    spec = proxy_spec(model_spec("bireal_resnet18"), splits, width_mult=0.125)
    config = TrainConfig(epochs=1, batch_size=32, seed=2, device="cpu")
    assert train_module.training_precision(config, torch.device("cpu")) == native
    auto = train(spec, splits, config)
    chosen = train(spec, splits, dataclasses.replace(config, precision=native))
    timing = {"images_per_s": 0.0, "seconds": 0.0}
    assert [dataclasses.replace(h, **timing) for h in auto] == [
        dataclasses.replace(h, **timing) for h in chosen
    ]
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        TrainConfig(precision="fp16")


@pytest.mark.slow
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


@pytest.fixture
def one_thread():
    """torch on one thread, as in a trial of one core (the fused path's XNOR forward runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "name, precision, augment, subset",
    [
        # the proxy recipe: bf16, no augmentation (the widest net: slow)
        pytest.param("bireal_resnet18", "bf16", False, None, marks=pytest.mark.slow),
        ("igp_resnet21", "bf16", True, 150),  # fractal blocks, a train subset
        ("binary_densenet28", "fp32", True, None),  # dense blocks, fp32
    ],
)
def test_fast_path_gives_the_reference_bits(one_thread, name, precision, augment, subset):
    """The default path (batches cut from tensors, fused binary convs) and the reference path (a
    DataLoader, the reference modules) give the same loss curves, test figures and weights bit
    for bit, with augmentation drawing from the shared generator and a short last batch."""
    splits = _toy(300)  # 225 training images: the last batch of 32 holds 1
    spec = proxy_spec(model_spec(name), splits, width_mult=0.125)
    config = TrainConfig(
        epochs=2,
        batch_size=32,
        seed=3,
        precision=precision,
        augment=augment,
        train_subset=subset,
        eval_subset=50,
    )
    models = []

    def keep(stats, model, optimizer):
        models.append({k: v.clone() for k, v in model.state_dict().items()})

    reference = train(spec, splits, config, on_epoch=keep, reference=True)
    fast = train(spec, splits, config, on_epoch=keep)
    figures = [(h.epoch, h.train_loss, h.test_loss, h.top1, h.top5) for h in reference]
    assert figures == [(h.epoch, h.train_loss, h.test_loss, h.top1, h.top5) for h in fast]
    a, b = models[1], models[3]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batches_are_the_dataloaders_and_leave_the_generator_as_it_does():
    """_batches cuts the batches a shuffling DataLoader over the same (subset of a) tensor dataset
    gives, and after each the shared generator is where the DataLoader leaves it (augment draws
    from it), short last batch included; without a generator, in order."""
    from runners.train import _batches, _subset

    x = torch.arange(50 * 4, dtype=torch.uint8).reshape(50, 1, 2, 2)
    data = _subset(TensorDataset(x, torch.arange(50)), 37, seed=1)
    for batch in (8, 37, 64):
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, generator=g1)
        ours = _batches(data, batch, g2)
        for (xa, ya), (xb, yb) in zip(loader, ours, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    ordered = list(_batches(data, 16, None))
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(loader, ordered, strict=True))
