"""The persistent Optuna study: opening its storage, and writing finished trials to it from a
second process.

The search is CPU-bound Python, and so is an ORM insert of a trial (about 10 ms each on SQLite),
so the writes go to a writer process on the other core. The writer dies with its parent (Linux's
PR_SET_PDEATHSIG), and a trial reaches the database in one transaction, whole or not at all: a
killed run leaves only finished trials behind, and ``--resume`` recomputes the rest.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal


def open_storage(url: str):
    """Optuna storage at ``url``; SQLite gets write-ahead logging (what was committed survives a
    killed process, and a commit does not wait for a disk flush)."""
    import optuna

    if not url.startswith("sqlite"):
        return url
    storage = optuna.storages.RDBStorage(url)
    from sqlalchemy import event

    @event.listens_for(storage.engine, "connect")
    def _pragmas(dbapi_connection, _record):  # noqa: ANN001
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()
    return storage


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: SIGKILL when the parent dies
    except (OSError, AttributeError):
        pass  # not Linux: the writer still stops at the end of its queue


def _write(url: str, study_name: str, queue) -> None:
    die_with_parent()
    import optuna

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
            target=_write, args=(url, study_name, self.queue), name="nas-study-writer", daemon=True
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
