"""Every zoo model builds, runs forward at 224 px and (small-image stem) at 28 px, and every
parameter receives a gradient in a real backward pass (as timm tests its models)."""

import pytest
import torch
from conftest import zoo_params

from nas import BinaryConv2d, build_model, list_models, model_spec
from nas.core.blocks import dense_unit, fractal_convs, shortcuts
from nas.core.spec import ArchSpec, Block, Stage, Stem

ZOO = list_models()


def test_zoo_holds_the_issue_models():
    assert set(ZOO) == {
        "binary_resnet18",
        "bireal_resnet18",
        "bireal_resnet34",
        "ebireal_resnet18",
        "binary_densenet28",
        "binary_densenet37",
        "binary_densenet45",
        "binary_densenet51",
        "binary_densenet69",
        "igp_resnet21",
        "igp_resnet37",
        "igp_resnet41",
        "igp_resnet69",
        "igp_densenet51",
        "igp_densenet69",
        "resnet18_fp",
        "resnet34_fp",
    }
    assert list_models("bireal*") == ["bireal_resnet18", "bireal_resnet34"]


def _check_all_parameters_get_gradient(model: torch.nn.Module, x: torch.Tensor, classes: int):
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], classes)
    assert torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.arange(x.shape[0]) % classes).backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("name", zoo_params(ZOO))
def test_forward_backward_224(name):
    torch.manual_seed(0)
    model = build_model(model_spec(name))
    _check_all_parameters_get_gradient(model, torch.randn(2, 3, 224, 224), 1000)


@pytest.mark.parametrize("name", zoo_params(ZOO))
def test_forward_backward_small_stem_28(name):
    torch.manual_seed(0)
    spec = model_spec(name, input_size=28, classes=10)
    assert spec.stem.kind == "small" and spec.stem.stride == 1
    _check_all_parameters_get_gradient(build_model(spec), torch.randn(4, 3, 28, 28), 10)


def _tiny(block: Block, in_ch: int = 8) -> ArchSpec:
    return ArchSpec(
        name="tiny",
        stages=(Stage(blocks=(block,)),),
        stem=Stem("small", in_ch),
        input_size=6,
        classes=3,
    )


def test_residual_block_semantics_against_hand_written_forward():
    """An EBi-Real pair computed by hand from the block's own conv edges."""
    block = Block("residual", 8, convs=((0, 1), (1, 2)), shortcuts=shortcuts("ebireal", 2))
    model = build_model(_tiny(block)).eval()
    layer = model.stages[0].blocks[0]
    x = torch.randn(2, 8, 6, 6)
    n1 = layer.convs["0_1"](x) + x
    n2 = layer.convs["1_2"](n1) + n1 + x
    assert torch.allclose(layer(x), n2, atol=1e-6)


def test_fractal_mean_join_against_hand_written_forward():
    block = Block("residual", 8, convs=fractal_convs(2), shortcuts=(), join="mean")
    layer = build_model(_tiny(block)).eval().stages[0].blocks[0]
    x = torch.randn(2, 8, 6, 6)
    n1 = layer.convs["0_1"](x)
    expected = (layer.convs["1_2"](n1) + layer.convs["0_2"](x)) / 2
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_dense_fractal_unit_reads_every_earlier_node():
    block = dense_unit(4, columns=2)
    layer = build_model(_tiny(block)).eval().stages[0].blocks[0]
    assert layer.convs["1_2"].conv.in_channels == 8 + 4
    x = torch.randn(2, 8, 6, 6)
    n1 = layer.convs["0_1"](x)
    n2 = (layer.convs["1_2"](torch.cat([x, n1], 1)) + layer.convs["0_2"](x)) / 2
    assert torch.allclose(layer(x), torch.cat([x, n2], 1), atol=1e-6)


def test_one_padding_option_reaches_the_binary_convs():
    spec = model_spec("bireal_resnet18", input_size=28, classes=10).replace(padding="one")
    convs = [m for m in build_model(spec).modules() if m.__class__.__name__ == "BinaryConv2d"]
    assert convs and all(c.padding_value == 1.0 for c in convs)


@pytest.mark.parametrize("name", zoo_params(ZOO))
def test_fused_and_reference_networks_give_the_same_bits(name):
    """Every zoo model at 28 px, bf16 autocast on one thread (a trial's setting: the XNOR forward
    runs): the fused binary convs and the reference modules give the same logits and the same
    gradient for every parameter, bit for bit. Fused is the default."""
    spec = model_spec(name, input_size=28, classes=10)
    x = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    results = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for fused in (False, True):
            torch.manual_seed(0)
            model = build_model(spec, fused=fused).to(memory_format=torch.channels_last)
            binary = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
            assert all(m.fused == fused for m in binary)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            out.float().logsumexp(dim=1).sum().backward()
            results.append((out, [p.grad for p in model.parameters()]))
    finally:
        torch.set_num_threads(threads)
    (a, ga), (b, gb) = results
    assert torch.equal(a, b)
    assert all(torch.equal(p, q) for p, q in zip(ga, gb, strict=True))
    assert all(m.fused for m in build_model(spec).modules() if isinstance(m, BinaryConv2d))
