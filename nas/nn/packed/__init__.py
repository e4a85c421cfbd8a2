"""A trained binary network for inference, packed: every binary conv's weights as bits and its
BatchNorm folded in, run by the XNOR-popcount kernels of :mod:`nas.nn.kernels` (docs/design.md
section 8). Above the model builder (:mod:`nas.nn.model`), which the kernels sit below: the training
layers use the kernels' forward conv.

==============  ==================================================================================
``network``     the packed network: :func:`pack_model`, :func:`save_packed`, :func:`load_packed`
``pack``        ``python3 -m nas.nn.packed.pack``: a trained network (zoo name or spec JSON,
                ``--checkpoint``) as a packed inference file (``-o FILE``)
``bench``       ``python3 -m nas.nn.packed.bench``: the packed conv against PyTorch on Bi-Real18's
                layers, then whole networks (``--json``, ``--threads``, ``--batch``, ``--seconds``)
==============  ==================================================================================
"""

from nas.nn.packed.network import FORMAT, PackedNetwork, load_packed, pack_model, save_packed

__all__ = ["FORMAT", "PackedNetwork", "load_packed", "pack_model", "save_packed"]
