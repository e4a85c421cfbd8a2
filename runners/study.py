"""The benchmark study: does the gradient-path key predict which binary CNNs train best?

``python -m runners.study`` samples architectures of the search spaces in the budget's FLOPs band
(224 px, 1000 classes, as the search defines them), trains every one through the Ray Tune runner
(:class:`runners.tune.RayTune`) with one fixed recipe, and appends each result atomically
to a benchmark table that :func:`results.trained_benchmark.load_benchmark` reads; ``python -m
results.validation`` turns it into docs/validation.md.

**The sample** is drawn at random with a fixed seed, never from the top of a ranking (the ranking
is what is tested): a pool of random structures per space, each solved to the budget *without*
the space's width floor (the study asks whether the floor is justified), and from the pool's
distinct in-band architectures a draw stratified on the default key, ``log10`` of the mean of
``stage_mean_n``'s three values: the key's range is cut into equal bins, each bin gives the same
number of architectures, picked at random inside it. The paper's binary zoo models join at their
own FLOPs as labelled reference points.

**The jobs** come in three parts: ``short``, every architecture once with the short recipe
(seed 0); ``seeds``, seeds 1 and 2 of the short recipe for architectures spanning the key and
for the zoo models of the paper's claims; ``long``, a recipe of at least 4x the cost for
architectures spanning the key (the proxy's fidelity); ``prospective`` (runners.prospective);
``padding``, the seeded sample and Bi-Real ResNet18 with seeds 0 and 1 of the short recipe with
+1 padding (``short_one``), paired with their zero-padded runs; ``transfer``
(runners.transfer), the main job's winners and fixed models beside them with ``short_one`` and
``long10``.

**Files** of a study directory (default ``results/study``, committed): ``study.json`` (the
settings and the job list, written last when a study is planned), ``archs.csv`` (one row per
architecture: its spec and every training-free metric of its graph), ``runs.csv`` (one row per
finished job: accuracies and curves, and for the short recipe the zero-cost proxies of the network
at the initialisation it trained from). ``.work/`` holds the Tune experiments and Ray's files
(not committed). A killed study resumes where it stopped: finished jobs are never trained again,
and a batch cut short is restored by Tune with its finished trials kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch

from nas import cli
from nas.core.analysis import analyze_ops
from nas.core.atomic import atomic_write_json, atomic_write_text
from nas.core.budget import parse_budget
from nas.core.candidates import score
from nas.core.graph import lower, ops_arch_id
from nas.core.registry import UnknownModelError, list_models, model_spec
from nas.core.scorers import PAPER_SCORER, get_scorer, list_scorers, measure
from nas.core.spec import ArchSpec
from nas.nn.model import build_model
from nas.nn.proxies import zero_cost_proxies
from results.run import RAY_HOME, RunRefused, lock_run_dir
from results.trained_benchmark import STUDY_DIR
from runners.backend import Candidate
from runners.datasets import DataError, DataNotFound, augment, load_dataset
from runners.options import FLAT_FIELDS, Resources, TrainingOptions
from runners.tune import EXTRA_PREFIX, RayTune, train_candidate
from search_spaces import get_space

STUDY = "study.json"
ARCHS = "archs.csv"
RUNS = "runs.csv"
WORK = ".work"
PARTS = ("short", "seeds", "long", "prospective", "padding", "transfer")
# The paper's claims (its Table 1 and Figure 2), trained with 3 seeds.
CLAIM_MODELS = (
    "bireal_resnet18",
    "binary_resnet18",
    "ebireal_resnet18",
    "igp_resnet21",
    "igp_resnet37",
    "igp_resnet69",
)
_PROXY = {"width_mult": 0.5, "stem_stride": 2, "precision": "bf16"}
RECIPES: dict[str, dict[str, Any]] = {
    # the main job's proxy settings on a 20k-image subset: ~1-3 min per network on one core here;
    # bf16 on every machine (the benchmark's arithmetic does not follow the CPU), zero padding
    "short": {"epochs": 2, "train_subset": 20000, **_PROXY, "padding": "zero"},
    # 2x the epochs on 3x the images: 6x the short recipe's cost per network
    "long": {"epochs": 4, "train_subset": None, **_PROXY, "padding": "zero"},
    # the short recipe with +1 padding, as the search trains (its candidates are packable)
    "short_one": {"epochs": 2, "train_subset": 20000, **_PROXY, "padding": "one"},
    # 5x the epochs of short_one on its images: the transfer part's long training
    "long10": {"epochs": 10, "train_subset": 20000, **_PROXY, "padding": "one"},
}
PROXY_BATCH = 64  # images of the mini-batch on which the zero-cost proxies are computed


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What defines a study: a study directory keeps the settings it was planned with."""

    budget: float = 0.16e9
    tolerance: float = 0.05
    input_size: int = 224
    classes: int = 1000
    # the committed study's spaces, in the order its sample was drawn (the order seeds each
    # space's draw: a new study in this order plans the same architectures)
    spaces: tuple[str, ...] = ("resnet", "densenet")
    sample: int = 64  # architectures drawn from the spaces (split evenly between them)
    pool: int = 600  # random structures tried per space
    seed: int = 0
    seeded: int = 8  # architectures spanning the key trained with seeds 1 and 2 as well
    long: int = 12  # architectures spanning the key trained with the long recipe
    references: tuple[str, ...] | None = None  # zoo models (default: every binary one)
    dataset: str = "fashion_mnist"
    recipes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=lambda: RECIPES)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {**data, "spaces": list(self.spaces), "references": list(self.reference_models())}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        return cls(
            **{**data, "spaces": tuple(data["spaces"]), "references": tuple(data["references"])}
        )

    def reference_models(self) -> tuple[str, ...]:
        """The zoo models trained beside the sample: every binary model of the zoo unless
        ``references`` names some."""
        if self.references is not None:
            return self.references

        return tuple(m for m in list_models() if not m.endswith("_fp"))


# -- the sample ---------------------------------------------------------------------------------


def strata_value(key: Sequence[float | None]) -> float:
    """The scalar the sample is stratified on: log10 of the mean of the default key's values
    (``stage_mean_n``, in FLOP-equivalents); infinite where the key has a missing value."""
    if any(v is None or not math.isfinite(v) for v in key):
        return math.inf
    return math.log10(1 + sum(key) / len(key))


def stratified_pick(values: Sequence[float], n: int, rng: random.Random) -> list[int]:
    """``n`` indices of ``values`` spread evenly over their range: the range [min, max] cut into
    ``n`` equal bins, one index drawn at random from each bin; a bin left empty gives its draw to
    the nearest value not yet drawn. Every index appears at most once."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    if n >= len(order):
        return order
    lo, hi = values[order[0]], values[order[-1]]
    width = (hi - lo) / n or 1.0
    bins: list[list[int]] = [[] for _ in range(n)]
    for i in order:
        bins[min(n - 1, int((values[i] - lo) / width))].append(i)
    taken: set[int] = set()
    picked = []
    for b, inside in enumerate(bins):
        free = [i for i in inside if i not in taken]
        if free:
            choice = rng.choice(free)
        else:
            centre = lo + (b + 0.5) * width
            rest = (i for i in order if i not in taken)
            choice = min(rest, key=lambda i: abs(values[i] - centre))
        taken.add(choice)
        picked.append(choice)
    return picked


def spanning(values: Sequence[float], n: int) -> list[int]:
    """``n`` indices at evenly spaced ranks of ``values`` (smallest and largest included)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    if n >= len(order):
        return order
    if n == 1:
        return [order[len(order) // 2]]
    return [order[round(k * (len(order) - 1) / (n - 1))] for k in range(n)]


def arch_metrics(spec) -> dict[str, Any]:
    """Every training-free metric of a spec as the search defines it (224 px, 1000 classes): its
    costs, depth, the gradient-path components N and L at network, stage (mean) and block (mean)
    scope, and every registered scorer's key."""
    ops = lower(spec)
    row = score(ops)
    row.pop("key")
    for o in ("1st", "2nd", "3rd"):  # score() gives the stage means as N_1st..: name the scope
        row[f"stage_N_{o}"] = row.pop(f"N_{o}")
        row[f"stage_L_{o}"] = row.pop(f"L_{o}")
    report = analyze_ops(ops)
    for k, o in enumerate(("1st", "2nd", "3rd")):
        row[f"network_N_{o}"] = report.network.N[k]
        row[f"network_L_{o}"] = report.network.L[k]
        for field in ("N", "L"):
            values = [getattr(s, field)[k] for s in report.blocks.values()]
            row[f"block_{field}_{o}"] = (
                None if not values or None in values else sum(values) / len(values)
            )
    for name in list_scorers():
        for k, v in enumerate(get_scorer(name)(measure(ops, report))):
            row[f"key_{name}_{k}"] = v if math.isfinite(v) else None
    return row


def proxy_metrics(spec, splits, seed: int) -> dict[str, float]:
    """The zero-cost proxies of ``spec`` (the network that is trained) at its initialisation
    with ``seed`` (the one training starts from), on the first :data:`PROXY_BATCH` training
    images."""
    torch.manual_seed(seed)
    model = build_model(spec)
    images, labels = next(iter(torch.utils.data.DataLoader(splits.train, batch_size=PROXY_BATCH)))
    return zero_cost_proxies(model, augment(images, splits, train=False), labels, seed=seed)


def train_with_proxies(config: dict[str, Any]) -> None:
    """The study's trainable for the short recipe: the zero-cost proxies of the network at the
    initialisation it trains from, reported with every epoch, then the training of
    :func:`runners.tune.train_candidate`. The proxies run in the trial, beside the other trials,
    and a restored trial computes them again (they are deterministic)."""
    train_candidate(
        config, probe=lambda spec, splits, options: proxy_metrics(spec, splits, options.recipe.seed)
    )


def plan(settings: StudySettings) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The study's architectures (one row each, with every metric) and its jobs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = settings
    rows: list[dict[str, Any]] = []
    per_space = [
        s.sample // len(s.spaces) + (k < s.sample % len(s.spaces)) for k in range(len(s.spaces))
    ]
    for k, (name, n) in enumerate(zip(s.spaces, per_space, strict=True)):
        space = get_space(name)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=s.seed * 1000 + k))
        found: dict[str, dict[str, Any]] = {}
        for _ in range(s.pool):
            structure = space.sample(study.ask())
            solved = space.solve(structure, s.budget, s.tolerance, s.input_size, s.classes, 1)
            if solved.spec is None:
                continue
            aid = ops_arch_id(lower(solved.spec))
            if aid not in found:
                found[aid] = {"structure": structure, "width": solved.width, "spec": solved.spec}
        pool = list(found.values())
        keys = [strata_value(_default_key(c["spec"])) for c in pool]
        finite = [i for i, v in enumerate(keys) if math.isfinite(v)]
        if len(finite) < n:
            raise cli.UsageError(
                f"the {name} space has {len(finite)} distinct architectures in the band of "
                f"{s.budget / 1e9:g} GFLOPs from {s.pool} random structures, fewer than the "
                f"{n} the sample needs; raise --pool or choose another --budget"
            )
        rng = random.Random(f"{s.seed}-{name}")
        for j, i in enumerate(stratified_pick([keys[i] for i in finite], n, rng)):
            c = pool[finite[i]]
            rows.append(
                {
                    "name": f"{name}-{j:02d}",
                    "space": name,
                    "role": "sample",
                    "structure": json.dumps(c["structure"], sort_keys=True),
                    "width": c["width"],
                    "spec": c["spec"].to_json(),
                    "pool_size": len(pool),
                }
            )
    for model in s.reference_models():
        spec = model_spec(model, input_size=s.input_size, classes=s.classes)
        rows.append(
            {
                "name": model,
                "space": "zoo",
                "role": "reference",
                "structure": "",
                "width": None,
                "spec": spec.to_json(),
                "pool_size": None,
            }
        )

    for row in rows:
        row.update(arch_metrics(ArchSpec.from_json(row["spec"])))
    archs = pd.DataFrame(rows)
    return archs, jobs_of(archs, settings)


def _default_key(spec) -> tuple[float, ...]:
    return get_scorer(PAPER_SCORER)(measure(lower(spec)))


def jobs_of(archs: pd.DataFrame, settings: StudySettings) -> list[dict[str, Any]]:
    """The job list: ``short`` (every architecture, seed 0), ``seeds`` (seeds 1 and 2 for
    ``settings.seeded`` sampled architectures spanning the key and for the claims' zoo models),
    ``long`` (``settings.long`` sampled architectures spanning the key)."""
    sample = archs[archs["role"] == "sample"].reset_index(drop=True)
    values = [
        strata_value([r[f"key_stage_mean_n_{k}"] for k in range(3)]) for _, r in sample.iterrows()
    ]
    seeded = [sample["arch_id"][i] for i in spanning(values, settings.seeded)]
    # The claims' zoo models first, then the rest in a seeded random order: a study stopped
    # part-way has trained a random subsample of the key's range, not one end of it.
    claims = [a for a, n in zip(archs["arch_id"], archs["name"], strict=True) if n in CLAIM_MODELS]
    rest = [a for a in archs["arch_id"] if a not in claims]
    random.Random(f"{settings.seed}-order").shuffle(rest)
    jobs = [_job("short", 0, a) for a in claims + rest]
    jobs += [_job("short", seed, a, "seeds") for seed in (1, 2) for a in seeded + claims]
    jobs += [_job("long", 0, sample["arch_id"][i]) for i in spanning(values, settings.long)]
    # +1 padding (as the search trains) against the zero padding above, seeds 0 and 1: the
    # seeded sample and the baseline Bi-Real ResNet18
    paired = sorted(seeded + archs.loc[archs["name"] == "bireal_resnet18", "arch_id"].tolist())
    jobs += [_job("short_one", seed, a, "padding") for seed in (0, 1) for a in paired]
    return jobs


def _job(recipe: str, seed: int, arch_id: str, part: str | None = None) -> dict[str, Any]:
    return {
        "job": f"{recipe}-s{seed}-{arch_id}",
        "part": part or recipe,
        "recipe": recipe,
        "seed": seed,
        "arch_id": arch_id,
    }


# -- running it ---------------------------------------------------------------------------------


def read_runs(folder: Path) -> pd.DataFrame:
    path = folder / RUNS
    if not path.is_file():
        return pd.DataFrame(columns=["job"])
    return pd.read_csv(path, dtype={"arch_id": str})


def _append_runs(folder: Path, rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` to ``runs.csv`` atomically (the whole table rewritten in one rename)."""
    old = read_runs(folder)
    new = pd.DataFrame(rows)
    table = new if old.empty else pd.concat([old, new], ignore_index=True)
    atomic_write_text(folder / RUNS, table.to_csv(index=False))


def run_jobs(
    folder: Path,
    settings: StudySettings,
    jobs: list[dict[str, Any]],
    archs: pd.DataFrame,
    batch: int,
    cpus_per_trial: float,
    gpus_per_trial: float,
    data_dir: str | None,
    ray_address: str | None,
    dashboard_port: int,
) -> int:
    """Train ``jobs`` in batches (one Tune experiment each, jobs of one recipe and seed), each
    batch's results appended to ``runs.csv`` as it ends; returns how many failed."""
    spec_of = dict(zip(archs["arch_id"], archs["spec"], strict=True))
    name_of = dict(zip(archs["arch_id"], archs["name"], strict=True))
    failed = 0
    backends = {"short": RayTune(train_with_proxies), "other": RayTune()}
    where = TrainingOptions(
        resources=Resources(ray_address=ray_address, dashboard_port=dashboard_port)
    )
    with backends["other"].session(folder / WORK / RAY_HOME, where):
        for chunk in _batches(jobs, batch):
            recipe, seed = chunk[0]["recipe"], chunk[0]["seed"]
            options = TrainingOptions.from_dict(
                {
                    **settings.recipes[recipe],
                    "dataset": settings.dataset,
                    "data_dir": data_dir,
                    "seed": seed,
                    "cpus_per_trial": cpus_per_trial,
                    "gpus_per_trial": gpus_per_trial,
                    "max_failures": 1,
                    "baseline": "",
                }
            )
            names = ", ".join(f"{j['job']} ({name_of[j['arch_id']]})" for j in chunk)
            print(f"training {names}", flush=True)
            backend = backends["short" if recipe == "short" else "other"]
            trained, curves = backend.train(
                folder / WORK / "tune",
                [
                    Candidate(j["arch_id"], spec_of[j["arch_id"]], name_of[j["arch_id"]])
                    for j in chunk
                ],
                options,
                stop_early=False,
            )
            rows = []
            for job in chunk:
                result = trained[trained["arch_id"] == job["arch_id"]].iloc[0]
                if result["status"] != "trained":
                    failed += 1
                    why = result["error"] or f"{result['status']} (the run was interrupted)"
                    print(f"  {job['job']} failed: {why}", flush=True)
                    continue
                curve = curves[curves["arch_id"] == job["arch_id"]].sort_values("epoch")
                rows.append(
                    {
                        **{k: job[k] for k in ("job", "arch_id", "recipe", "seed")},
                        "epochs": int(result["epoch"]),
                        "top1": result["top1"],
                        "top1_best": float(curve["top1"].max()),
                        "top5": result["top5"],
                        "test_loss": result["test_loss"],
                        "train_loss": result["train_loss"],
                        "images_per_s": result["images_per_s"],
                        "train_seconds": result["train_seconds"],
                        "curve_top1": json.dumps([round(v, 6) for v in curve["top1"]]),
                        "curve_train_loss": json.dumps([round(v, 6) for v in curve["train_loss"]]),
                        **{
                            k[len(EXTRA_PREFIX) :]: result[k]
                            for k in result.index
                            if k.startswith(EXTRA_PREFIX)
                        },
                    }
                )
            if rows:
                _append_runs(folder, rows)
    return failed


def _batches(jobs: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """Consecutive jobs of one recipe and seed, at most ``size`` to a batch."""
    out: list[list[dict[str, Any]]] = []
    for job in jobs:
        last = out[-1] if out else None
        if (
            last
            and len(last) < size
            and (last[0]["recipe"], last[0]["seed"])
            == (
                job["recipe"],
                job["seed"],
            )
        ):
            last.append(job)
        else:
            out.append([job])
    return out


# -- the command --------------------------------------------------------------------------------


def _shard(text: str) -> tuple[int, int]:
    """An argparse type: ``K/N``, the K-th of N shards (1 <= K <= N)."""
    k, _, n = text.partition("/")
    shard = int(k), int(n)
    if not 1 <= shard[0] <= shard[1]:
        raise ValueError(text)
    return shard


_shard.__name__ = "shard K/N"


def _settings(args) -> StudySettings:
    try:
        budget = parse_budget(args.budget)
    except ValueError as e:
        raise cli.UsageError(f"--budget: {e}") from None
    spaces = tuple(dict.fromkeys(x.strip() for x in args.spaces.split(",") if x.strip()))

    for name in spaces:
        try:
            get_space(name)
        except KeyError as e:
            raise cli.UsageError(f"--spaces: {e.args[0]}") from None
    if not spaces:
        raise cli.UsageError("--spaces: give at least one search space, e.g. resnet,densenet")
    references = None
    if args.references is not None:
        references = tuple(x.strip() for x in args.references.split(",") if x.strip())
        for name in references:
            try:
                model_spec(name)
            except UnknownModelError as e:
                raise cli.UsageError(f"--references: {e}") from None
    recipes = RECIPES
    if args.recipes:
        try:
            recipes = json.loads(Path(args.recipes).read_text())
        except json.JSONDecodeError as e:
            raise cli.UsageError(f"--recipes {args.recipes}: not valid JSON ({e.msg})") from None
        if not isinstance(recipes, dict) or set(recipes) != set(RECIPES):
            raise cli.UsageError(
                f"--recipes {args.recipes}: give a JSON object with the recipes "
                f"{', '.join(RECIPES)}, each an object of TrainingOptions fields"
            )

        known = set(FLAT_FIELDS)
        for name, recipe in recipes.items():
            unknown = set(recipe) - known if isinstance(recipe, dict) else {"(not an object)"}
            if unknown:
                raise cli.UsageError(
                    f"--recipes {args.recipes}: recipe {name!r} has unknown fields "
                    f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
                )
    return StudySettings(
        budget=budget,
        spaces=spaces,
        sample=args.sample,
        pool=args.pool,
        seed=args.seed,
        seeded=args.seeded,
        long=args.long,
        references=references,
        recipes=recipes,
    )


def _load_data(settings: StudySettings, data_dir: str | None):
    """The study's dataset, checked before any work starts (one line where it is missing)."""
    try:
        return load_dataset(settings.dataset, data_dir)
    except (DataNotFound, DataError) as e:
        raise cli.UsageError(str(e)) from None


def _open_study(folder: Path, settings: StudySettings):
    """The study's architectures and jobs: read from ``folder``, or planned there now."""
    path = folder / STUDY
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            old = StudySettings.from_dict(stored["settings"])
            jobs = stored["jobs"]
        except (ValueError, KeyError, TypeError) as e:
            raise cli.UsageError(f"{path} is not a study file ({e}); use another --out") from None
        if old.to_dict() != settings.to_dict():
            diff = [
                f"{k} {v!r} (asked {settings.to_dict()[k]!r})"
                for k, v in old.to_dict().items()
                if settings.to_dict()[k] != v
            ]
            raise cli.UsageError(
                f"{folder} holds another study: its {'; '.join(diff)}; give its settings to "
                "go on with it, or another --out"
            )
        archs = pd.read_csv(folder / ARCHS, dtype={"arch_id": str})
        return archs, jobs
    if any(p.name not in (WORK, ".lock") for p in folder.iterdir()):
        raise cli.UsageError(
            f"{folder} is not empty and holds no {STUDY}: give an empty or new --out"
        )
    print(f"planning the study in {folder} (a few minutes) ...", flush=True)
    archs, jobs = plan(settings)
    atomic_write_text(folder / ARCHS, archs.to_csv(index=False))
    atomic_write_json(path, {"settings": settings.to_dict(), "jobs": jobs})
    return pd.read_csv(folder / ARCHS, dtype={"arch_id": str}), jobs


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m runners.study",
        description="Train a sample of binary CNNs to measure whether gradient-path metrics "
        "predict their accuracy (the benchmark behind docs/validation.md).",
    )
    parser.add_argument("--out", default=str(STUDY_DIR), help=f"study directory ({STUDY_DIR})")
    parser.add_argument("--budget", default="0.16GFLOPs", help="the FLOPs band's top")
    parser.add_argument(
        "--spaces", default=",".join(StudySettings.spaces), help="search spaces, comma-separated"
    )
    count = cli.int_range(1, 100_000, "number")
    parser.add_argument("--sample", type=count, default=64, help="architectures (default 64)")
    parser.add_argument("--pool", type=count, default=600, help="random structures per space")
    parser.add_argument("--seed", type=cli.int_range(0, 2**31, "seed"), default=0)
    parser.add_argument("--seeded", type=count, default=8, help="architectures with 3 seeds")
    parser.add_argument("--long", type=count, default=12, help="architectures, long recipe")
    parser.add_argument(
        "--references", help="zoo models trained beside the sample (default: the binary zoo)"
    )
    parser.add_argument("--recipes", help="a JSON file of the short and long recipes (tests)")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"parts to run now ({', '.join(PARTS)})"
    )
    parser.add_argument("--limit", type=count, help="train at most this many jobs in this run")
    parser.add_argument("--shard", type=_shard, help="K/N: run only the K-th of N shards of jobs")
    parser.add_argument("--batch", type=count, default=4, help="jobs per Tune experiment")
    parser.add_argument("--plan-only", action="store_true", help="plan the study, train nothing")
    parser.add_argument("--data-dir", help="where the dataset's files are")
    parser.add_argument("--cpus-per-trial", type=cli.finite_positive, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0)
    parser.add_argument("--ray-address", help="a running Ray cluster (default: a local one)")
    parser.add_argument("--dashboard-port", type=cli.port, default=8265)
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - set(PARTS):
        raise cli.UsageError(f"--parts {args.parts}: choose from {', '.join(PARTS)}")
    if not (math.isfinite(args.gpus_per_trial) and args.gpus_per_trial >= 0):
        raise cli.UsageError("--gpus-per-trial must be a number >= 0")
    settings = _settings(args)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)

    try:
        lock = lock_run_dir(folder)
    except RunRefused as e:
        raise cli.UsageError(str(e)) from None
    try:
        _load_data(settings, args.data_dir)  # missing or damaged data: one line, before any work
        archs, jobs = _open_study(folder, settings)
        done = set(read_runs(folder)["job"])
        pending = [
            j
            for n, j in enumerate(jobs)
            if j["part"] in parts
            and j["job"] not in done
            and (args.shard is None or n % args.shard[1] == args.shard[0] - 1)
        ]
        if args.limit:
            pending = pending[: args.limit]
        print(
            f"{folder}: {len(archs)} architectures, {len(jobs)} jobs, {len(done)} done; "
            f"{len(pending)} to train now" + (" (--plan-only: none)" if args.plan_only else ""),
            flush=True,
        )
        failed = 0
        if pending and not args.plan_only:
            failed = run_jobs(
                folder,
                settings,
                pending,
                archs,
                args.batch,
                args.cpus_per_trial,
                args.gpus_per_trial,
                args.data_dir,
                args.ray_address,
                args.dashboard_port,
            )
        left = len(jobs) - len(set(read_runs(folder)["job"]))
        print(f"{left} of {len(jobs)} jobs left; results in {folder / RUNS}", flush=True)
        if failed:
            print(
                f"runners.study: error: {failed} of {len(pending)} jobs failed (reasons above); "
                "run the command again to retry them",
                file=sys.stderr,
            )
            return 1
        return 0
    finally:
        os.close(lock)


if __name__ == "__main__":
    sys.exit(cli.run("runners.study", main))
