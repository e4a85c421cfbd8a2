"""The bit-packed binary convolution against float convolutions of +/-1 tensors, on every
dispatch path this CPU can run, and the packed inference model against the training module."""

import ctypes
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nas import arch_id, build_model, model_spec
from nas.nn.kernels import (
    available_paths,
    binary_conv2d,
    fp_stem,
    max_pool2d,
    pack_activations,
    pack_weights,
    unpack,
)
from nas.nn.packed.network import FORMAT, load_packed, pack_model, save_packed

PATHS = [*available_paths(), "reference"]
NOT_BUILT = (
    "the compiled kernels could not be built or loaded (no C compiler? ./setup.sh installs gcc): "
    "the PyTorch reference path is tested alone"
)


@pytest.fixture
def compiled_kernels(require):
    """For a test of the compiled kernels themselves: skipped where they cannot be built (the
    package then runs the PyTorch reference, tested on its own), a failure under CI."""
    require(available_paths(), NOT_BUILT)


def test_the_compiled_kernels_are_built(compiled_kernels):
    """./setup.sh builds them with gcc; every CPU runs at least the portable path."""
    assert "portable" in available_paths()


def _signs(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t >= 0, 1.0, -1.0)


def _float_conv(x, w, stride, pad):
    """The oracle: F.conv2d in float64 on the signs, the input padded with +1."""
    padded = F.pad(_signs(x).double(), (pad,) * 4, value=1.0)
    return F.conv2d(padded, _signs(w).double(), stride=stride).float().permute(0, 2, 3, 1)


def _assert_packed(packed, values):
    """``packed`` holds the +/-1 ``values`` (NCHW, padding included) and no bit past its last
    channel: the next conv XORs whole words with weights whose bits there are zero."""
    assert torch.equal(unpack(packed), values)
    if packed.channels % 64:
        assert not (packed.bits[..., -1] >> (packed.channels % 64)).any(), "bits past the channels"


@st.composite
def conv_cases(draw):
    k = draw(st.sampled_from([1, 3]))
    stride = draw(st.sampled_from([1, 2]))
    cin = draw(st.integers(1, 200))
    # whole 32-channel groups or not (the AVX-512 path's last block is masked)
    cout = draw(st.one_of(st.integers(1, 140), st.sampled_from([32, 64, 96, 128])))
    h = draw(st.integers(k, 12))
    w = draw(st.integers(k, 12))
    n = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31 - 1))
    return n, cin, h, w, cout, k, stride, seed


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=60, deadline=None)
@given(case=conv_cases())
def test_packed_conv_equals_float_conv_bit_for_bit(path, case):
    n, cin, h, w, cout, k, stride, seed = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=g)
    weight = torch.randn(cout, cin, k, k, generator=g)
    expected = _float_conv(x, weight, stride, k // 2)
    got = binary_conv2d(pack_activations(x, pad=k // 2), pack_weights(weight), stride, path=path)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=30, deadline=None)
@given(case=conv_cases())
def test_epilogue_scale_shift_residual_and_packed_output(path, case):
    """scale * dot + shift + residual, rounded as PyTorch rounds it; the packed output is the
    sign of exactly that value, padded with +1 for the next conv."""
    n, cin, h, w, cout, k, stride, seed = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=g)
    weight = torch.randn(cout, cin, k, k, generator=g)
    scale, shift = torch.randn(cout, generator=g), torch.randn(cout, generator=g) * 5
    dot = _float_conv(x, weight, stride, k // 2)
    residual = torch.randn(dot.shape, generator=g)
    expected = dot * scale + shift + residual
    args = (pack_activations(x, pad=k // 2), pack_weights(weight), stride, scale, shift, residual)
    assert torch.equal(binary_conv2d(*args, path=path), expected)
    packed = binary_conv2d(*args, output="packed", out_pad=1, path=path)
    signs = F.pad(_signs(expected.permute(0, 3, 1, 2)), (1,) * 4, value=1.0)
    _assert_packed(packed, signs)
    both, packed = binary_conv2d(*args, output="both", out_pad=2, path=path)
    assert torch.equal(both, expected)
    _assert_packed(packed, F.pad(signs, (1,) * 4, value=1.0))
    # written into the shortcut's own memory, as the packed model does where nothing reads the
    # shortcut afterwards: each value's shortcut is read before the value is stored
    into = residual.clone()
    got, packed = binary_conv2d(*args[:5], into, output="both", out_pad=1, path=path, out=into)
    assert got.data_ptr() == into.data_ptr() and torch.equal(into, expected)
    _assert_packed(packed, signs)
    # written into the first channels of a wider NHWC tensor (a dense block's new features into
    # its run's features), with and without a shortcut of that same layout added in place: no
    # other channel touched
    wide = torch.randn(*dot.shape[:3], cout + 13, generator=g)
    into = wide[..., 5 : 5 + cout]
    kept = wide.clone()
    got, packed = binary_conv2d(*args[:5], output="both", out_pad=1, path=path, out=into)
    values = dot * scale + shift
    assert torch.equal(into, values) and got.data_ptr() == into.data_ptr()
    _assert_packed(packed, F.pad(_signs(values.permute(0, 3, 1, 2)), (1,) * 4, value=1.0))
    into.copy_(residual)
    binary_conv2d(*args[:5], into, path=path, out=into)
    assert torch.equal(into, expected)
    assert torch.equal(wide[..., :5], kept[..., :5])
    assert torch.equal(wide[..., 5 + cout :], kept[..., 5 + cout :])
    # packed output alone: BN and sign as count thresholds (the AVX-512 register blocks write
    # the signs, the last cout % 32 channels through masked blocks)
    alone = binary_conv2d(*args[:5], output="packed", path=path)
    _assert_packed(alone, _signs((dot * scale + shift).permute(0, 3, 1, 2)))


def test_out_must_hold_the_float_output():
    x = pack_activations(torch.randn(1, 64, 8, 8), pad=1)
    w = pack_weights(torch.randn(32, 64, 3, 3))
    with pytest.raises(ValueError, match=r"float32 NHWC tensor \(1, 8, 8, 32\), contiguous or"):
        binary_conv2d(x, w, out=torch.empty(1, 32, 8, 8))
    wide = torch.empty(1, 8, 8, 40)
    for bad in (wide[:, :, :, 4:36].transpose(1, 2), torch.empty(1, 8, 9, 32)[:, :, :8]):
        with pytest.raises(ValueError, match="contiguous or the first channels of a wider one"):
            binary_conv2d(x, w, out=bad)
    if available_paths():  # the compiled kernel's limit; the PyTorch reference path takes it
        with pytest.raises(ValueError, match="out must be contiguous where the residual is"):
            binary_conv2d(x, w, residual=torch.zeros(1, 8, 8, 32), out=wide[..., :32])
    with pytest.raises(ValueError, match="output='float' or 'both'"):
        binary_conv2d(x, w, output="packed", out=torch.empty(1, 8, 8, 32))


@pytest.mark.parametrize("path", PATHS)
def test_packed_output_at_exact_ties_and_any_sign_of_scale(path):
    """Packed output alone folds BN and sign into thresholds on the popcount (AVX-512 path): the
    bits must be the signs of the float values exactly, also where a value is exactly 0 (sign +1)
    and for negative, zero and NaN scales."""
    g = torch.Generator().manual_seed(0)
    x, weight = torch.randn(2, 100, 7, 9, generator=g), torch.randn(48, 100, 3, 3, generator=g)
    cases = torch.tensor([1.0, -1.0, 0.0, 0.5, -0.25, 3.0, float("nan"), 1e-30] * 6)
    scale = cases[:48]
    dot = _float_conv(x, weight, 1, 1)
    # shift = -scale * (a dot that occurs), so that some values are exactly zero
    shift = -scale.nan_to_num() * dot[0, 3, 4] + torch.tensor([0.0, 1e-3, -1e-3] * 16)
    shift[2::8] = torch.tensor([1.0, -1.0, 0.0, -0.0, 2.0, -3.0])  # scale 0: shift alone
    expected = dot * scale + shift
    assert (expected == 0).any()
    args = (pack_activations(x, pad=1), pack_weights(weight), 1, scale, shift)
    packed = binary_conv2d(*args, output="packed", out_pad=1, path=path)
    signs = torch.where(expected < 0, -1.0, 1.0).permute(0, 3, 1, 2)  # NaN: bit 0, +1
    _assert_packed(packed, F.pad(signs, (1,) * 4, value=1.0))


def test_two_threads_split_few_rows_by_channels(compiled_kernels):
    """With fewer than four output rows per thread the AVX-512 path splits the channels between
    threads too; run in a process with two OpenMP threads, every output must still be exact, the
    shortcut added in place too."""
    import subprocess
    import sys

    script = """
import torch, torch.nn.functional as F
from nas.nn.kernels import available_paths, binary_conv2d, pack_activations, pack_weights, unpack
g = torch.Generator().manual_seed(0)
for n, h, cin, cout, stride in [(1, 3, 70, 200, 1), (1, 7, 512, 512, 1), (2, 4, 64, 130, 2)]:
    x, w = torch.randn(n, cin, h, h, generator=g), torch.randn(cout, cin, 3, 3, generator=g)
    scale, shift = torch.randn(cout, generator=g), torch.randn(cout, generator=g)
    signs = lambda t: torch.where(t >= 0, 1.0, -1.0).double()
    dot = F.conv2d(F.pad(signs(x), (1,) * 4, value=1.0), signs(w), stride=stride)
    dot = dot.float().permute(0, 2, 3, 1)
    residual = torch.randn(dot.shape, generator=g)
    expected = dot * scale + shift + residual
    args = (pack_activations(x, pad=1), pack_weights(w), stride, scale, shift)
    for path in available_paths():
        out, packed = binary_conv2d(*args, residual, "both", 1, path=path)
        assert torch.equal(out, expected), path
        inner = unpack(packed)[:, :, 1:-1, 1:-1]
        assert torch.equal(inner, signs(expected.permute(0, 3, 1, 2)).float())
        into = residual.clone()  # the shortcut added in place, as the packed model does
        binary_conv2d(*args, into, "both", 1, path=path, out=into)
        assert torch.equal(into, expected), path
        bits = binary_conv2d(*args, output="packed", path=path)
        assert torch.equal(unpack(bits), signs((dot * scale + shift).permute(0, 3, 1, 2)).float())
if "avx512" in available_paths():  # the compiled stem: each thread's rows, ring and packed bits
    from nas.nn.kernels import fp_stem
    x, w, b = torch.randn(3, 3, 21, 19, generator=g), torch.randn(64, 3, 7, 7), torch.randn(64)
    one = fp_stem(x, w, b, 2, True, True, 1)
    expected = F.max_pool2d(F.relu(F.conv2d(x, w, b, 2, 3)), 3, 2, 1)
    torch.testing.assert_close(one[0], expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(unpack(one[1])[:, :, 1:-1, 1:-1], signs(one[0]).float())
print("ok")
"""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


STEMS = [  # (batch, cin, height, width, cout, kernel, stride, relu, pool)
    (1, 3, 224, 224, 64, 7, 2, False, True),  # Bi-Real's stem
    (2, 3, 33, 29, 128, 7, 2, True, True),
    (1, 3, 32, 32, 64, 3, 1, True, False),  # the small stem
    (2, 1, 9, 7, 64, 5, 2, False, True),
    (1, 3, 45, 41, 41, 7, 2, False, True),  # IGP-ResNet37's 41 channels: a masked last block
    (2, 3, 17, 19, 105, 3, 1, True, False),  # one whole block, then 41 channels in 3 vectors
    (1, 2, 11, 13, 7, 3, 2, True, True),  # fewer than 16 channels
]


def _stem_reference(x, weight, bias, stride, relu, pool):
    out = F.conv2d(x, weight, bias, stride, weight.shape[-1] // 2)
    out = F.relu(out) if relu else out
    return F.max_pool2d(out, 3, 2, 1) if pool else out


@pytest.mark.skipif("avx512" not in available_paths(), reason="the compiled stem is AVX-512 only")
@pytest.mark.parametrize("case", STEMS, ids=str)
def test_compiled_stem_equals_conv_relu_pool(case):
    """``fp_stem``: conv (+ ReLU) (+ 3x3/2 max-pool) in one pass equals PyTorch's to float
    rounding (the sums run in another order), and its packed output is the signs of its float
    output, +1-padded."""
    n, cin, h, w, cout, k, stride, relu, pool = case
    g = torch.Generator().manual_seed(0)
    x, weight = torch.randn(n, cin, h, w, generator=g), torch.randn(cout, cin, k, k, generator=g)
    bias = torch.randn(cout, generator=g)
    expected = _stem_reference(x, weight, bias, stride, relu, pool)
    out, packed = fp_stem(x, weight, bias, stride, relu, pool, out_pad=1)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    _assert_packed(packed, F.pad(_signs(out), (1,) * 4, value=1.0))


@pytest.mark.skipif("avx512" not in available_paths(), reason="the compiled stem is AVX-512 only")
@pytest.mark.parametrize("cin", [3, 2])
def test_compiled_stem_reads_its_input_in_any_layout(cin):
    """The stem pads its input into NHWC itself, from any strides (channels_last rows copied
    whole, NCHW RGB interleaved, anything else element by element): the same output, bit for
    bit, as from the contiguous NCHW tensor that the test above checks against PyTorch."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, cin, 23, 21, generator=g)
    weight, bias = torch.randn(64, cin, 7, 7, generator=g), torch.randn(64, generator=g)
    expected = fp_stem(x, weight, bias, 2, True, True, out_pad=1)
    wide = torch.randn(2, cin + 1, 25, 42, generator=g)
    wide[:, 1:, 1:-1, ::2] = x
    layouts = {
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "strided view": wide[:, 1:, 1:-1, ::2],
        "float64": x.double(),
    }
    for name, data in layouts.items():
        out, packed = fp_stem(data, weight, bias, 2, True, True, out_pad=1)
        assert torch.equal(out, expected[0]), name
        assert torch.equal(packed.bits, expected[1].bits), name


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pytorch"])
@pytest.mark.parametrize(
    "shape, kernel, stride, pad, ceil_mode",
    [
        ((1, 64, 112, 112), 3, 2, 1, False),  # the stem's pool
        ((2, 5, 9, 7), 3, 2, 1, False),
        ((1, 70, 8, 8), 2, 2, 0, False),
        ((1, 448, 56, 56), 2, 2, 0, True),  # binary_densenet28's first transition
        ((2, 37, 7, 5), 2, 2, 0, True),  # ceil mode: a last window of one row or column
        ((1, 9, 11, 10), 3, 2, 1, True),  # ceil mode with padding
        ((1, 3, 5, 5), 3, 3, 1, True),  # ceil mode: a window that would start in the padding
    ],
)
def test_max_pool_equals_pytorch(
    shape, kernel, stride, pad, ceil_mode, compiled, monkeypatch, require
):
    """``max_pool2d`` equals PyTorch's pool, alone and after a BatchNorm (negative scales
    included) with a ReLU after it (a BinaryDenseNet transition), bit for bit: the BN is one
    multiply and one add, as in PyTorch."""
    from nas.nn.kernels import _dispatch

    if compiled:
        require(available_paths(), NOT_BUILT)
    else:
        monkeypatch.setattr(_dispatch, "library", lambda: None)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).contiguous(memory_format=torch.channels_last)
    out = max_pool2d(x, kernel, stride, pad, ceil_mode)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil_mode))
    bn = torch.nn.BatchNorm2d(shape[1]).eval()
    for t in (bn.weight, bn.bias, bn.running_mean):
        t.data = torch.randn(shape[1], generator=g)  # about half the scales negative
    bn.running_var.data = torch.rand(shape[1], generator=g) + 0.5
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    with torch.no_grad():
        expected = F.relu(F.max_pool2d(bn(x), kernel, stride, pad, ceil_mode=ceil_mode))
        out = max_pool2d(x, kernel, stride, pad, ceil_mode, scale, shift, relu=True)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    affine = x * scale[:, None, None] + shift[:, None, None]  # what the kernel computes
    assert torch.equal(out, F.relu(F.max_pool2d(affine, kernel, stride, pad, ceil_mode=ceil_mode)))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("channels", [1, 41, 64, 130])
def test_pack_and_unpack_round_trip_with_plus_one_padding(channels, path):
    x = torch.randn(2, channels, 5, 6)
    x[0, 0, 0, 0] = 0.0  # sign(0) = +1
    packed = pack_activations(x, pad=2, path=path)
    assert packed.bits.shape == (2, 9, 10, (channels + 63) // 64)
    assert packed.shape == (2, channels, 5, 6)
    _assert_packed(packed, F.pad(_signs(x), (2,) * 4, value=1.0))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("channels", [41, 128, 200])
def test_pack_folds_a_batchnorm_and_reads_channels_in_place(channels, path, monkeypatch):
    """``pack_activations(x, pad, scale, shift)``: the signs of ``x * scale + shift`` per channel
    (a dense edge's BN before the sign), also read straight from the first channels of a wider
    channels_last tensor (a DenseNet stage's features) and from NCHW: the same bits as packing
    the values PyTorch computes, on every path, and without the compiled kernels."""
    g = torch.Generator().manual_seed(channels)
    wide = torch.randn(2, 7, 5, channels + 30, generator=g)  # NHWC features
    x = wide[..., :channels].permute(0, 3, 1, 2)  # NCHW view, pixels channels + 30 floats apart
    scale, shift = torch.randn(channels, generator=g), torch.randn(channels, generator=g)
    scale[::7] = 0.0  # shift alone decides
    values = x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    expected = F.pad(_signs(values), (1,) * 4, value=1.0)
    for data in (x, x.contiguous(), x.contiguous(memory_format=torch.channels_last)):
        _assert_packed(pack_activations(data, 1, scale, shift, path), expected)
    _assert_packed(pack_activations(x, 1, path=path), F.pad(_signs(x), (1,) * 4, value=1.0))
    from nas.nn.kernels import _dispatch

    monkeypatch.setattr(_dispatch, "library", lambda: None)  # the PyTorch fallback
    _assert_packed(pack_activations(x, 1, scale, shift), expected)


def _trained_like(spec):
    """A model whose BN statistics and affine parameters are not the identity."""
    torch.manual_seed(0)
    model = build_model(spec)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
    return model.eval()


@pytest.mark.parametrize(
    "name, size",
    [("bireal_resnet18", 224), ("binary_densenet28", 64), ("igp_resnet37", 64)],
)
def test_packed_model_matches_the_training_module(name, size, tmp_path):
    """Residual (Bi-Real), dense and fractal (mean join) blocks, +1 padding. The convs are exact;
    the float epilogues round differently from PyTorch's conv + BN, so a pre-activation within
    rounding of zero may take the other sign (a few of the ~10^6 per image at 224 px): the logits
    agree to a small fraction of their range, and the predicted classes are the same."""
    model = _trained_like(model_spec(name, input_size=size).replace(padding="one"))
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}  # clone keeps the strides
    packed = pack_model(model)
    got = packed(x)
    for key, value in model.state_dict().items():  # packing leaves the training module as it was
        assert torch.equal(value, before[key]) and value.stride() == before[key].stride(), key
    assert torch.equal(got.argmax(1), expected.argmax(1))
    scale = expected.abs().max().item()
    per_image = (got - expected).abs().amax(dim=1) / scale
    assert (per_image < 1e-5).sum() >= 2  # no sign flipped: float rounding only
    assert (per_image < 0.15).all()  # a flipped sign moves the logits a little
    save_packed(packed, tmp_path / "m.pt")
    assert torch.equal(load_packed(tmp_path / "m.pt")(x), got)


def test_packed_bireal18_packs_activations_once(monkeypatch):
    """Each conv of a Bi-Real block packs the signs of the node it computes for the next conv,
    so only the stem's output is packed on its own: by the compiled stem itself where it runs
    (AVX-512), else once by pack_activations."""
    import nas.nn.packed.network as packed_module

    calls = []
    pack = packed_module.pack_activations
    monkeypatch.setattr(
        packed_module, "pack_activations", lambda *a, **k: calls.append(1) or pack(*a, **k)
    )
    model = _trained_like(model_spec("bireal_resnet18", input_size=64).replace(padding="one"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    got = pack_model(model)(x)
    assert len(calls) == (0 if "avx512" in available_paths() else 1)
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_in_place_shortcut_adds_change_nothing():
    """A packed conv adds into its shortcut tensor in place where nothing reads that node again:
    not where a later node still reads it (node 0 by node 2 below), and on the trunk's own input
    only (the block's input is the caller's); a node of several convs (a mean join) adds them
    one after the other into one tensor. The logits are those of the same packed model without
    in-place adds, bit for bit, and match the training module."""
    from dataclasses import replace

    import nas.nn.packed.network as packed_module

    spec = model_spec("bireal_resnet18", input_size=64).replace(padding="one")
    tricky = replace(
        spec.stages[1].blocks[0],  # stride 2: node 0's shortcuts go through the projection
        convs=((0, 1), (1, 2), (2, 3)),
        shortcuts=((0, 1), (0, 2), (1, 2), (1, 3)),
    )
    mean = replace(  # node 2: two convs, one of them reading node 1, and node 1's shortcut
        spec.stages[0].blocks[1],
        convs=((0, 1), (0, 2), (1, 2)),
        shortcuts=((0, 1), (1, 2)),
        join="mean",
    )
    zeroth, first = spec.stages[0], spec.stages[1]
    spec = replace(
        spec,
        stages=(
            replace(zeroth, blocks=(zeroth.blocks[0], mean)),
            replace(first, blocks=(tricky, *first.blocks[1:])),
            *spec.stages[2:],
        ),
    )
    model = _trained_like(spec)
    packed = pack_model(model)
    blocks = [b for b in packed.modules() if isinstance(b, packed_module.PackedBlock)]
    # node 1 of a Bi-Real block overwrites the block's input, node 2 overwrites node 1; in the
    # tricky block node 1 may not (node 2 reads node 0's shortcut), node 2 adds into the sum of
    # its two shortcuts, node 3 into node 1, which nothing reads after it
    assert blocks[0].in_place == {1: True, 2: False}
    assert blocks[1].in_place == {2: False}  # node 1 is read by node 2 alone
    assert blocks[2].in_place == {2: False, 3: False}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    got = packed(x)
    for block in blocks:
        block.in_place = {}
    assert torch.equal(got, packed(x))
    with torch.no_grad():
        expected = model(x)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert ((got - expected).abs().amax(dim=1) / expected.abs().max() < 1e-5).all()


_HEAP_PROBE = """
import ctypes, sys, torch
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "packed":
    from nas import build_model, model_spec
    from nas.nn.packed.network import pack_model
    pack_model(build_model(model_spec("bireal_resnet18", input_size=32, classes=10)).eval())
before = libc.mallinfo2()
block = torch.empty(6 << 20)  # 24 MB: more than building the model frees at once
during = libc.mallinfo2()
del block
after = libc.mallinfo2()
print(during.hblkhd - before.hblkhd, after.fordblks)  # mapped afresh, free bytes kept in the heap
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc only")
def test_a_packed_model_keeps_freed_memory_in_the_heap():
    """Once a packed model exists, a 24 MB block comes from malloc's heap and stays there when
    freed (memory handed back to the kernel is zeroed page by page when touched again), where by
    default malloc maps it afresh; in fresh processes, as the setting is process-wide."""
    import subprocess
    import sys

    def probe(kind: str) -> tuple[int, int]:
        done = subprocess.run(
            [sys.executable, "-c", _HEAP_PROBE, kind], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        mapped, kept = done.stdout.split()
        return int(mapped), int(kept)

    mapped, kept = probe("packed")
    assert mapped == 0 and kept >= 24 << 20
    mapped, _ = probe("default")
    assert mapped >= 24 << 20


def test_packed_bireal18_file_is_its_storage():
    """Within 10% of the paper's 33.2 Mbit (binary weights 1 bit, FP weights 32)."""
    import io

    model = build_model(model_spec("bireal_resnet18").replace(padding="one")).eval()
    buffer = io.BytesIO()
    torch.save({"state": pack_model(model).state_dict()}, buffer)
    mbit = len(buffer.getvalue()) * 8 / 1e6
    assert abs(mbit - 33.2) / 33.2 < 0.10, mbit


@pytest.mark.slow  # a whole network, seconds
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 28)])  # CIFAR-like, Fashion-MNIST
def test_pack_command_packs_a_training_checkpoint(tmp_path, capsys, channels, size):
    """``python -m nas.pack SPEC --checkpoint STATE``: the file it writes loads into a
    module that predicts what the trained float module predicts; its check images have the
    spec's channels and size."""
    import json

    from nas import cli
    from nas.pack import main
    from runners.train import save_checkpoint

    spec = model_spec("bireal_resnet18", input_size=size, classes=10)
    spec = spec.replace(padding="one", in_channels=channels)
    model = _trained_like(spec)
    (tmp_path / "spec.json").write_text(spec.to_json())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(tmp_path / "state.pt", model, optimizer, [])
    argv = [str(tmp_path / "spec.json"), "--checkpoint", str(tmp_path / "state.pt")]
    out = tmp_path / "m.packed.pt"
    assert cli.run("pack", main, [*argv, "-o", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["file"] == str(out) and result["same_class"] == result["check_images"]
    assert result["file_mbit"] == pytest.approx(out.stat().st_size * 8 / 1e6)
    # a trained network's pre-activations stay clear of zero: float rounding, no flipped sign
    assert result["max_logit_difference"] < 1e-5 and result["float64_logit_difference"] < 1e-5
    x = torch.randn(8, channels, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(load_packed(out)(x).argmax(1), model(x).argmax(1))


def test_pack_command_refuses_what_it_cannot_pack_exactly(tmp_path, capsys):
    """Zero padding, a checkpoint of another network, a file that is no checkpoint: one line,
    exit code 2, nothing written."""
    from nas import cli
    from nas.pack import main

    spec = model_spec("bireal_resnet18", input_size=32, classes=10)
    other = build_model(model_spec("bireal_resnet34", input_size=32, classes=10))
    torch.save(other.state_dict(), tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "zero.json").write_text(spec.to_json())
    (tmp_path / "one.json").write_text(spec.replace(padding="one").to_json())
    out = tmp_path / "never.pt"
    for model, checkpoint, says in [
        ("zero.json", "other.pt", "exact only for networks trained with"),
        ("one.json", "other.pt", "does not fit bireal_resnet18"),
        ("one.json", "junk.pt", "cannot read the checkpoint"),
        ("one.json", "absent.pt", "no checkpoint at"),
    ]:
        argv = [str(tmp_path / model), "--checkpoint", str(tmp_path / checkpoint), "-o", str(out)]
        assert cli.run("pack", main, argv) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.slow  # a whole network, seconds
def test_load_packed_refuses_what_it_cannot_load(tmp_path):
    """A file that is no packed network, one of a newer format, or one of format 1 (no
    ``"format"`` entry) packed with other tensors (a dense edge's BN before it was folded into
    the packing): a one-line ValueError that says what to do. A format 1 file whose tensors are
    still laid out the same (no dense blocks) loads."""
    spec = model_spec("binary_densenet28", input_size=32, classes=10).replace(padding="one")
    save_packed(pack_model(build_model(spec).eval()), tmp_path / "new.pt")
    saved = torch.load(tmp_path / "new.pt", weights_only=True)
    assert saved["format"] == FORMAT
    del saved["format"]
    key = next(k for k in saved["state"] if k.endswith("pre_scale"))
    saved["state"][key.replace("pre_scale", "pre.weight")] = saved["state"].pop(key)
    torch.save(saved, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"format 1, with other tensors .* pack the network again"):
        load_packed(tmp_path / "old.pt")
    torch.save({**saved, "format": FORMAT + 1}, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match=f"format {FORMAT + 1}, newer .* update the product"):
        load_packed(tmp_path / "newer.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="is not a packed network"):
        load_packed(tmp_path / "junk.pt")
    for name in ("old.pt", "newer.pt", "junk.pt"):
        with pytest.raises(ValueError) as caught:
            load_packed(tmp_path / name)
        assert "\n" not in str(caught.value)
    load_packed(tmp_path / "new.pt")  # what this version writes, it reads
    spec = model_spec("bireal_resnet18", input_size=32, classes=10).replace(padding="one")
    model, x = build_model(spec).eval(), torch.randn(2, 3, 32, 32)
    save_packed(pack_model(model), tmp_path / "bireal.pt")
    saved = torch.load(tmp_path / "bireal.pt", weights_only=True)
    del saved["format"]
    torch.save(saved, tmp_path / "bireal_format1.pt")
    assert torch.equal(load_packed(tmp_path / "bireal_format1.pt")(x), pack_model(model)(x))


def test_pack_model_wants_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        pack_model(build_model(model_spec("bireal_resnet18", input_size=64)))


def test_fallback_without_the_library_warns_once_and_stays_exact(monkeypatch):
    import nas.nn.kernels as kernels
    from nas.nn.kernels import _dispatch, _native

    monkeypatch.setattr(_native, "LIBRARY", _native.HERE / "missing.so")
    monkeypatch.setattr(
        _native,
        "build",
        lambda quiet=False: (_ for _ in ()).throw(
            RuntimeError("no C compiler (gcc or cc) on PATH")
        ),
    )
    _native.library.cache_clear()
    monkeypatch.setattr(_dispatch, "library", _native.library)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x, w = torch.randn(1, 70, 6, 6), torch.randn(9, 70, 3, 3)
            got = kernels.binary_conv2d(kernels.pack_activations(x, pad=1), kernels.pack_weights(w))
            kernels.binary_conv2d(kernels.pack_activations(x, pad=1), kernels.pack_weights(w))
        assert torch.equal(got, _float_conv(x, w, 1, 1))
        messages = [str(c.message) for c in caught if c.category is RuntimeWarning]
        assert len(messages) == 1 and "reference path" in messages[0]
    finally:
        _native.library.cache_clear()


_FALLBACK_CASES = """
from dataclasses import replace
import torch
import nas.nn.kernels as k
from nas import build_model, model_spec
from nas.nn.packed.network import pack_model

def cases():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 70, 9, 8, generator=g), torch.randn(33, 70, 3, 3, generator=g)
    scale, shift = torch.randn(33, generator=g), torch.randn(33, generator=g)
    residual = torch.randn(2, 9, 8, 33, generator=g)
    bn_scale, bn_shift = torch.randn(70, generator=g), torch.randn(70, generator=g)
    stem_w, stem_b = torch.randn(64, 3, 7, 7, generator=g), torch.randn(64, generator=g)
    px, pw = k.pack_activations(x, pad=1), k.pack_weights(w)
    both, packed = k.binary_conv2d(px, pw, 1, scale, shift, residual, "both", 1)
    # a Bi-Real block (its shortcut added in place), then a mean join of two convs: the
    # convs write into the shortcuts and the first conv's output
    spec = model_spec("bireal_resnet18", input_size=16, classes=10).replace(padding="one")
    first = spec.stages[0]
    mean = replace(first.blocks[1], convs=((0, 1), (0, 2), (1, 2)), join="mean")
    spec = replace(spec, stages=(replace(first, blocks=(first.blocks[0], mean)),))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    images = torch.randn(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        logits = model(images)
    return {
        "paths": k.available_paths(),
        "pack": px.bits,
        "pack_bn": k.pack_activations(x, 1, bn_scale, bn_shift).bits,
        "conv": k.binary_conv2d(px, pw),
        "epilogue": both,
        "epilogue_bits": packed.bits,
        "stride2_bits": k.binary_conv2d(px, pw, 2, scale, shift, output="packed").bits,
        "pool": k.max_pool2d(x, 3, 2, 1, scale=bn_scale, shift=bn_shift, relu=True),
        "stem": k.fp_stem(x[:, :3], stem_w, stem_b, 2, True, True, 1),
        "logits": logits,
        "packed_logits": pack_model(model)(images),
    }
"""

_WITHOUT_COMPILER = """
import sys
from pathlib import Path
from nas.nn.kernels import _native
_native.LIBRARY = Path(sys.argv[1]) / "_bconv.so"  # not built, and no gcc or cc on PATH
namespace = {}
exec(sys.argv[2], namespace)
import torch
torch.save(namespace["cases"](), Path(sys.argv[1]) / "cases.pt")
"""


def test_without_a_compiler_it_warns_and_gives_the_compiled_results(tmp_path, monkeypatch):
    """A machine without gcc: in a fresh process whose PATH has no compiler and whose library is
    not built yet, ``nas.nn.kernels`` warns once and runs the PyTorch reference path; packing, the
    conv with its epilogue and packed output, the pool and a packed network (shortcuts added in
    place, a mean join) give the results of this process, the compiled kernels
    where they are built, bit for bit; ``fp_stem`` steps aside (None) for the caller's PyTorch
    stem. ``nas.nn.binary``'s C loops, not built either, warn and leave the float modules' logits
    as they are."""
    import subprocess
    import sys

    import nas.nn.packed.network as packed_module

    no_compiler = tmp_path / "bin"
    no_compiler.mkdir()
    env = {
        **os.environ,
        "PATH": str(no_compiler),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # nas.nn.binary's loops: not built either
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_COMPILER, str(tmp_path), _FALLBACK_CASES],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("binary conv kernels unavailable (no C compiler") == 1, done.stderr
    assert "using the PyTorch reference path" in done.stderr
    assert "nas.nn.binary: the fused binary conv's C loops are unavailable" in done.stderr
    assert not (tmp_path / "_bconv.so").exists()
    fallback = torch.load(tmp_path / "cases.pt", weights_only=True)
    # here the packed networks' stems run as there (PyTorch's conv): the compiled stem sums in
    # another order, which may flip a sign downstream
    monkeypatch.setattr(packed_module, "fp_stem", lambda *args: None)
    namespace = {}
    exec(_FALLBACK_CASES, namespace)
    here = namespace["cases"]()
    assert fallback["paths"] == [] and fallback["stem"] is None
    for key in ("pack", "pack_bn", "conv", "epilogue", "epilogue_bits", "stride2_bits", "pool"):
        assert torch.equal(fallback[key], here[key]), key
    assert torch.equal(fallback["logits"], here["logits"])
    assert torch.equal(fallback["packed_logits"], here["packed_logits"])


@pytest.mark.slow
def test_bench_json_has_the_fields_the_issue_names(compiled_kernels):
    """``python -m speed.packed --json``: layers and models with their timings (the figures
    themselves belong to the README, not to a test)."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "speed.packed", "--json", "--seconds", "0.01"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    shapes = [layer["shape"] for layer in result["layers"]]
    assert shapes == ["56x56x64", "28x28x128", "14x14x256", "7x7x512"]
    for layer in result["layers"]:
        assert layer["batch"] == 1 and layer["threads"] == 1
        for key in ("packed_ms", "packed_bits_ms", "packed_bireal_ms", "torch_fp32_ms"):
            assert layer[key] > 0
        assert layer["torch_bf16_ms"] > 0
        assert layer["torch_int8_ms"] is None or layer["torch_int8_ms"] > 0
        assert layer["openvino_ms"] is None or layer["openvino_ms"] > 0
    names = [model["model"] for model in result["models"]]
    assert names == ["bireal_resnet18", "igp_resnet37", "binary_densenet28"]
    for model in result["models"]:
        timed = ("packed_ms", "torch_fp32_ms", "torch_bf16_ms", "torch_int8_ms")
        assert all(model[key] > 0 for key in timed)
    assert result["machine"]["before"]["clock_ghz"] > 0


@pytest.mark.slow
def test_bench_text_gives_each_layer_and_its_share_of_the_ceiling(compiled_kernels):
    """The table a person reads: one row per layer with its rates, as shares of the XOR + POPCNT +
    ADD ceiling where the CPU can probe it (AVX-512 VPOPCNTDQ), and the whole networks."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "speed.packed", "--seconds", "0.01"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    for shape in ("56x56x64", "28x28x128", "14x14x256", "7x7x512"):
        assert shape in rows and " T, " in rows[shape]
        assert ("of the ceiling)" in rows[shape]) == ("avx512" in available_paths())
    assert "whole networks at 224 px, ms per image:" in done.stdout
    for name in ("bireal_resnet18", "igp_resnet37", "binary_densenet28"):
        assert name in rows and rows[name].split()[1] == "packed"


def test_pack_writes_where_o_says_or_a_plain_file_name_here(tmp_path, monkeypatch, capsys):
    """Without ``-o`` the file is NAME.packed.pt in the current folder, NAME the spec's name made
    a plain file name: a name with ``../`` or an absolute path writes nowhere else."""
    from pathlib import Path

    from nas import cli
    from nas.pack import default_output, main

    spec = model_spec("bireal_resnet18", input_size=8, classes=3)
    for name, expected in [
        ("bireal_resnet18", "bireal_resnet18.packed.pt"),
        ("../../escaped", "_.._escaped.packed.pt"),
        ("/etc/cron.d/x", "_etc_cron.d_x.packed.pt"),
        (".hidden", "hidden.packed.pt"),
        ("..", f"{arch_id(spec)}.packed.pt"),
        ("", f"{arch_id(spec)}.packed.pt"),
        ("résumé net", "r_sum__net.packed.pt"),
        ("n" * 256, "n" * 100 + ".packed.pt"),
    ]:
        assert default_output(spec.replace(name=name)) == Path(expected), name
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "spec.json").write_text(spec.replace(name="../escaped").to_json())
    monkeypatch.chdir(work)
    assert cli.run("pack", main, [str(tmp_path / "spec.json"), "--check", "1"]) == 0
    assert "wrote _escaped.packed.pt" in capsys.readouterr().out
    assert [p.name for p in tmp_path.rglob("*.pt")] == ["_escaped.packed.pt"]
    assert (work / "_escaped.packed.pt").is_file()
    out = tmp_path / "elsewhere.pt"
    assert cli.run("pack", main, [str(tmp_path / "spec.json"), "--check", "1", "-o", str(out)]) == 0
    assert out.is_file()


def test_pack_says_in_one_whole_line_why_a_checkpoint_was_refused(tmp_path, capsys):
    """A whole pickled module (torch.load(weights_only=True) refuses it), an empty file: the line
    says what was refused and what to save instead, not torch's first 90 characters."""
    from nas import cli
    from nas.pack import main

    spec = model_spec("bireal_resnet18", input_size=8, classes=3).replace(padding="one")
    (tmp_path / "spec.json").write_text(spec.to_json())
    torch.save(build_model(spec), tmp_path / "module.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    for checkpoint, says in [
        (
            "module.pt",
            "torch.load(weights_only=True) refused it (Unsupported global: GLOBAL "
            "nas.nn.model.Network was not an allowed global by default); a checkpoint is a state "
            "dict saved with torch.save(model.state_dict(), path)",
        ),
        ("empty.pt", "not a file of torch.save (EOFError: the file ends early)"),
    ]:
        path = tmp_path / checkpoint
        argv = [str(tmp_path / "spec.json"), "--checkpoint", str(path), "-o", str(tmp_path / "x")]
        assert cli.run("pack", main, argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"cannot read the checkpoint {path}: {says}" in err, err
        assert "\x1b" not in err and "PyTorch 2.6" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("padding_value", [0.0, 1.0])
def test_the_int8_anchor_computes_a_binary_conv_within_its_requantization_step(padding_value):
    """PyTorch's int8 conv on +-1 values gives each integer sum to within half its output step
    (the largest sum / 127), against the float binary conv."""
    from nas.nn.binary import BinaryConv2d
    from nas.nn.packed.int8 import Int8BinaryConv, int8_model

    torch.manual_seed(0)
    conv = BinaryConv2d(16, 32, 3, stride=2, padding_value=padding_value).eval()
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        alpha = conv.weight.abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
        sums = conv(x) / alpha
        largest = float(sums.abs().max())
        int8 = Int8BinaryConv(conv, largest)(x) / alpha
        assert int8.shape == sums.shape
        assert (int8 - sums).abs().max() <= largest / 127 / 2 + 1e-4
        model = int8_model(torch.nn.Sequential(conv), x)
        assert isinstance(model[0], Int8BinaryConv)
        assert torch.equal(model(x), Int8BinaryConv(conv, largest)(x))
