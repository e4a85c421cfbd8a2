"""What a user takes away from a search: each trained network in ``RUN/models/<name>/`` (its spec
as trained, its weights, its figures), packed straight from the run directory with no retraining
and no other flag, and the packed network's classes equal to the float network's over the whole
Fashion-MNIST test set."""

import json
import subprocess
import sys

import pytest
import torch

from nas import ArchSpec, build_model
from nas.model_dir import METRICS, MODELS, PACKED, SPEC, WEIGHTS, best_model_dir
from nas.packed import load_packed
from runners.datasets import augment, load_dataset

pytestmark = pytest.mark.slow


def test_every_trained_network_is_exported_as_trained(trained_run):
    import pandas as pd

    trained = pd.read_csv(trained_run / "trained.csv", dtype={"arch_id": str})
    folders = sorted((trained_run / MODELS).iterdir())
    assert len(folders) == len(trained) == 3  # two candidates and the baseline
    settings = json.loads((trained_run / "settings.json").read_text())["training"]
    for folder in folders:
        metrics = json.loads((folder / METRICS).read_text())
        row = trained.set_index("arch_id").loc[metrics["arch_id"]]
        assert (metrics["status"], metrics["epoch"], metrics["top1"]) == (
            row["status"], row["epoch"], row["top1"],
        )  # fmt: skip
        spec = ArchSpec.load(folder / SPEC)
        assert (spec.input_size, spec.in_channels, spec.classes) == (28, 1, 10)  # Fashion-MNIST
        assert spec.padding == "one" and settings["padding"] == "one"
        model = build_model(spec)
        model.load_state_dict(torch.load(folder / WEIGHTS, weights_only=True))
    assert sum(json.loads((f / METRICS).read_text())["baseline"] for f in folders) == 1


def test_the_run_directory_packs_its_best_candidate_whose_classes_are_the_float_models(
    trained_run, tmp_path
):
    out = subprocess.run(
        [sys.executable, "-m", "nas.packed.pack", str(trained_run)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    best = best_model_dir(trained_run)
    assert best is not None and (best / PACKED).is_file() and str(best / PACKED) in out.stdout
    assert not list(tmp_path.iterdir())  # nothing written where the command ran
    spec = ArchSpec.load(best / SPEC)
    model = build_model(spec).eval()
    model.load_state_dict(torch.load(best / WEIGHTS, weights_only=True))
    packed = load_packed(best / PACKED)
    splits = load_dataset("fashion_mnist")
    images, _ = splits.test.tensors
    same = 0
    with torch.no_grad():
        for start in range(0, len(images), 500):
            x = augment(images[start : start + 500], splits, train=False)
            same += int((packed(x).argmax(1) == model(x).argmax(1)).sum())
    assert same == len(images) == 10000
