"""How candidates are trained, in three parts with one set of defaults: the recipe
(:class:`TrainConfig`: what :func:`runners.train.train` runs), the data and the proxy network
(:class:`DataOptions`), and the compute (:class:`Resources`); :class:`TrainingOptions` holds them
with the pool size and the baseline. The defaults are the search's proxy recipe; the search's
flags take their defaults from here, the study's recipes and the final recipe are written as
changes to them.

On disk (``settings.json``'s ``training``, the study's recipes, a Tune trial's configuration)
the options are one flat object of field names (:meth:`TrainingOptions.to_dict`,
:meth:`TrainingOptions.from_dict`). Torch-free, so the search can read them without loading the
training code."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nas.core.spec import PADDINGS

# bf16 autocast (binary layers' sums are exact in it; the FP layers' bits depend on the CPU's
# instruction set), fp32 throughout, or auto: bf16 where the device computes it natively (a GPU,
# a CPU with AVX-512 BF16 or AMX), fp32 elsewhere, where emulated bf16 is up to 15x slower
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    """The recipe: optimiser, schedule, arithmetic and the images per epoch."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adam"  # or "sgd"
    schedule: str = "cosine"  # or "linear"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    precision: str = "auto"  # one of PRECISIONS
    seed: int = 0
    train_subset: int | None = 20000  # a pool of 8 and the baseline in about 10 minutes here
    eval_subset: int | None = None
    # random crops and flips where the dataset allows them: off, as a few proxy epochs learn
    # more without them (docs/training.md)
    augment: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )


@dataclass(frozen=True)
class DataOptions:
    """The data, and the proxy of a candidate that trains on it."""

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    width_mult: float = 0.5  # every width times this
    stem_stride: int = 2  # the small-image stem's stride
    # what binary convs pad with: +1 makes the trained network exact in packed inference
    # (nas.nn.packed); zero is what the benchmark's study trained with
    padding: str = "one"

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, not {self.padding!r}")


@dataclass(frozen=True)
class Resources:
    """The compute a trial asks for, and where it runs."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 1  # retries of a crashed trial, from its last checkpoint
    ray_address: str | None = None  # a Ray cluster to join instead of a local one
    dashboard_port: int = 8265


# The recipe fields written to disk whatever their value; the others (optimizer, schedule, weight
# decay, label smoothing, device) only when changed, so that the flat form of the search's
# options is what it has always been.
_RECIPE_ALWAYS = (
    "epochs", "batch_size", "lr", "train_subset", "eval_subset", "augment", "precision", "seed",
)  # fmt: skip


@dataclass(frozen=True)
class TrainingOptions:
    """How the top candidates are trained (the ``nas.search`` flags)."""

    top: int = 8  # the pool that successive halving trains (runners.promotion)
    baseline: str = "bireal_resnet18"  # a reference model trained beside them ("" for none)
    recipe: TrainConfig = field(default_factory=TrainConfig)
    data: DataOptions = field(default_factory=DataOptions)
    resources: Resources = field(default_factory=Resources)

    def to_dict(self) -> dict[str, Any]:
        """The flat form: every field by name."""
        recipe = dataclasses.asdict(self.recipe)
        default = dataclasses.asdict(TrainConfig())
        return {
            "top": self.top,
            **dataclasses.asdict(self.data),
            **{k: v for k, v in recipe.items() if k in _RECIPE_ALWAYS or v != default[k]},
            **dataclasses.asdict(self.resources),
            "baseline": self.baseline,
        }

    @classmethod
    def from_dict(cls, flat: dict[str, Any]) -> TrainingOptions:
        """The options of a flat form (:meth:`to_dict`; fields left out keep their defaults). An
        unknown field is a TypeError, a bad value a ValueError, as a dataclass's constructor."""
        parts: dict[str, dict[str, Any]] = {"recipe": {}, "data": {}, "resources": {}, "": {}}
        for name, value in flat.items():
            if name not in _PART_OF:
                raise TypeError(f"unexpected training option {name!r}")
            parts[_PART_OF[name]][name] = value
        return cls(
            **parts[""],
            recipe=TrainConfig(**parts["recipe"]),
            data=DataOptions(**parts["data"]),
            resources=Resources(**parts["resources"]),
        )

    def replace(self, **flat: Any) -> TrainingOptions:
        """These options with the flat fields ``flat`` changed."""
        return TrainingOptions.from_dict({**self.to_dict(), **flat})


# Each field of the flat form -> its part ("": the options' own)
_PART_OF: dict[str, str] = {
    "top": "",
    "baseline": "",
    **{f.name: "recipe" for f in dataclasses.fields(TrainConfig)},
    **{f.name: "data" for f in dataclasses.fields(DataOptions)},
    **{f.name: "resources" for f in dataclasses.fields(Resources)},
}

FLAT_FIELDS = tuple(_PART_OF)  # the names the flat form may hold


# The final recipe (python -m nas.final, runners.study_gpu --part final), as flat changes to the
# search's options: full width, stem stride 1, every training image, augmentation, 30 epochs of
# the cosine schedule (a default: where accuracy levels off is not measured here)
FINAL_RECIPE: dict[str, Any] = {
    "epochs": 30,
    "width_mult": 1.0,
    "stem_stride": 1,
    "train_subset": None,
    "augment": True,
}
