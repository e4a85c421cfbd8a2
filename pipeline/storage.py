"""The persistent Optuna study: opening its storage, and writing finished trials to it from a
second process.

The search is CPU-bound Python, and so is an ORM insert of a trial (about 10 ms each on SQLite),
so the writes go to a writer process on the other core. The writer dies with its parent (Linux's
PR_SET_PDEATHSIG, armed first thing, then a check that the parent is still there), and a trial
reaches the database in one transaction, whole or not at all: a killed run leaves only finished
trials behind, and ``--resume`` recomputes the rest.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal

import optuna
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError


def open_storage(url: str):
    """Optuna storage at ``url``; SQLite gets write-ahead logging (what was committed survives a
    killed process, and a commit does not wait for a disk flush)."""
    if not url.startswith("sqlite"):
        return url
    storage = optuna.storages.RDBStorage(url)

    @event.listens_for(storage.engine, "connect")
    def _pragmas(dbapi_connection, _record):  # noqa: ANN001
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()
    return storage


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies, then make sure the parent (pid
    ``parent``, the process that started this one) is still alive: had it died before the signal
    was armed, this process has been handed to another parent and leaves at once. Call it first
    thing in a child process."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: SIGKILL when the parent dies
    except (OSError, AttributeError):
        pass  # not Linux: the helpers still stop at the end of their queue
    if os.getppid() != parent:
        os._exit(1)


def _write(parent: int, url: str, study_name: str, queue) -> None:
    die_with_parent(parent)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    while (trial := queue.get()) is not None:
        study.add_trial(trial)


class StudyWriter:
    """Adds finished trials to the persistent study, in order, from a writer process."""

    def __init__(self, url: str, study_name: str):
        ctx = multiprocessing.get_context("spawn")
        self.queue = ctx.Queue()
        self.process = ctx.Process(
            target=_write,
            args=(os.getpid(), url, study_name, self.queue),
            name="nas-study-writer",
            daemon=True,
        )
        self.process.start()

    def put(self, trial) -> None:
        if not self.process.is_alive():
            raise RuntimeError(
                f"the study writer stopped (exit code {self.process.exitcode}); "
                "the finished trials are in the study, continue with --resume"
            )
        self.queue.put(trial)

    def close(self) -> None:
        """Wait until every trial is written."""
        self.queue.put(None)
        self.process.join()
        if self.process.exitcode != 0:
            raise RuntimeError(
                f"the study writer failed (exit code {self.process.exitcode}); "
                "the finished trials are in the study, continue with --resume"
            )


class StudyError(Exception):
    """The study cannot be opened or created: one line saying why and what to do."""


def open_study(
    url: str,
    study_name: str,
    directions: list[str] | None = None,
    where: str = "",
    fix: str = "restore it from a copy, or start a new run",
):
    """Load the study ``study_name`` at ``url``, or create it when ``directions`` are given (a new
    run: a study of that name must not exist yet). ``where`` names the database in messages,
    ``fix`` says what to do when it cannot be opened."""
    where = where or url
    try:
        storage = open_storage(url)
        if directions is not None:
            return optuna.create_study(
                storage=storage, study_name=study_name, directions=directions
            )
        return optuna.load_study(study_name=study_name, storage=storage)
    except optuna.exceptions.DuplicatedStudyError:
        raise StudyError(
            f"a study named {study_name!r} is already in {where}; choose another --out name"
        ) from None
    except KeyError:
        raise StudyError(
            f"the study {study_name!r} is not in {where}: the database was emptied or replaced; "
            "restore it from a copy, or start a new run"
        ) from None
    except (SQLAlchemyError, ValueError, ImportError) as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise StudyError(f"cannot open the study database {where} ({reason}); {fix}") from None
