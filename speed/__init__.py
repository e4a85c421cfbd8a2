"""The speed benches, outside the library: each prints figures and same-run ratios, never a
pass or a fail. ``python -m nas.benchmarks MODE`` (:mod:`speed.suite`: scoring, training, spec
size, Ray, the search and its samplers, reproducibility, the evaluator's start),
``python -m speed.packed`` (the packed binary conv and whole packed networks against PyTorch on
the CPU) and ``python -m speed.gpu`` (the Triton kernel against cuDNN on a GPU)."""
