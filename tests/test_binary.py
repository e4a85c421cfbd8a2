"""Binary layers against float references."""

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.binary import ApproxSign, BinaryConv2d, SignSTE, binarize_weight


def test_sign_forward_is_plus_minus_one_with_sign_of_zero_positive():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 5.0])
    for fn in (SignSTE, ApproxSign):
        assert fn.apply(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]


def test_ste_gradient_is_clipped_identity():
    x = torch.tensor([-1.5, -1.0, -0.2, 0.0, 0.7, 1.0, 1.2], requires_grad=True)
    SignSTE.apply(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_approxsign_gradient_is_bireal_polynomial():
    """Bi-Real (Liu et al. 2018, eq. 6): ApproxSign is 2x + x^2 on [-1, 0) and 2x - x^2 on [0, 1),
    so its derivative is 2 + 2x and 2 - 2x there, 0 outside."""
    x = torch.linspace(-1.5, 1.5, 31, dtype=torch.float64, requires_grad=True)
    ApproxSign.apply(x).sum().backward()
    xs = x.detach()
    expected = torch.autograd.functional.jacobian(
        lambda t: torch.where(
            t.abs() >= 1, torch.sign(t), torch.where(t < 0, 2 * t + t**2, 2 * t - t**2)
        ).sum(),
        xs,
    )
    assert torch.allclose(x.grad, expected)


def test_weight_binarisation_is_sign_times_channel_mean_abs_with_identity_gradient():
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    wb = binarize_weight(w)
    for c in range(4):
        alpha = w[c].abs().mean()
        assert torch.allclose(wb[c], alpha * torch.where(w[c] >= 0, 1.0, -1.0))
    wb.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


@settings(max_examples=25, deadline=None)
@given(
    cin=st.integers(1, 9),
    cout=st.integers(1, 9),
    side=st.integers(1, 9),
    stride=st.sampled_from([1, 2]),
    kernel=st.sampled_from([1, 3]),
    pad=st.sampled_from([0.0, 1.0]),
)
def test_binary_conv_equals_float_conv_on_binarised_tensors(cin, cout, side, stride, kernel, pad):
    torch.manual_seed(cin * 100 + cout * 10 + side)
    conv = BinaryConv2d(cin, cout, kernel, stride, padding_value=pad)
    x = torch.randn(2, cin, side, side)
    xb = torch.where(x >= 0, 1.0, -1.0)
    w = conv.weight.detach()
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    wb = alpha * torch.where(w >= 0, 1.0, -1.0)
    p = kernel // 2
    ref = F.conv2d(F.pad(xb, (p, p, p, p), value=pad), wb, stride=stride)
    assert torch.allclose(conv(x), ref, atol=1e-5)
