"""A trained binary network for inference, packed: every binary conv's weights as bits and its
BatchNorm folded in, run by the XNOR-popcount kernels of :mod:`nas.nn.kernels` (docs/design.md
section 8). Above the model builder (:mod:`nas.nn.model`), which the kernels sit below: the training
layers use the kernels' forward conv.

==============  ==================================================================================
``network``     the packed network: :func:`pack_model`, :func:`save_packed`, :func:`load_packed`
``int8``        the int8 anchor: a network's binary convs through PyTorch's quantized conv
``timing``      milliseconds per image of a packed network against its PyTorch module
==============  ==================================================================================

Its commands sit with the others: ``python3 -m nas.pack`` packs a trained network (a run
directory, a zoo name or a spec JSON with ``--checkpoint``), ``python3 -m speed.packed`` times
the packed conv and whole networks against PyTorch.
"""

from nas.nn.packed.network import FORMAT, PackedNetwork, load_packed, pack_model, save_packed

__all__ = ["FORMAT", "PackedNetwork", "load_packed", "pack_model", "save_packed"]
