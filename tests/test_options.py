"""The training options: nested in recipe, data and resources, flat on disk. The flat form is
what settings.json, the study's recipes and a Tune trial's configuration hold, so a run started
before the options were nested resumes (and restores its Tune experiment) as it was."""

import dataclasses

import pytest

from runners.options import DataOptions, Resources, TrainConfig, TrainingOptions

# settings.json's "training" object as the search has always written it
FLAT_KEYS = {
    "top", "dataset", "data_dir", "epochs", "batch_size", "lr", "width_mult", "stem_stride",
    "train_subset", "eval_subset", "augment", "precision", "padding", "cpus_per_trial",
    "gpus_per_trial", "max_failures", "ray_address", "dashboard_port", "seed", "baseline",
}  # fmt: skip


def test_the_flat_form_has_the_fields_settings_json_always_had():
    assert set(TrainingOptions().to_dict()) == FLAT_KEYS


def test_the_flat_form_round_trips_and_a_changed_recipe_field_is_kept():
    options = TrainingOptions(
        top=3,
        baseline="",
        recipe=TrainConfig(epochs=7, optimizer="sgd", label_smoothing=0.1),
        data=DataOptions(dataset="mnist", width_mult=1.0, padding="zero"),
        resources=Resources(cpus_per_trial=2.0, dashboard_port=9000),
    )
    flat = options.to_dict()
    assert flat["optimizer"] == "sgd" and flat["label_smoothing"] == 0.1
    assert "weight_decay" not in flat  # left at its default: not written
    assert TrainingOptions.from_dict(flat) == options


def test_replace_changes_fields_by_their_flat_names():
    options = TrainingOptions().replace(epochs=30, width_mult=1.0, cpus_per_trial=2.0)
    assert options.recipe.epochs == 30 and options.data.width_mult == 1.0
    assert options.resources.cpus_per_trial == 2.0
    assert options.recipe.batch_size == TrainConfig().batch_size  # the rest as they were


def test_one_set_of_defaults():
    """The search's defaults are the parts' own: nothing maps them a second time."""
    flat = TrainingOptions().to_dict()
    for part in (TrainConfig(), DataOptions(), Resources()):
        for field, value in dataclasses.asdict(part).items():
            if field in flat:
                assert flat[field] == value, field


@pytest.mark.parametrize(
    ("flat", "error", "match"),
    [
        (
            {"epochs": 3, "learning_rate": 0.1},
            TypeError,
            "unexpected training option 'learning_rate'",
        ),
        ({"padding": "reflect"}, ValueError, "padding must be one of"),
        ({"precision": "fp16"}, ValueError, "precision must be one of"),
    ],
)
def test_a_bad_flat_form_is_refused(flat, error, match):
    with pytest.raises(error, match=match):
        TrainingOptions.from_dict(flat)
