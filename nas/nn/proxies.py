"""Zero-cost proxies of a binary network at initialisation, on one mini-batch.

Each proxy scores an untrained network (a ``torch.nn.Module``, typically
``nas.nn.model.build_model(spec)``) from one mini-batch, without training. All of them work on a
fresh deep copy of the model: the model's parameters, buffers, gradients, training flag and the
global random state are left as they were. Logarithms are natural logarithms (ln) throughout.

* ``grad_norm`` (Abdelfattah, Mehrotra, Dudziak, Lane, "Zero-Cost Proxies for Lightweight NAS",
  ICLR 2021): sum over the weight tensors W of the conv and linear layers of ||dL/dW||_2, L the
  mean cross-entropy of the batch.
* ``snip`` (Lee, Ajanthan, Torr, "SNIP: Single-shot Network Pruning based on Connection
  Sensitivity", ICLR 2019; summed over the network as Abdelfattah et al. do): sum over the same
  weights of |W * dL/dW|, the connection sensitivity |dL/dc| of a multiplicative mask c = 1.
* ``synflow`` (Tanaka, Kunin, Yamins, Ganguli, "Pruning neural networks without any data by
  iteratively conserving synaptic flow", NeurIPS 2020; as a proxy, Abdelfattah et al.): with every
  parameter replaced by its absolute value and an all-ones input, R = sum of the output and the
  score is sum of W * dR/dW over the conv and linear weights, in float64. Returned as ln(score).
* ``naswot`` (Mellor, Turner, Storkey, Crowley, "Neural Architecture Search without Training",
  ICML 2021): each image's binary code c_i at the sign activations, K_H[i, j] = N_A -
  Hamming(c_i, c_j), score ln|det K_H|. A binary network's activations already are signs, so the
  codes are exactly what the network computes.
* ``zen_score`` (Lin, Wang, Sun, Chen, Sun, Qian, Li, Jin, "Zen-NAS: A Zero-Shot NAS for
  High-Performance Image Recognition", ICCV 2021): ln E||f(x) - f(x + alpha eps)||_F over the
  pre-pooling feature map f, x and eps standard Gaussian, alpha = 0.01, plus the sum over the BN
  layers of ln sqrt(mean over channels of the batch variance).

Treatment of the binary parts (details in each function's docstring):

* ``grad_norm``, ``snip``, ``naswot`` and ``zen_score`` run the network as it is, in training
  mode (BN on batch statistics, as a freshly built network and the reference implementations
  run); gradients through the sign activations and the binarised weights are the network's own
  straight-through ones (:mod:`nas.nn.binary`), so W is a binary conv's latent real weight.
* ``synflow`` linearises: BN layers are the identity and sign activations the identity (see
  :func:`synflow` for why); a binary conv keeps its weight binarisation, whose absolute values are
  its per-output-channel scales alpha, and those effective weights are the W of its term.
* ``naswot`` takes bit = (x >= 0) at the input of every sign activation, as the project's sign
  maps 0 to +1 (a network without signs: bit = (x > 0) at its ReLUs, as the paper).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from nas.nn.binary import BinaryActivation, BinaryConv2d

PROXIES: tuple[str, ...] = ("grad_norm", "snip", "synflow", "naswot", "zen_score")
"""The proxies :func:`zero_cost_proxies` computes, in this order."""

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


# --- shared helpers ---------------------------------------------------------------------------


def _device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _fresh_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with no gradients held and every parameter trainable."""
    net = copy.deepcopy(model)
    for p in net.parameters():
        p.grad = None
        p.requires_grad_(True)
    return net


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with the global RNGs seeded, restoring their states afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _weights(net: nn.Module) -> list[torch.Tensor]:
    """The weight tensors of the conv and linear layers (binary convs included), biases not."""
    return [m.weight for m in net.modules() if isinstance(m, _WEIGHTED)]


def _check_batch(images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    if images.dim() < 2 or images.shape[0] < 1:
        raise ValueError(f"images must be a batch (N, ...) with N >= 1, got {tuple(images.shape)}")
    if labels is not None and (labels.dim() != 1 or labels.shape[0] != images.shape[0]):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")


def _replace_modules(
    net: nn.Module, kinds: tuple[type, ...], make: Callable[[nn.Module], nn.Module]
) -> nn.Module:
    """Replace every submodule of one of ``kinds`` by ``make(old)``; returns the (new) root."""
    if isinstance(net, kinds):
        return make(net)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kinds):
                setattr(parent, name, make(child))
    return net


def _loss_gradients(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(W, dL/dW) for the conv and linear weights of a training-mode copy, L = mean CE."""
    _check_batch(images, labels)
    device = _device(model)
    net = _fresh_copy(model).train()
    weights = _weights(net)
    if not weights:
        raise ValueError("the model has no conv or linear layer")
    with _seeded(seed, device):
        loss = F.cross_entropy(net(images.to(device)), labels.to(device))
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads, strict=True)]
    return [w.detach() for w in weights], [g.detach() for g in grads]


# --- the proxies --------------------------------------------------------------------------------


def grad_norm(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0
) -> float:
    """Sum over the conv and linear weight tensors W of the L2 (Frobenius) norm of dL/dW.

    Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021), ``grad_norm``:
    L is the cross-entropy of the batch (mean over images), computed once on a training-mode
    copy (BN on batch statistics). Biases and BN parameters are not counted. A binary conv's W
    is its latent real weight, and dL/dW the network's straight-through gradient (the sign
    activations' clipped-identity or ApproxSign backward, identity through the weight
    binarisation, :mod:`nas.nn.binary`). ``seed`` seeds any randomness of the forward."""
    return _grad_norm_of(_loss_gradients(model, images, labels, seed)[1])


def _grad_norm_of(grads: list[torch.Tensor]) -> float:
    return math.fsum(float(g.double().norm()) for g in grads)


def _snip_of(weights: list[torch.Tensor], grads: list[torch.Tensor]) -> float:
    return math.fsum(
        float((w.double() * g.double()).abs().sum()) for w, g in zip(weights, grads, strict=True)
    )


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0) -> float:
    """Sum over the conv and linear weight tensors W of |W * dL/dW| (elementwise, summed).

    Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity" (ICLR 2019):
    the sensitivity of connection j is |dL/dc_j| for a mask c = 1 multiplying the weights, which
    is |W_j dL/dW_j|; summed over the network as in Abdelfattah et al. (ICLR 2021). Same loss,
    mode and gradients as :func:`grad_norm`; for a binary conv the mask multiplies the latent
    weight before binarisation, so W is the latent weight and dL/dW the straight-through
    gradient."""
    return _snip_of(*_loss_gradients(model, images, labels, seed))


def _linearise_for_synflow(net: nn.Module) -> nn.Module:
    """In place: |parameters|, BN and sign activations -> identity, binary conv weights -> the
    absolute values of their effective (binarised) weights. Returns the (possibly new) root."""
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
        for m in net.modules():
            if isinstance(m, BinaryConv2d):
                w = m.weight
                alpha = w.mean(dim=tuple(range(1, w.dim())), keepdim=True)  # w >= 0 already
                w.copy_(alpha.expand_as(w))
    net = _replace_modules(net, (_BatchNorm,), lambda _: nn.Identity())
    return _replace_modules(net, (BinaryActivation,), lambda _: nn.Identity())


def synflow(model: nn.Module, images: torch.Tensor, *, seed: int = 0) -> float:
    """ln of the SynFlow score: sum over the conv and linear weights W of W * dR/dW.

    Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic
    flow" (NeurIPS 2020), as a zero-cost proxy in Abdelfattah et al. (ICLR 2021): every parameter
    is replaced by its absolute value, the input is one all-ones image of the batch's image shape
    (``images`` gives only the shape), R is the sum of the network's output, and the score sums
    W * dR/dW (all terms >= 0) over the weight tensors of the conv and linear layers (biases are
    in R, not in the sum). Computed in float64 on a copy.

    Choices for a binary network:

    * **BN is the identity** (as Abdelfattah et al.'s ``synflow``, which builds the network
      without BN). Tanaka et al.'s eval mode with a fresh network's statistics (mean 0, variance
      1, gamma 1, beta 0) differs only by the factor (1 + eps)^-1/2 per BN.
    * **Sign activations are the identity.** SynFlow's premise is a network that is linear on the
      positive orthant (a ReLU is the identity there). A sign is not: on all-positive inputs it is
      the constant +1, so nothing before it would reach R in the forward, and its
      straight-through backward (zero where |x| > 1) would cut the gradient to every earlier
      layer, leaving a score of the last layers only. The straight-through estimator itself
      treats sign as the identity, and the linearised network (sign -> identity) is the reading
      used here.
    * **Binary convs keep their weight binarisation**: the weights the network multiplies by are
      alpha * sign(W) (alpha the mean |W| of each output channel); their absolute values are
      alpha, so the conv acts with the constant kernel alpha of each output channel, and its term
      is sum alpha * dR/d(alpha * sign W) over the kernel: W in the formula is the effective
      weight. (The latent weight's straight-through gradient is the same dR/dW_eff.) With
      ``"padding": "one"`` the +1 padding stays: a constant input of the conv, which its
      weights multiply like any other input.

    Returns the natural log of the score: -inf for a score of 0, +inf if the float64
    computation overflows (a raw score beyond ~1e308, ln > 709). ``seed`` seeds any randomness
    of the forward (none in the project's networks)."""
    _check_batch(images)
    device = _device(model)
    net = _linearise_for_synflow(_fresh_copy(model).double()).eval()
    weights = _weights(net)
    if not weights:
        raise ValueError("the model has no conv or linear layer")
    x = torch.ones((1, *images.shape[1:]), dtype=torch.float64, device=device)
    with _seeded(seed, device):
        r = net(x).sum()
        grads = torch.autograd.grad(r, weights, allow_unused=True)
    score = math.fsum(
        float((w.detach() * g).sum()) for w, g in zip(weights, grads, strict=True) if g is not None
    )
    if not math.isfinite(score) or not math.isfinite(float(r.detach())):
        return math.inf
    return math.log(score) if score > 0 else -math.inf


def naswot_kernel(codes: torch.Tensor) -> torch.Tensor:
    """K_H[i, j] = N_A - Hamming(c_i, c_j) for binary codes ``codes`` of shape (N, N_A) (bool or
    0/1), in float64: the number of positions where codes i and j agree."""
    if codes.dim() != 2:
        raise ValueError(f"codes must have shape (N, N_A), got {tuple(codes.shape)}")
    c = codes.to(torch.float64)
    return c @ c.T + (1 - c) @ (1 - c).T


def naswot_from_codes(codes: torch.Tensor) -> float:
    """ln|det K_H| of :func:`naswot_kernel` (slogdet): -inf when two images share a code."""
    return float(torch.linalg.slogdet(naswot_kernel(codes)).logabsdet)


def naswot(model: nn.Module, images: torch.Tensor, *, seed: int = 0) -> float:
    """ln|det K_H| over the batch's binary codes at the sign activations.

    Mellor et al., "Neural Architecture Search without Training" (ICML 2021): each image i has a
    binary code c_i, the concatenation over the network's activation units of whether each unit
    is active; K_H[i, j] = N_A - Hamming(c_i, c_j) (N_A the code length) and the score is
    ln|det K_H| (``slogdet``; K_H is a sum of Gram matrices, so det >= 0). The paper's units are
    ReLUs (bit = x > 0); here they are the sign activations of the binary network (every
    :class:`nas.nn.binary.BinaryActivation`, the input binarisation of each binary conv), and the
    bit is x >= 0, the project's sign mapping 0 to +1: the code is exactly the +/-1 tensor the
    binary convs read. The full-precision ReLUs of a binary network are not counted; a network
    without sign activations (a full-precision baseline) is scored at its ``nn.ReLU`` inputs
    with bit = x > 0, as in the paper. One forward pass of a training-mode copy (BN on batch
    statistics, so an image's code depends on the batch, as in the paper's code). -inf when two
    images have the same code. Raises ValueError for a model with neither sign nor ReLU."""
    _check_batch(images)
    device = _device(model)
    net = _fresh_copy(model).train()
    n = images.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=device)
    units = [m for m in net.modules() if isinstance(m, BinaryActivation)]
    relu = not units
    if relu:
        units = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    if not units:
        raise ValueError(
            "the model has no sign activation (nas.nn.binary.BinaryActivation) or ReLU"
        )
    seen = 0

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        nonlocal kernel, seen
        x = inputs[0].detach().flatten(1)
        kernel = kernel + naswot_kernel(x > 0 if relu else x >= 0)
        seen += 1

    handles = [m.register_forward_pre_hook(hook) for m in units]
    try:
        with _seeded(seed, device), torch.no_grad():
            net(images.to(device))
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ValueError("the model's activation units were not called in its forward")
    return float(torch.linalg.slogdet(kernel.cpu()).logabsdet)


def _gaussian_init(net: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS's initialisation: conv and linear weights N(0, 1), their biases 0, BN gamma 1 and
    beta 0."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _WEIGHTED):
                w = torch.randn(m.weight.shape, generator=generator, dtype=m.weight.dtype)
                m.weight.copy_(w)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, _BatchNorm) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()


def zen_score(
    model: nn.Module,
    images: torch.Tensor,
    *,
    seed: int = 0,
    alpha: float = 0.01,
    gaussian_init: bool = True,
) -> float:
    """Zen-score: ln E||f(x) - f(x + alpha eps)||_F + sum over BN layers of ln sqrt(mean var).

    Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image Recognition" (ICCV 2021),
    eq. 11 with the BN rescaling: f is the pre-pooling feature map (the input of the model's
    last ``nn.AdaptiveAvgPool2d``, the head's global average pool), x and eps are standard
    Gaussian of the batch's shape (``images`` gives only the shape), the expectation is the
    mean over the batch of each image's Frobenius norm, and for BN layer i the term is
    ln sqrt(mean_j sigma_ij^2), sigma_ij^2 the batch variance (biased, the one BN normalises
    with) of channel j during the forward of x. A training-mode copy (BN on batch statistics,
    as Zen-NAS). With ``gaussian_init`` (the paper's setting) the copy is first re-initialised:
    conv and linear weights N(0, 1), biases 0, BN gamma 1, beta 0. Random draws come from a
    ``torch.Generator`` seeded with ``seed``, in this order: x, eps, then the weights (layer
    order of ``modules()``).

    Caveat for binary networks: Zen-score reads ||f(x) - f(x + alpha eps)|| / alpha as a finite
    difference, the expected gradient norm of a piecewise-linear network. Behind a sign
    activation f is piecewise constant: a perturbation of size alpha flips only the activations
    within about alpha of 0 and leaves the rest unchanged, so the difference counts such flips
    (each a jump of a full binary step) rather than a derivative, and the score measures the
    sensitivity of the codes to small noise. It is implemented as defined nonetheless. Zen-NAS's
    code uses the sum of |.| over the map instead of the Frobenius norm; the paper's norm is used
    here. Returns -inf when f(x + alpha eps) = f(x) exactly (no sign flipped: likely for tiny
    binary networks). Raises ValueError for a model without an ``nn.AdaptiveAvgPool2d``."""
    _check_batch(images)
    device = _device(model)
    net = _fresh_copy(model).train()
    generator = torch.Generator().manual_seed(seed)
    dtype = images.dtype if images.is_floating_point() else torch.float32
    x = torch.randn(images.shape, generator=generator, dtype=dtype).to(device)
    eps = torch.randn(images.shape, generator=generator, dtype=dtype).to(device)
    if gaussian_init:
        _gaussian_init(net, generator)

    pools = [m for m in net.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        raise ValueError("zen_score needs the model's global average pool (nn.AdaptiveAvgPool2d)")
    features: list[torch.Tensor] = []
    variances: list[torch.Tensor] = []
    recording = True

    def pool_hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        features.append(inputs[0].detach())

    def bn_hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if recording:
            t = inputs[0].detach()
            dims = [d for d in range(t.dim()) if d != 1]
            variances.append(t.double().var(dim=dims, unbiased=False).mean())

    handles = [pools[-1].register_forward_pre_hook(pool_hook)]
    handles += [
        m.register_forward_pre_hook(bn_hook) for m in net.modules() if isinstance(m, _BatchNorm)
    ]
    try:
        with _seeded(seed, device), torch.no_grad():
            net(x)
            recording = False
            net(x + alpha * eps)
    finally:
        for h in handles:
            h.remove()
    f_clean, f_noisy = features[0], features[-1]
    delta = (f_clean.double() - f_noisy.double()).flatten(1).norm(dim=1).mean()
    bn_term = math.fsum(0.5 * math.log(float(v)) for v in variances)
    return math.log(float(delta)) + bn_term if float(delta) > 0 else -math.inf


# --- all of them --------------------------------------------------------------------------------


def zero_cost_proxies(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int = 0,
    names: Sequence[str] = PROXIES,
) -> dict[str, float]:
    """The proxies ``names`` (default: all of :data:`PROXIES`) of ``model`` on one mini-batch.

    Each proxy runs on its own fresh deep copy of the model, so none disturbs another and the
    model is left untouched (grad_norm and snip, which read the same loss gradient of the same
    copy, share one forward and backward pass); the result is deterministic for a given
    ``seed`` (which seeds the forward passes and Zen-score's Gaussian draws). Values equal those
    of the functions of the same names: grad_norm and snip raw, synflow, naswot and zen_score as
    natural logs."""
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxies {unknown}; known: {', '.join(PROXIES)}")
    _check_batch(images, labels)
    out: dict[str, float] = {}
    gradients = None
    for name in names:
        if name in ("grad_norm", "snip"):
            if gradients is None:
                gradients = _loss_gradients(model, images, labels, seed)
            weights, grads = gradients
            out[name] = _grad_norm_of(grads) if name == "grad_norm" else _snip_of(weights, grads)
        elif name == "synflow":
            out[name] = synflow(model, images, seed=seed)
        elif name == "naswot":
            out[name] = naswot(model, images, seed=seed)
        else:
            out[name] = zen_score(model, images, seed=seed)
    return out
