"""Fast binary convolution for inference: bit packing and XNOR-popcount kernels.

Values are +/-1, stored one bit each (1 for -1), channels packed into 64-bit words, NHWC::

    x = pack_activations(torch.randn(1, 64, 56, 56), pad=1)     # +1 padding: zero bits
    w = pack_weights(torch.randn(128, 64, 3, 3))
    y = binary_conv2d(x, w, stride=1)                            # float NHWC, exact integers

``binary_conv2d`` computes ``scale * dot + shift (+ residual)`` per output channel, where dot is
the exact +/-1 convolution of the signs (sign(0) = +1), and returns floats (NHWC) and/or
(``output="packed"`` or ``"both"``) the signs of those values already packed for the next binary
conv. It runs the compiled kernel (AVX-512 VPOPCNTDQ, AVX2 or portable C, chosen at run time;
:func:`available_paths`) and falls back to :func:`reference_conv2d`, plain PyTorch, which is also
the oracle of the tests. docs/design.md section 8. The packed inference model is the package
:mod:`nas.nn.packed` (above the model builder, which uses these kernels); the GPU path (Triton,
int8 tensor cores) is :mod:`nas.nn.kernels.triton_conv`.

This file only re-exports. The modules:

==================  ==============================================================================
``_layout``         :class:`Packed`, :class:`PackedWeights`, packing and unpacking in PyTorch,
                    :func:`reference_conv2d` (the fallback and the tests' oracle)
``_dispatch``       the compiled kernels' API (:func:`pack_activations`, :func:`binary_conv2d`,
                    :func:`max_pool2d`, :func:`fp_stem`, :func:`set_threads`): path choice and
                    the PyTorch fallback
``_native``         building ``_bconv.c`` with gcc and loading it through ctypes
``_bconv.c``        the C kernels (OpenMP; AVX-512, AVX2 and portable paths)
``triton_conv``     the GPU path (Triton); its kernel in ``_triton_kernel`` (needs ``triton``)
==================  ==============================================================================

``python3 -m nas.nn.kernels.build`` compiles the C kernels into ``_bconv.so`` (``./setup.sh``
runs it; without a compiler a warning, and the PyTorch reference path is used). The GPU kernel
is checked against the reference and timed against cuDNN by ``python3 -m speed.gpu``.
"""

from nas.nn.kernels._dispatch import (
    binary_conv2d,
    fp_stem,
    max_pool2d,
    pack_activations,
    set_threads,
)
from nas.nn.kernels._layout import (
    Packed,
    PackedWeights,
    pack_weights,
    reference_conv2d,
    unpack,
    unpack_weights,
)
from nas.nn.kernels._native import available_paths, keep_freed_memory, library

__all__ = [
    "Packed",
    "PackedWeights",
    "available_paths",
    "binary_conv2d",
    "fp_stem",
    "keep_freed_memory",
    "library",
    "max_pool2d",
    "pack_activations",
    "pack_weights",
    "reference_conv2d",
    "set_threads",
    "unpack",
    "unpack_weights",
]
