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
import os
from pathlib import Path
from typing import Any

SETTINGS = "settings.json"
CANDIDATES = "candidates.csv"
DRAWS = "draws.json"  # where the draws of a search went (pipeline.loop.Counts)
RUNS_ROOT = Path("results") / "runs"
STUDY_DB = "study.db"
LOCK = ".lock"


# The directories a run (or a study) holds; each must be a real directory inside it, never a
# symbolic link, so that nothing the run writes lands outside it.
RUN_SUBDIRS = ("specs", "plots", "tune", ".ray_home", ".work")


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


def read_settings(path: Path) -> dict[str, Any]:
    return json.loads((path / SETTINGS).read_text())
