"""nas.nn.proxies against hand-derived or brute-force values on tiny networks, and on a real one."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from nas.core.registry import model_spec
from nas.nn import proxies
from nas.nn.binary import BinaryActivation, BinaryConv2d
from nas.nn.model import build_model

# --- hand-derived cross-entropy gradients: grad_norm and snip ------------------------------------


def _softmax_minus_onehot(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dz for the mean cross-entropy of logits z (n, k): (softmax(z) - onehot(y)) / n."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p / len(y)


def test_grad_norm_and_snip_of_one_linear_layer_match_the_cross_entropy_gradient():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3)).double()
    images = torch.randn(5, 1, 2, 3, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 2, 0])
    w = model[1].weight.detach().numpy()
    b = model[1].bias.detach().numpy()
    x = images.reshape(5, 6).numpy()
    # L = mean_i CE(W x_i + b, y_i): dL/dW = sum_i (p_i - e_{y_i}) x_i^T / n
    g = _softmax_minus_onehot(x @ w.T + b, labels.numpy()).T @ x
    assert proxies.grad_norm(model, images, labels) == pytest.approx(
        np.sqrt((g**2).sum()), rel=1e-12
    )
    assert proxies.snip(model, images, labels) == pytest.approx(np.abs(w * g).sum(), rel=1e-12)


def _finite_difference_gradients(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, h: float = 1e-6
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(W, dL/dW) by central differences, for the weight of every conv and linear layer."""
    net = copy.deepcopy(model).train()
    out = []
    for m in net.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w = m.weight.detach()
        grad = torch.zeros_like(w)
        for idx in itertools.product(*(range(s) for s in w.shape)):
            old = float(w[idx])
            losses = []
            for step in (h, -h):
                with torch.no_grad():
                    w[idx] = old + step
                    logits = net(images)
                    losses.append(float(nn.functional.cross_entropy(logits, labels)))
            with torch.no_grad():
                w[idx] = old
            grad[idx] = (losses[0] - losses[1]) / (2 * h)
        out.append((w.clone(), grad))
    return out


def test_grad_norm_and_snip_sum_conv_and_linear_weights_with_batch_norm_in_training_mode():
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 4),
    ).double()
    with torch.no_grad():  # BN parameters are not weights of the sum; make them matter anyway
        model[1].weight.copy_(torch.tensor([0.5, 2.0, 1.5]))
        model[1].bias.copy_(torch.tensor([0.1, -0.3, 0.2]))
    model.eval()  # the proxies run their copy in training mode whatever the model's mode
    images = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    pairs = _finite_difference_gradients(model, images, labels)
    expected_norm = sum(float(g.norm()) for _, g in pairs)
    expected_snip = sum(float((w * g).abs().sum()) for w, g in pairs)
    assert proxies.grad_norm(model, images, labels) == pytest.approx(expected_norm, rel=1e-6)
    assert proxies.snip(model, images, labels) == pytest.approx(expected_snip, rel=1e-6)
    assert not model.training


def test_grad_norm_and_snip_of_a_binary_conv_use_the_straight_through_gradient():
    torch.manual_seed(3)
    conv = BinaryConv2d(2, 3, 1)
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
    images = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    labels = torch.tensor([2, 0, 1, 1])
    w = conv.weight.detach().numpy()[:, :, 0, 0]
    # logits z_i = A m_i: A = alpha * sign(W) (alpha = mean |W| of each row), m_i the spatial
    # mean of sign(x_i) (sign(0) = +1); dL/dA = (P - Y)^T M / n and dL/dW = dL/dA (STE)
    a = np.abs(w).mean(axis=1, keepdims=True) * np.where(w >= 0, 1.0, -1.0)
    m = np.where(images.numpy() >= 0, 1.0, -1.0).mean(axis=(2, 3))
    g = _softmax_minus_onehot(m @ a.T, labels.numpy()).T @ m
    assert proxies.grad_norm(model, images, labels) == pytest.approx(
        np.sqrt((g**2).sum()), rel=1e-12
    )
    assert proxies.snip(model, images, labels) == pytest.approx(np.abs(w * g).sum(), rel=1e-12)


# --- synflow: closed forms of positive linear networks -------------------------------------------


@pytest.mark.parametrize("middle", [nn.Identity, nn.ReLU, BinaryActivation])
def test_synflow_of_a_linear_chain_is_twice_the_product_of_absolute_weights(middle):
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(4, 3, bias=False), middle(), nn.Linear(3, 2, bias=False)
    )
    w1 = model[1].weight.detach().double().numpy()
    w2 = model[3].weight.detach().double().numpy()
    # R = 1^T |W2| |W1| 1; each layer's sum of W * dR/dW is R again (1^T|W2| |W1| 1), so 2R
    r = np.ones(2) @ np.abs(w2) @ np.abs(w1) @ np.ones(4)
    images = torch.randn(3, 1, 2, 2)  # only the shape matters
    assert proxies.synflow(model, images) == pytest.approx(math.log(2 * r), rel=1e-12)
    assert proxies.synflow(model, -5 * images) == proxies.synflow(model, images)


def test_synflow_treats_batch_norm_as_identity_and_counts_biases_in_r_only():
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    bn = model[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([3.0, -2.0, 0.5, 7.0]))
        bn.bias.copy_(torch.tensor([1.0, -4.0, 2.0, 0.3]))
        bn.running_mean.fill_(5.0)
        bn.running_var.fill_(100.0)
    w1 = model[0].weight.detach().double().numpy()[:, :, 0, 0]
    w2 = model[5].weight.detach().double().numpy()
    # every pixel of the all-ones input gives |W1| 1; the average pool keeps it; R = 1^T(|W2||W1|1
    # + |b|). Conv: sum_o |W1|_oi * (1^T|W2|)_o = 1^T|W2||W1|1, linear: the same; bias not summed.
    s = np.ones(2) @ np.abs(w2) @ np.abs(w1) @ np.ones(3)
    images = torch.zeros(2, 3, 5, 5)
    assert proxies.synflow(model, images) == pytest.approx(math.log(2 * s), rel=1e-12)


def _taps_inside(size: int, kernel: int) -> np.ndarray:
    """n[ky, kx]: the output pixels of a same-padded conv whose tap (ky, kx) reads the image."""
    half = kernel // 2
    per_axis = np.array([size - abs(k - half) for k in range(kernel)], dtype=float)
    return np.outer(per_axis, per_axis)


def test_synflow_of_one_3x3_conv_counts_each_tap_once_per_pixel_it_reads():
    torch.manual_seed(6)
    model = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    w = np.abs(model.weight.detach().double().numpy())
    # R = sum over output pixels and taps of |W| * input(=1 inside, 0 in the padding); one layer,
    # so the score is R itself
    r = (w * _taps_inside(4, 3)).sum()
    assert proxies.synflow(model, torch.randn(1, 2, 4, 4)) == pytest.approx(math.log(r), rel=1e-12)


@pytest.mark.parametrize("padding_value", [0.0, 1.0])
def test_synflow_of_a_binary_conv_uses_its_effective_weights_and_identity_sign(padding_value):
    torch.manual_seed(7)
    conv = BinaryConv2d(2, 3, 3, padding_value=padding_value)
    with torch.no_grad():
        conv.weight[0, 0, 1, 1] = 0.0  # a zero latent weight binarises to +alpha
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2, bias=False))
    size = 3
    latent = conv.weight.detach().double().numpy()
    alpha = np.abs(latent).mean(axis=(1, 2, 3))  # |alpha * sign(W)| = alpha everywhere
    w2 = np.abs(model[3].weight.detach().double().numpy())
    # each output channel o averages sum_{i, taps reading 1} alpha_o over the pixels: with zero
    # padding sum_i sum_k alpha_o n_k / HW, with +1 padding every tap reads 1: 2 * 9 * alpha_o
    taps = _taps_inside(size, 3) if padding_value == 0.0 else np.full((3, 3), size * size * 1.0)
    per_channel = alpha * 2 * taps.sum() / size**2
    r = (np.ones(2) @ w2) @ per_channel
    # conv term: sum alpha * dR/dalpha = R (no other path); linear term: R
    images = torch.ones(1, 2, size, size)
    assert proxies.synflow(model, images) == pytest.approx(math.log(2 * r), rel=1e-12)


def test_synflow_returns_inf_when_float64_overflows():
    layers = []
    for _ in range(60):
        lin = nn.Linear(50, 50, bias=False)
        nn.init.constant_(lin.weight, 1e5)
        layers.append(lin)
    model = nn.Sequential(nn.Flatten(), *layers)  # R = 50 * (50 * 1e5)^60 ~ 1e400
    assert proxies.synflow(model, torch.ones(1, 50)) == math.inf


# --- naswot: Hamming kernels, crafted and brute-forced codes -------------------------------------


def _hamming_kernel(codes: list[list[int]]) -> np.ndarray:
    n = len(codes)
    k = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            hamming = sum(a != b for a, b in zip(codes[i], codes[j], strict=True))
            k[i, j] = len(codes[i]) - hamming
    return k


def test_naswot_kernel_is_code_length_minus_hamming_distance():
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 2, size=(6, 37)).tolist()
    kernel = proxies.naswot_kernel(torch.tensor(codes, dtype=torch.bool))
    np.testing.assert_array_equal(kernel.numpy(), _hamming_kernel(codes))


def test_naswot_of_crafted_codes_has_the_hand_computed_determinant():
    # Hamming distances 2, 4, 2 -> K = [[4, 2, 0], [2, 4, 2], [0, 2, 4]], det = 48 - 16 = 32
    codes = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    assert proxies.naswot_from_codes(codes) == pytest.approx(math.log(32), rel=1e-12)
    # the rows of a 4x4 Hadamard matrix (orthogonal as +/-1 codes) agree pairwise in exactly 2
    # of 4 places: K = 2 I + 2 11^T, det = 2^4 * (1 + 4) = 80
    hadamard = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]])
    assert proxies.naswot_from_codes(hadamard) == pytest.approx(math.log(80), rel=1e-12)


def test_naswot_reads_codes_at_the_sign_activation_with_zero_as_plus_one():
    model = nn.Sequential(nn.Flatten(), BinaryActivation(), nn.Linear(4, 2))
    images = torch.tensor(
        [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, -2.0], [-1.0, -2.0, -3.0, -4.0]]
    ).reshape(3, 1, 2, 2)
    # codes 1111, 1100 (0 -> +1, as sign(0) = +1), 0000: ln 32 (with x > 0 it would be ln 24)
    assert proxies.naswot(model, images) == pytest.approx(math.log(32), rel=1e-12)


def test_naswot_of_two_images_with_one_code_is_minus_infinity():
    model = nn.Sequential(nn.Flatten(), BinaryActivation(), nn.Linear(4, 2))
    images = torch.tensor([[1.0, -2.0, 3.0, 4.0], [2.0, -1.0, 0.5, 9.0], [-1.0, 1.0, 1.0, 1.0]])
    assert proxies.naswot(model, images) == -math.inf


def test_naswot_concatenates_the_codes_of_every_sign_activation():
    torch.manual_seed(9)
    model = nn.Sequential(
        nn.Flatten(), BinaryActivation(), nn.Linear(5, 3), BinaryActivation(), nn.Linear(3, 2)
    ).double()
    images = torch.randn(4, 5, dtype=torch.float64)
    x = images.numpy()
    w, b = model[2].weight.detach().numpy(), model[2].bias.detach().numpy()
    hidden = np.where(x >= 0, 1.0, -1.0) @ w.T + b
    codes = np.concatenate([x >= 0, hidden >= 0], axis=1).astype(int).tolist()
    sign, logdet = np.linalg.slogdet(_hamming_kernel(codes))
    assert sign > 0
    assert proxies.naswot(model, images) == pytest.approx(logdet, rel=1e-10)


def test_naswot_hooks_the_input_binarisation_of_binary_convs():
    torch.manual_seed(10)
    model = nn.Sequential(BinaryConv2d(2, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    images = torch.randn(5, 2, 3, 3)
    codes = (images.flatten(1) >= 0).int().tolist()
    assert proxies.naswot(model, images) == pytest.approx(
        np.linalg.slogdet(_hamming_kernel(codes))[1], rel=1e-10
    )


def test_naswot_of_a_network_without_signs_reads_its_relus_with_zero_as_inactive():
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False)
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(4))
        model[3].weight.fill_(-1.0)  # after the ReLU: no second unit, the code stays 4 bits
    images = torch.tensor(
        [[1.0, 2.0, 3.0, 4.0], [0.5, 2.0, 0.0, -2.0], [-1.0, -2.0, -3.0, -4.0]]
    ).reshape(3, 1, 2, 2)
    # ReLU bits x > 0: 1111, 1100 (0 is inactive), 0000 -> ln 32, as the crafted codes above
    assert proxies.naswot(model, images) == pytest.approx(math.log(32), rel=1e-12)


def test_naswot_of_a_binary_network_ignores_its_full_precision_relus():
    model = nn.Sequential(nn.Flatten(), BinaryActivation(), nn.ReLU(), nn.Linear(4, 2))
    images = torch.tensor(
        [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, -2.0], [-1.0, -2.0, -3.0, -4.0]]
    ).reshape(3, 1, 2, 2)
    # the ReLU reads the +/-1 signs (1111, 1100, 0000 again): counted, it would double K
    assert proxies.naswot(model, images) == pytest.approx(math.log(32), rel=1e-12)


def test_naswot_refuses_a_network_without_activation_units():
    with pytest.raises(ValueError, match="sign activation"):
        proxies.naswot(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.randn(3, 4))


# --- zen_score: a direct computation ------------------------------------------------------------


def _batch_norm(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    mean = h.mean(dim=(0, 2, 3), keepdim=True)
    var = h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (h - mean) / torch.sqrt(var + 1e-5) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


@pytest.mark.parametrize("alpha", [0.01, 0.3])
def test_zen_score_matches_a_direct_computation(alpha):
    torch.manual_seed(11)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 1, bias=False),
        nn.BatchNorm2d(4),
        BinaryActivation(),
        nn.Conv2d(4, 2, 1, bias=False),
        nn.BatchNorm2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 3),
    ).double()
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.5, 0.5)
    model.eval()
    shape = (6, 3, 4, 4)
    generator = torch.Generator().manual_seed(123)  # documented order: x, then eps
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    eps = torch.randn(shape, generator=generator, dtype=torch.float64)
    w1 = model[0].weight.detach()[:, :, 0, 0]
    w2 = model[3].weight.detach()[:, :, 0, 0]
    g1, b1 = model[1].weight.detach(), model[1].bias.detach()
    g2, b2 = model[4].weight.detach(), model[4].bias.detach()

    def features(inp: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h1 = torch.einsum("oi,nihw->nohw", w1, inp)
        a = torch.where(_batch_norm(h1, g1, b1) >= 0, 1.0, -1.0).double()
        h2 = torch.einsum("oi,nihw->nohw", w2, a)
        return _batch_norm(h2, g2, b2), [h1, h2]

    f_clean, bn_inputs = features(x)
    f_noisy, _ = features(x + alpha * eps)
    delta = torch.sqrt(((f_clean - f_noisy) ** 2).sum(dim=(1, 2, 3))).mean()
    bn_term = sum(
        math.log(math.sqrt(float(h.var(dim=(0, 2, 3), unbiased=False).mean()))) for h in bn_inputs
    )
    images = torch.zeros(shape, dtype=torch.float64)
    got = proxies.zen_score(model, images, seed=123, alpha=alpha, gaussian_init=False)
    if alpha == 0.01:
        # the binary caveat: noise of 0.01 flips no sign here, f(x + alpha eps) = f(x) exactly
        assert float(delta) == 0.0 and got == -math.inf
    else:
        assert float(delta) > 0
        assert got == pytest.approx(math.log(float(delta)) + bn_term, rel=1e-10)


def test_zen_score_gaussian_init_ignores_the_model_weights():
    torch.manual_seed(12)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-7.0)
    images = torch.randn(4, 3, 5, 5)
    a = proxies.zen_score(model, images, seed=3)
    assert a == proxies.zen_score(other, images, seed=3)
    assert a != proxies.zen_score(model, images, seed=3, gaussian_init=False)


def test_zen_score_refuses_a_network_without_global_average_pool():
    with pytest.raises(ValueError, match="AdaptiveAvgPool2d"):
        proxies.zen_score(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.randn(3, 4))


# --- a real project network ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bireal():
    torch.manual_seed(13)
    model = build_model(model_spec("bireal_resnet18", input_size=16, classes=10))
    generator = torch.Generator().manual_seed(14)
    images = torch.randn(6, 3, 16, 16, generator=generator)
    labels = torch.randint(0, 10, (6,), generator=generator)
    return model, images, labels


@pytest.mark.slow  # a whole network, seconds
def test_all_proxies_on_bireal_resnet18_are_finite_deterministic_and_leave_the_model_alone(bireal):
    model, images, labels = bireal
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    first = proxies.zero_cost_proxies(model, images, labels, seed=0)
    assert tuple(first) == proxies.PROXIES
    assert all(math.isfinite(v) for v in first.values()), first
    assert first["grad_norm"] > 0 and first["snip"] > 0
    # each function alone, on the same inputs, gives the same values again
    again = {
        "grad_norm": proxies.grad_norm(model, images, labels, seed=0),
        "snip": proxies.snip(model, images, labels, seed=0),
        "synflow": proxies.synflow(model, images, seed=0),
        "naswot": proxies.naswot(model, images, seed=0),
        "zen_score": proxies.zen_score(model, images, seed=0),
    }
    assert again == first
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.slow  # a whole network, seconds
def test_zero_cost_proxies_seed_moves_only_the_random_proxy(bireal):
    model, images, labels = bireal
    names = ("grad_norm", "naswot", "zen_score")
    a = proxies.zero_cost_proxies(model, images, labels, seed=0, names=names)
    b = proxies.zero_cost_proxies(model, images, labels, seed=1, names=names)
    assert a["grad_norm"] == b["grad_norm"] and a["naswot"] == b["naswot"]
    assert a["zen_score"] != b["zen_score"]


def test_zero_cost_proxies_refuses_unknown_names_and_mismatched_labels(bireal):
    model, images, labels = bireal
    with pytest.raises(ValueError, match="unknown proxies"):
        proxies.zero_cost_proxies(model, images, labels, names=("jacov",))
    with pytest.raises(ValueError, match="labels"):
        proxies.zero_cost_proxies(model, images, labels[:-1])
