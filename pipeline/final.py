"""``python -m nas.final RUN_DIR``: the run's best fully trained candidate (``--top K`` for more)
and its baseline, trained again from scratch with the final recipe, exported and packed.

The final recipe: the run's dataset, full width, stem stride 1, every training image,
augmentation, a cosine schedule over ``--epochs`` (``--width-mult``, ``--stem-stride`` and
``--train-subset`` give a cheaper one). Training goes through the same Ray Tune machinery as the
search's (a local Ray on loopback by default, ``--ray-address`` to join a cluster,
``--gpus-per-trial``), every model trained all its epochs. Before it starts, a throughput probe
(a few training steps of each model on this machine) gives the estimated time; each epoch's line
gives the time left. A killed run, started again with the same command, continues from the last
finished epoch of each model (Tune's experiment and its checkpoints in ``RUN_DIR/final/tune``);
the run directory's lock keeps the search, its report and this command apart.

Each model ends in ``RUN_DIR/final/<name>/`` (:mod:`nas.core.model_dir`): ``spec.json``,
``model.pt``, ``model.packed.pt`` (the packed inference model, checked against the float model) and
``metrics.json`` (top-1 and top-5, the learning curve, training images per second, the packed
model's latency per image at batch 1 and 16 against PyTorch fp32, bf16 and int8 on this CPU,
measured in the same run, and the file sizes against the spec's storage figure).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nas import cli
from nas.cli import duration
from nas.core.atomic import atomic_write_json
from nas.core.model_dir import METRICS, PACKED, SPEC, WEIGHTS
from nas.core.names import printable
from results.report import build_report
from results.run import (
    CANDIDATES,
    FINAL,
    RAY_HOME,
    TRAINED,
    TRAINING_BOUNDS,
    TUNE,
    RunFileError,
    RunRefused,
    is_run_dir,
    lock_run_dir,
    out_of_bounds,
    read_settings,
    spec_files,
)
from runners.backend import Candidate, get_backend, write_tables
from runners.options import FINAL_RECIPE, TrainingOptions

PROBE_STEPS = 3  # timed training steps per model in the throughput probe (after one untimed)
LATENCY_BATCHES = (1, 16)


def final_options(run: TrainingOptions, flags: dict[str, Any]) -> TrainingOptions:
    """The final recipe: the run's data, seed and baseline; full width, stem stride 1, every
    image, augmentation, +1 padding, unless the ``flags`` (flat option fields) say otherwise."""
    return run.replace(**{**FINAL_RECIPE, "padding": "one", **flags})


def chosen_models(run_dir: Path, options: TrainingOptions) -> list[tuple[str, Path, bool]]:
    """(arch id, spec file, is the baseline): the ``options.top`` fully trained candidates of
    best top-1, then the baseline."""
    trained_path = run_dir / TRAINED
    if not trained_path.is_file():
        raise cli.UsageError(
            f"{run_dir} has trained no candidate yet (no trained.csv): run the search with "
            "--train-top K first"
        )
    try:
        trained = pd.read_csv(trained_path, dtype={"arch_id": str})
        table = pd.read_csv(run_dir / CANDIDATES, dtype={"arch_id": str}, keep_default_na=False)
        trained["top1"] = pd.to_numeric(trained["top1"], errors="coerce")
    except (OSError, ValueError, KeyError) as e:
        raise cli.UsageError(f"{run_dir}: its tables cannot be read ({e})") from None
    specs = spec_files(run_dir)
    references = table.loc[table["reference"] != "", ["arch_id", "reference"]]
    baseline_ids = set(references.loc[references["reference"] == options.baseline, "arch_id"])
    done = trained[(trained["status"] == "trained") & ~trained["arch_id"].isin(baseline_ids)]
    best = done.sort_values("top1", ascending=False, kind="stable").head(options.top)
    if best.empty:
        raise cli.UsageError(
            f"{run_dir} has no fully trained candidate (trained.csv): nothing to train again"
        )
    chosen = [(aid, specs[aid], False) for aid in best["arch_id"] if aid in specs]
    chosen += [(aid, specs[aid], True) for aid in sorted(baseline_ids) if aid in specs]
    return chosen


def probe_throughput(spec_files: Sequence[Path], options: TrainingOptions) -> list[float]:
    """Training images per second of each model at the final geometry on this machine, with the
    threads a trial gets: an epoch of a few batches, timed the second time (the first warms up)."""
    import torch  # noqa: PLC0415 - torch: the probe's own

    from nas.core.spec import ArchSpec  # noqa: PLC0415
    from runners.datasets import load_dataset  # noqa: PLC0415
    from runners.train import proxy_spec, train  # noqa: PLC0415

    splits = load_dataset(options.data.dataset, options.data.data_dir)
    recipe = options.recipe
    config = dataclasses.replace(
        recipe,
        epochs=1,
        train_subset=PROBE_STEPS * recipe.batch_size,
        eval_subset=recipe.batch_size,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(options.resources.cpus_per_trial)))
    try:
        rates = []
        for path in spec_files:
            spec = proxy_spec(
                ArchSpec.load(path),
                splits,
                options.data.width_mult,
                stem_stride=options.data.stem_stride,
            ).replace(padding=options.data.padding)
            train(spec, splits, config)
            rates.append(train(spec, splits, config)[0].images_per_s)
    finally:
        torch.set_num_threads(threads)
    return rates


EVAL_SPEEDUP = 3.0  # test images per second over training images per second (forward only)


def estimate(
    rates: Sequence[float], images: int, test_images: int, options: TrainingOptions
) -> float:
    """Seconds to train every model: each epoch's ``images`` at its probed rate and the test
    split's evaluation at :data:`EVAL_SPEEDUP` times it, the models sharing the machine's CPUs
    as the trials do."""
    parallel = max(1, int((os.cpu_count() or 1) // max(options.resources.cpus_per_trial, 1)))
    each = [options.recipe.epochs * (images + test_images / EVAL_SPEEDUP) / r for r in rates]
    return max(sum(each) / min(parallel, len(each)), max(each))


def latency(spec, model, packed, seconds: float = 2.0) -> list[dict[str, Any]]:
    """Milliseconds per image of the packed model and of the PyTorch module in fp32, bf16
    autocast and int8, at batch 1 and 16, in the same interleaved rounds (nas.nn.packed.timing), one
    thread."""
    import torch  # noqa: PLC0415

    from nas.nn.packed.timing import network_ms_per_image  # noqa: PLC0415

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for batch in LATENCY_BATCHES:
            x = torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size)
            x = x.contiguous(memory_format=torch.channels_last)
            row = {"batch": batch, "threads": 1} | network_ms_per_image(model, packed, x, seconds)
            row["packed_speedup_vs_fp32"] = row["torch_fp32_ms"] / row["packed_ms"]
            rows.append(row)
    finally:
        torch.set_num_threads(threads)
    return rows


def pack_and_measure(folder: Path, curves: pd.DataFrame, images_per_s: float | None) -> dict:
    """Pack the exported model in ``folder``, check it against the float model, time it, and
    write its metrics.json."""
    import torch  # noqa: PLC0415

    from nas import build_model, spec_cost  # noqa: PLC0415
    from nas.core.spec import ArchSpec  # noqa: PLC0415
    from nas.nn.packed.network import pack_model, save_packed  # noqa: PLC0415
    from runners.train import cpu_info  # noqa: PLC0415

    spec = ArchSpec.load(folder / SPEC)
    model = build_model(spec).eval()
    model.load_state_dict(torch.load(folder / WEIGHTS, weights_only=True))
    model = model.to(memory_format=torch.channels_last)
    packed = pack_model(model)
    save_packed(packed, folder / PACKED)
    metrics = json.loads((folder / METRICS).read_text())
    storage = spec_cost(spec).total.storage_mbit
    metrics |= {
        "curve": curves.drop(columns=["arch_id"]).to_dict("records"),
        "train_images_per_s": images_per_s,
        "latency_ms_per_image": latency(spec, model, packed),
        "cpu": cpu_info()[0],
        "file_mbit": {
            "model.pt": (folder / WEIGHTS).stat().st_size * 8 / 1e6,
            "model.packed.pt": (folder / PACKED).stat().st_size * 8 / 1e6,
            "spec_storage": storage,
        },
    }
    atomic_write_json(folder / METRICS, metrics)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    d = TrainingOptions().resources
    parser = cli.Parser(
        prog="python -m nas.final",
        description="Train a search run's best candidate and its baseline again with the final "
        "recipe, then export and pack them (RUN_DIR/final/<name>/).",
    )
    parser.add_argument("run_dir", help="a search run directory that trained candidates")
    parser.add_argument(
        "--top", type=cli.int_range(1, 100, "number of models"), default=1,
        help="the best K fully trained candidates (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--epochs",
        type=cli.int_range(1, 10_000, "number of epochs"),
        default=FINAL_RECIPE["epochs"],
        help=f"epochs of the cosine schedule (default {FINAL_RECIPE['epochs']})",
    )
    parser.add_argument(
        "--width-mult",
        type=float,
        default=FINAL_RECIPE["width_mult"],
        help="every width times this",
    )
    parser.add_argument(
        "--stem-stride", type=int, choices=(1, 2), default=FINAL_RECIPE["stem_stride"]
    )
    parser.add_argument(
        "--train-subset", type=cli.int_range(0, 10**9, "number of images"), default=0,
        help="training images per epoch (default 0: every one)",
    )  # fmt: skip
    parser.add_argument("--cpus-per-trial", type=float, help="(default: the run's)")
    parser.add_argument("--gpus-per-trial", type=float, default=d.gpus_per_trial)
    parser.add_argument("--ray-address", help="join this Ray cluster instead of a local one")
    parser.add_argument("--dashboard-port", type=cli.port, default=d.dashboard_port)
    args = parser.parse_args(argv)
    for flag in ("width_mult", "cpus_per_trial", "gpus_per_trial"):  # the search's bounds
        value = getattr(args, flag)
        if value is not None and (why := out_of_bounds(TRAINING_BOUNDS[flag], value)):
            raise cli.UsageError(f"--{flag.replace('_', '-')} {why}")
    run_dir = Path(args.run_dir)
    if not is_run_dir(run_dir):
        raise cli.UsageError(f"{run_dir} is not a search run directory (no settings.json)")
    try:
        _lock = lock_run_dir(run_dir)
        stored = read_settings(run_dir)
        if not stored.get("training"):
            raise cli.UsageError(f"{run_dir} trained nothing: run the search with --train-top K")
        run_options = TrainingOptions.from_dict({"padding": "zero", **stored["training"]})
    except (RunRefused, RunFileError) as e:
        raise cli.UsageError(str(e)) from None
    except (TypeError, ValueError) as e:
        raise cli.UsageError(f"{run_dir / 'settings.json'}: training {e}") from None
    if run_options.data.padding != "one":
        print(
            "note: the search trained with zero padding; the final models pad with +1 "
            "(exact in packed inference)",
            file=sys.stderr,
        )
    flags = {
        "epochs": args.epochs,
        "width_mult": args.width_mult,
        "stem_stride": args.stem_stride,
        "train_subset": args.train_subset or None,
        "top": args.top,
        "cpus_per_trial": args.cpus_per_trial or run_options.resources.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "ray_address": args.ray_address,
        "dashboard_port": args.dashboard_port,
    }
    options = final_options(run_options, flags)
    chosen = chosen_models(run_dir, options)
    cli.set_resume_hint(f"continue with python -m nas.final {run_dir} and the same flags")
    return train_final(run_dir, chosen, options)


def train_final(
    run_dir: Path, chosen: list[tuple[str, Path, bool]], options: TrainingOptions
) -> int:
    from runners.datasets import load_dataset  # noqa: PLC0415 - torch, once the input is checked

    data, epochs = options.data, options.recipe.epochs
    splits = load_dataset(data.dataset, data.data_dir)
    images = min(options.recipe.train_subset or len(splits.train), len(splits.train))
    rates = probe_throughput([path for _, path, _ in chosen], options)
    names = [path.stem for _, path, _ in chosen]
    print(
        f"final training of {', '.join(names)} on {data.dataset}: {epochs} "
        f"epoch{'s' * (epochs != 1)} of "
        f"{images:,} images, width x{data.width_mult}, stem stride {data.stem_stride}, "
        f"augmentation; probed {', '.join(f'{r:.0f}' for r in rates)} images/s: about "
        f"{duration(estimate(rates, images, len(splits.test), options))} on this machine",
        file=sys.stderr,
        flush=True,
    )
    final = run_dir / FINAL
    baseline = next((aid for aid, _, is_base in chosen if is_base), "")
    backend = get_backend()
    with backend.session(run_dir / RAY_HOME, options):
        trained, curves = backend.train(
            final / TUNE,
            [
                Candidate(aid, path.read_text(), path.stem, final / path.stem)
                for aid, path, _ in chosen
            ],
            options,
            stop_early=False,
            baseline=baseline,
        )
    trained = write_tables(final, trained, curves)
    failed = 0
    for aid, path, _ in chosen:
        row = trained.set_index("arch_id").loc[aid]
        folder = final / path.stem
        if row["status"] != "trained" or not (folder / WEIGHTS).is_file():
            print(f"  {path.stem}: {row['status']} {row.get('error') or ''}".rstrip())
            failed += 1
            continue
        metrics = pack_and_measure(
            folder, curves[curves["arch_id"] == aid], row.get("images_per_s")
        )
        one = metrics["latency_ms_per_image"][0]
        print(
            f"  {printable(path.stem)}: top-1 {100 * metrics['top1']:.2f}% after "
            f"{metrics['epoch']} epoch{'s' * (metrics['epoch'] != 1)}; packed "
            f"{one['packed_ms']:.2f} ms per image at batch 1 "
            f"({one['packed_speedup_vs_fp32']:.1f}x PyTorch fp32); {folder}"
        )
    report = build_report(run_dir)
    print(f"report: {report} and {report.with_suffix('.html')} (section 'Final training')")
    return 1 if failed == len(chosen) else 0
