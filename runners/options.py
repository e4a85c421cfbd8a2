"""How candidates are trained: :class:`TrainingOptions`, the one definition of the training
settings (the search's flags take their defaults from it and map to its fields by name; the
study's recipes are written in its terms). Torch-free, so the search can read it without loading
the training code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.core.spec import PADDINGS

# bf16 autocast (binary layers' sums are exact in it; the FP layers' bits depend on the CPU's
# instruction set), fp32 throughout, or auto: bf16 where the device computes it natively (a GPU,
# a CPU with AVX-512 BF16 or AMX), fp32 elsewhere, where emulated bf16 is up to 15x slower
PRECISIONS = ("auto", "bf16", "fp32")

# The final recipe (python -m nas.final, runners.study_gpu --part final), in TrainingOptions
# fields: full width, stem stride 1, every training image, augmentation, 30 epochs of the cosine
# schedule (a default: where accuracy levels off is not measured here)
FINAL_RECIPE: dict[str, Any] = {
    "epochs": 30,
    "width_mult": 1.0,
    "stem_stride": 1,
    "train_subset": None,
    "augment": True,
}


@dataclass(frozen=True)
class TrainingOptions:
    """How the top candidates are trained (the ``nas.search`` flags)."""

    top: int = 8  # the pool that successive halving trains (runners.promotion)
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    width_mult: float = 0.5
    stem_stride: int = 2
    train_subset: int | None = 20000  # a pool of 8 and the baseline in about 10 minutes here
    eval_subset: int | None = None
    augment: bool = False  # a few proxy epochs learn more without it (83.9% against 78.2%)
    precision: str = "auto"  # one of PRECISIONS
    # what binary convs pad with: +1 makes the trained network exact in packed inference
    # (nas.nn.packed); zero is what the benchmark's study trained with
    padding: str = "one"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 1
    ray_address: str | None = None
    dashboard_port: int = 8265
    seed: int = 0
    baseline: str = "bireal_resnet18"  # a reference model trained beside them ("" for none)

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, not {self.padding!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )
