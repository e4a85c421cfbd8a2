"""The torch side: binary layers (:mod:`nas.nn.binary`), the PyTorch model of a spec, tracing a
module's gradient paths, module cost, the zero-cost proxies, the bit-packed kernels
(:mod:`nas.nn.kernels`) and packed inference (:mod:`nas.nn.packed`). Built on :mod:`nas.core`."""
