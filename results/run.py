"""A run directory: ``results/runs/<run-id>/`` and the atomic writes that fill it.

Layout (written by ``python -m nas.search``)::

    settings.json        what was asked (budget, space, trials, seed, ...); marks a run directory
    .lock                held (flock) by the process working on the run, for as long as it runs
    study.db             the Optuna study (SQLite), unless --storage named another database
    candidates.csv       one row per distinct candidate and reference model (+ .parquet)
    specs/rank001-<id>.json ...   the top-k ArchSpecs, loadable by nas.profile and nas.paths
    report.md, report.html, plots/*.png

Every file is written to a temporary name in the same directory and renamed over the target, so
a reader (or a killed run) never sees half a file. Paths inside a run are stored relative to it
(the study is "study.db in this directory"), so a moved or copied run resumes into its own files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nas.core.model_dir import MODELS
from nas.core.spec import DuplicateKey, unique_keys

SETTINGS = "settings.json"
CANDIDATES = "candidates.csv"
DRAWS = "draws.json"  # where the draws of a search went (pipeline.loop.Counts)
RUNS_ROOT = Path("results") / "runs"
STUDY_DB = "study.db"
LOCK = ".lock"
TRAINED = "trained.csv"  # one row per trained model: TRAINED_COLUMNS
CURVES = "curves.csv"  # one row per trained model and epoch: CURVE_COLUMNS
REPORT = "report.md"  # and report.html, rendered from it


# The directories a run (or a study) holds; each must be a real directory inside it, never a
# symbolic link, so that nothing the run writes lands outside it.
SPECS = "specs"  # the specs of the top candidates, the training pool and the reference models
PLOTS = "plots"
TUNE = "tune"  # the training backend's experiment
RAY_HOME = ".ray_home"  # the HOME of the run's Ray session (its token)
FINAL = "final"  # the final recipe's models and Tune experiment (python -m nas.final)
RUN_SUBDIRS = (SPECS, PLOTS, TUNE, MODELS, FINAL, RAY_HOME, ".work")


# What a model reports after each epoch of training
EPOCH_METRICS = ("epoch", "top1", "top5", "test_loss", "train_loss")
# trained.csv, as a training backend returns it (runners.backend): a model's status (trained,
# stopped by successive halving, failed, not started) and why it failed, its last epoch's
# metrics, its training speed and the node it ran on, its training time and when it trained
TRAINED_COLUMNS = (
    "arch_id", "status", "error", *EPOCH_METRICS, "images_per_s", "node", "train_seconds",
    "started", "ended",
)  # fmt: skip
CURVE_COLUMNS = ("arch_id", *EPOCH_METRICS)  # curves.csv


def spec_file_name(rank: int | None, arch_id: str, reference: str = "") -> str:
    """The name of a spec file in :data:`SPECS` (without ``.json``): ``rank004-<arch id>`` for
    a candidate, ``ref-<model>-<arch id>`` for a reference model."""
    return f"ref-{reference}-{arch_id}" if reference else f"rank{rank:03d}-{arch_id}"


def spec_files(run_dir: Path) -> dict[str, Path]:
    """The spec files of a run, by arch id (the part of the name after the last ``-``)."""
    return {p.stem.rsplit("-", 1)[-1]: p for p in (run_dir / SPECS).glob("*.json")}


class RunRefused(Exception):
    """The run directory cannot be worked on now: in use, or unsafe."""


class RunInUse(RunRefused):
    """Another process holds the run directory's lock."""


class UnsafeRunDir(RunRefused):
    """A run directory whose lock or one of whose directories is a symbolic link (or no
    directory): writing there could reach outside the run."""


def check_run_dir(path: Path) -> None:
    """Raise :class:`UnsafeRunDir` where one of :data:`RUN_SUBDIRS` of ``path`` is a symbolic link
    or not a directory."""
    for name in RUN_SUBDIRS:
        sub = path / name
        if sub.is_symlink() or (sub.exists() and not sub.is_dir()):
            what = "a symbolic link" if sub.is_symlink() else "not a directory"
            raise UnsafeRunDir(
                f"{sub} is {what}: a run writes only inside its own directory; remove it or use "
                "another run directory"
            )


def lock_run_dir(path: Path) -> int:
    """Take the run directory's exclusive lock for the life of this process (or until the returned
    descriptor is closed); raises :class:`RunInUse`, naming the holder, if another process has it.

    An advisory ``flock`` on ``RUN_DIR/.lock``: the kernel drops it when its holder dies, however
    it dies, so a killed run never leaves a stale lock behind. The descriptor is not inherited by
    child processes (Python opens files close-on-exec). The lock file is never followed if it is
    a symbolic link, and a run whose directories are not its own is refused
    (:func:`check_run_dir`): both raise :class:`UnsafeRunDir`."""
    check_run_dir(path)
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise UnsafeRunDir(
            f"{path / LOCK} is a symbolic link: a run writes only inside its own directory; "
            "remove it"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunInUse(
            f"{path} is in use by another process (pid {holder}); wait for it to end"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def study_url(storage: str, run_dir: Path) -> str:
    """The Optuna storage URL of a run: ``storage`` as given by ``--storage``, or (empty) the
    run directory's own SQLite file wherever the directory now is."""
    return storage or f"sqlite:///{(run_dir / STUDY_DB).resolve()}"


def is_run_dir(path: Path) -> bool:
    try:
        return json.loads((path / SETTINGS).read_text()).get("kind") == "nas.search"
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


class RunFileError(ValueError):
    """A run file that cannot be read as its format says: one line naming the file and field."""


Bounds = tuple[float | list[float], float | list[float]]  # (low, high); a bound in a list: excluded
# The numbers of settings.json, with the bounds the command line puts on their flags (a bound in
# a list is excluded): pipeline.cli checks the flags against these.
SETTINGS_BOUNDS: dict[str, Bounds] = {
    "budget": ([0], math.inf),
    "tolerance": ([0], [1]),
    "trials": (1, math.inf),
    "top": (1, 1_000_000),
    "train_top": (0, math.inf),
    "input_size": (8, 8192),
    "classes": (2, 1_000_000),
    "min_width": (1, 100_000),
}
_SETTINGS_INTEGERS = {"trials", "top", "train_top", "input_size", "classes", "min_width", "seed"}
_SETTINGS_TEXT = ("budget_text", "space", "sampler", "storage", "study_name", "scorer", "tie_break")
# The numbers of settings.json's "training" section (runners.options.TrainingOptions), with the
# bounds of their flags; None where a field may be null.
TRAINING_BOUNDS: dict[str, Bounds] = {
    "top": (0, math.inf),
    "epochs": (1, math.inf),
    "batch_size": (1, 1_000_000),
    "lr": ([0], math.inf),
    "width_mult": ([0], 4),
    "stem_stride": (1, 2),
    "train_subset": (1, math.inf),
    "eval_subset": (1, math.inf),
    "cpus_per_trial": ([0], math.inf),
    "gpus_per_trial": (0, math.inf),
    "max_failures": (0, math.inf),
    "dashboard_port": (0, 65535),
    "seed": (-math.inf, math.inf),
}
_TRAINING_INTEGERS = {
    "top", "epochs", "batch_size", "stem_stride", "train_subset", "eval_subset", "max_failures",
    "dashboard_port", "seed",
}  # fmt: skip
_TRAINING_NULLABLE = {"train_subset", "eval_subset", "data_dir", "ray_address"}
_TRAINING_TEXT = ("dataset", "data_dir", "precision", "padding", "ray_address", "baseline")


def out_of_bounds(bounds: Bounds, value: float) -> str | None:
    """Why ``value`` is not within ``bounds`` (low, high; a bound in a list is excluded), or
    None when it is."""
    low, high = bounds
    lo, hi = (b[0] if isinstance(b, list) else b for b in (low, high))
    above = value > lo if isinstance(low, list) else value >= lo
    below = value < hi if isinstance(high, list) else value <= hi
    if math.isfinite(value) and above and below:
        return None

    def show(v: float) -> str:
        return str(int(v)) if float(v).is_integer() else f"{v:g}"

    if hi == math.inf:
        return f"must be {'above' if isinstance(low, list) else 'at least'} {show(lo)}, got {value}"
    left = "(" if isinstance(low, list) else "["
    right = ")" if isinstance(high, list) else "]"
    return f"must be in {left}{show(lo)}, {show(hi)}{right}, got {value}"


def _json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise RunFileError(f"{path} is not valid JSON ({type(e).__name__})") from None
    except DuplicateKey as e:
        raise RunFileError(f"{path}: the field {e.args[0]!r} appears twice") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path} does not hold a JSON object")
    return data


def read_settings(path: Path) -> dict[str, Any]:
    """``settings.json`` of the run ``path``, checked: every number of the right kind and within
    the command line's bounds, every name a string; :class:`RunFileError` names the field."""
    file = path / SETTINGS
    data = _json_object(file)

    def bad(field: str, problem: str) -> RunFileError:
        return RunFileError(f"{file}: {field} {problem}; restore it from a copy")

    _check_fields(
        data, {**SETTINGS_BOUNDS, "seed": (-math.inf, math.inf)}, _SETTINGS_INTEGERS,
        _SETTINGS_TEXT, {"min_width"}, bad,
    )  # fmt: skip
    training = data.get("training")
    if training is not None:
        if not isinstance(training, dict):
            raise bad("training", "must be an object")
        _check_fields(
            training, TRAINING_BOUNDS, _TRAINING_INTEGERS, _TRAINING_TEXT, _TRAINING_NULLABLE,
            lambda field, problem: bad(f"training.{field}", problem),
        )  # fmt: skip
        if not isinstance(training.get("augment", False), bool):
            raise bad("training.augment", f"must be true or false, got {training['augment']!r}")
    return data


def _check_fields(
    data: dict[str, Any],
    bounds: dict[str, Bounds],
    integers: set[str],
    text: Sequence[str],
    nullable: set[str],
    bad: Callable[[str, str], RunFileError],
) -> None:
    """Every field of ``bounds`` present (or null where ``nullable``), of its kind and within
    its bounds; every ``text`` field a string (or null where ``nullable``)."""
    for field, limits in bounds.items():
        if field not in data:
            if field in nullable:
                continue
            raise bad(field, "is missing")
        value = data[field]
        if value is None and field in nullable:
            continue
        integer = field in integers
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise bad(field, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        if why := out_of_bounds(limits, value):
            raise bad(field, why)
    for field in text:
        if field in data and not isinstance(data[field], str):
            if data[field] is None and field in nullable:
                continue
            raise bad(field, f"must be a string, got {data[field]!r}")


DRAW_COUNTS = ("candidates", "drawn", "outside", "repeats", "same_arch")


def read_draws(path: Path) -> dict[str, Any]:
    """``draws.json`` of the run ``path``: where the search's draws went, every count a
    non-negative integer; :class:`RunFileError` names the field."""
    file = path / DRAWS
    data = _json_object(file)
    for field in DRAW_COUNTS:
        value = data.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RunFileError(
                f"{file}: {field} must be a count (an integer, 0 or more), got {value!r}; "
                "rebuild it with python -m nas.search --resume " + str(path)
            )
    size = data.get("space_size")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not size >= 0:
        raise RunFileError(
            f"{file}: space_size must be a number, 0 or more, got {size!r}; rebuild it with "
            "python -m nas.search --resume " + str(path)
        )
    return data
