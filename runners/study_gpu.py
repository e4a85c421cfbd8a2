"""The study's architectures trained on a GPU, at full width.

``python -m runners.study_gpu --data-dir DIR --out gpu.csv`` trains, without Ray (one process per
architecture at a time, several processes sharing the GPU), one of two parts:

- ``--part long`` (the default): the architectures of the study's ``long`` part (those spanning
  the key) at full width (``width_mult`` 1) with the long recipe's epochs and images and with the
  short one's; the CPU study's rows of the same architectures sit beside them in
  docs/validation.md;
- ``--part final``: the seed-0 main-job winner (``winner-s0`` of the transfer part), Bi-Real
  ResNet18 and IGP-ResNet37 with the final recipe (``runners.options.FINAL_RECIPE``: full width,
  stem stride 1, every image, augmentation, 30 epochs; ``--epochs`` for more), +1 padding as the
  search trains.

It writes one row per architecture and recipe: final and best test top-1, the curve, images per
second. Rows are written as they finish, so a run cut short keeps what it trained; ``--seconds``
stops handing out work in time.

Nothing on the CPU needs this module: it is the prepared script for a lent GPU machine, where
Ray and Optuna are not installed (it imports neither).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nas.core.spec import ArchSpec
from runners.datasets import load_dataset
from runners.options import FINAL_RECIPE, TrainConfig
from runners.train import proxy_spec, train

STUDY_DIR = Path(__file__).parent.parent / "results" / "study"
FINAL_MODELS = ("winner-s0", "bireal_resnet18", "igp_resnet37")  # --part final


def _work(job: dict[str, Any], data_dir: str | None, precision: str, device: str) -> dict[str, Any]:
    """Train one (architecture, recipe) at full width on the GPU; its row."""
    splits = load_dataset("fashion_mnist", data_dir)
    recipe = job["recipe_options"]
    spec = proxy_spec(
        ArchSpec.from_json(job["spec"]), splits, 1.0, stem_stride=recipe["stem_stride"]
    ).replace(padding=recipe.get("padding", "zero"))
    config = TrainConfig(
        epochs=recipe["epochs"],
        train_subset=recipe["train_subset"],
        eval_subset=recipe.get("eval_subset"),
        batch_size=128,
        precision=precision,
        seed=0,
        augment=recipe.get("augment", False),
        device=device,
    )
    start = time.perf_counter()
    history = train(spec, splits, config)
    return {
        "arch_id": job["arch_id"],
        "name": job["name"],
        "recipe": job["recipe"],
        "width_mult": 1.0,
        "stem_stride": recipe["stem_stride"],
        "precision": precision,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else device,
        "epochs": len(history),
        "top1": history[-1].top1,
        "top1_best": max(h.top1 for h in history),
        "train_loss": history[-1].train_loss,
        "images_per_s": sum(h.images_per_s for h in history) / len(history),
        "wall_seconds": time.perf_counter() - start,
        "curve_top1": json.dumps([round(h.top1, 6) for h in history]),
    }


def _worker(queue, results, data_dir: str | None, precision: str, device: str) -> None:
    while True:
        job = queue.get()
        if job is None:
            return
        try:
            results.put(_work(job, data_dir, precision, device))
        except Exception as e:  # a failed architecture is reported, the others go on
            results.put({"arch_id": job["arch_id"], "recipe": job["recipe"], "error": repr(e)})


def jobs(study: Path, part: str = "long", epochs: int | None = None) -> list[dict[str, Any]]:
    """``long``: the long part's architectures, each with the long recipe first, then the short
    one; ``final``: :data:`FINAL_MODELS` with the final recipe (``epochs`` of it)."""
    plan = json.loads((study / "study.json").read_text())
    archs = pd.read_csv(study / "archs.csv", dtype={"arch_id": str}).set_index("arch_id")
    if part == "final":
        recipe = {**FINAL_RECIPE, "padding": "one", "epochs": epochs or FINAL_RECIPE["epochs"]}
        ids = dict(zip(archs["name"], archs.index, strict=True))
        missing = [n for n in FINAL_MODELS if n not in ids]
        if missing:
            raise SystemExit(
                f"{study} holds no {', '.join(missing)}: add the seed-0 main job's winner with "
                "python -m runners.transfer RUN_DIR"
            )
        return [
            {"arch_id": ids[n], "name": n, "spec": archs.loc[ids[n], "spec"], "recipe": "final",
             "recipe_options": recipe}
            for n in FINAL_MODELS
        ]  # fmt: skip
    recipes = plan["settings"]["recipes"]
    chosen = [j["arch_id"] for j in plan["jobs"] if j["part"] == "long"]
    return [
        {
            "arch_id": a,
            "name": archs.loc[a, "name"],
            "spec": archs.loc[a, "spec"],
            "recipe": recipe,
            "recipe_options": recipes[recipe],
        }
        for recipe in ("long", "short")
        for a in chosen
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.study_gpu", description=__doc__)
    parser.add_argument("--study", default=str(STUDY_DIR))
    parser.add_argument("--data-dir")
    parser.add_argument("--out", required=True, help="the CSV to write (rows as they finish)")
    parser.add_argument("--workers", type=int, default=6, help="processes sharing the GPU")
    parser.add_argument("--seconds", type=float, default=420, help="hand out no work after this")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--device", default="cuda", help="cuda (cpu: to try it here)")
    parser.add_argument("--part", default="long", choices=("long", "final"))
    parser.add_argument("--epochs", type=int, help="epochs of the final recipe (default 30)")
    args = parser.parse_args(argv)
    todo = jobs(Path(args.study), args.part, args.epochs)
    context = mp.get_context("spawn")
    queue, results = context.Queue(), context.Queue()
    workers = [
        context.Process(
            target=_worker, args=(queue, results, args.data_dir, args.precision, args.device)
        )
        for _ in range(args.workers)
    ]
    for w in workers:
        w.start()
    start, handed, rows = time.time(), 0, []
    for job in todo[: args.workers]:
        queue.put(job)
        handed += 1
    while len(rows) < handed:
        row = results.get()
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "curve_top1"}), flush=True)
        tmp = f"{args.out}.partial"
        pd.DataFrame(rows).to_csv(tmp, index=False)
        os.replace(tmp, args.out)
        if handed < len(todo) and time.time() - start < args.seconds:
            queue.put(todo[handed])
            handed += 1
    for _ in workers:
        queue.put(None)
    for w in workers:
        w.join()
    print(f"{len(rows)} of {len(todo)} trained in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
