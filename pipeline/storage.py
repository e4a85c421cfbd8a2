"""The persistent Optuna study: opening its storage, and writing finished trials to it in bulk
from a second process.

Optuna adds a trial in a transaction of its own, about 10 ms each on SQLite through its ORM: a
hundred thousand candidates would take a quarter of an hour to record. :func:`add_trials` writes a
batch of finished trials in one transaction with multi-row inserts into Optuna's own tables
(the rows its ``add_trial`` writes; a test compares the two), about 0.1 ms a trial. The writes run
in a writer process, so they overlap the search. The writer dies with its parent (Linux's
PR_SET_PDEATHSIG, armed first thing, then a check that the parent is still there), and a batch
reaches the database whole or not at all: a killed run leaves only finished trials behind, and
``--resume`` recomputes the rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import NoReturn

import optuna
from optuna.distributions import distribution_to_json
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError


def open_storage(url: str, tries: int = 10) -> optuna.storages.RDBStorage:
    """Optuna storage at ``url``; SQLite gets write-ahead logging (what was committed survives a
    killed process, and a commit does not wait for a disk flush). Optuna creates its tables when
    a storage first opens a database, and searches sharing a fresh database collide doing it at
    once (PostgreSQL: a duplicate key in its catalogue): the loser tries again once the tables
    exist."""
    for attempt in range(tries):
        try:
            storage = optuna.storages.RDBStorage(url)
            break
        except (IntegrityError, ProgrammingError):
            if attempt == tries - 1:
                raise
            time.sleep(0.2 + random.random() * 0.3)
    if not url.startswith("sqlite"):
        return storage

    @event.listens_for(storage.engine, "connect")
    def _pragmas(dbapi_connection, _record):  # noqa: ANN001
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()
    return storage


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """SIGINT blocked while helper processes may start: a helper inherits the blocked mask, so a
    Ctrl-C, which reaches the whole process group, is left to the search process, which stops
    its helpers in order; the search process receives a Ctrl-C that came meanwhile as soon as it
    is unblocked. (SIGTERM stays deliverable: helpers must still die when terminated.)"""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


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


def add_trials(
    storage: optuna.storages.RDBStorage, study_name: str, trials: Sequence[FrozenTrial]
) -> None:
    """Add finished ``trials`` to the study in one transaction, numbered after the study's trials
    in the order given: what ``study.add_trials`` records, in a few multi-row inserts. The study
    row is locked first, as Optuna does, so that processes sharing the study number their
    trials apart."""
    if not trials:
        return
    study_id = storage.get_study_id_from_name(study_name)
    now = datetime.now(UTC).replace(tzinfo=None)  # Optuna keeps naive UTC times

    def utc(t: datetime | None) -> datetime:
        return now if t is None else t.astimezone(UTC).replace(tzinfo=None)

    with storage.scoped_session() as session, session.begin():
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        count = select(func.count(models.TrialModel.trial_id)).where(
            models.TrialModel.study_id == study_id
        )
        first = session.execute(count).scalar_one()
        table = models.TrialModel.__table__
        ids = (
            session.execute(
                table.insert().returning(table.c.trial_id, sort_by_parameter_order=True),
                [
                    {
                        "number": first + i,
                        "study_id": study_id,
                        "state": TrialState.COMPLETE,
                        "datetime_start": utc(t.datetime_start),
                        "datetime_complete": utc(t.datetime_complete),
                    }
                    for i, t in enumerate(trials)
                ],
            )
            .scalars()
            .all()
        )
        params, values, user, system = [], [], [], []
        # a batch's trials share their distribution objects: encode each once (by identity:
        # equal distributions may differ in JSON, (False, True) == (0, 1))
        as_json: dict[int, str] = {}
        for trial_id, t in zip(ids, trials, strict=True):
            for name, value in t.params.items():
                d = t.distributions[name]
                if id(d) not in as_json:
                    as_json[id(d)] = distribution_to_json(d)
                params.append(
                    {
                        "trial_id": trial_id,
                        "param_name": name,
                        "param_value": d.to_internal_repr(value),
                        "distribution_json": as_json[id(d)],
                    }
                )
            for objective, value in enumerate(t.values or ()):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                values.append(
                    {"trial_id": trial_id, "objective": objective, "value": stored,
                     "value_type": kind}
                )  # fmt: skip
            for rows, attrs in ((user, t.user_attrs), (system, t.system_attrs)):
                rows += [
                    {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                    for k, v in attrs.items()
                ]
        for model, rows in (
            (models.TrialParamModel, params),
            (models.TrialValueModel, values),
            (models.TrialUserAttributeModel, user),
            (models.TrialSystemAttributeModel, system),
        ):
            if rows:
                session.execute(model.__table__.insert(), rows)


WRITER_DISK_FULL = 28  # the writer's exit code when the study's disk is full (ENOSPC's number)
_SQLITE_FULL = 13


def _write(parent: int, url: str, study_name: str, queue) -> None:
    die_with_parent(parent)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    try:
        while (trials := queue.get()) is not None:
            add_trials(storage, study_name, trials)
    except (OperationalError, OSError) as e:
        full = getattr(getattr(e, "orig", None), "sqlite_errorcode", None) == _SQLITE_FULL
        if full or getattr(e, "errno", None) == errno.ENOSPC:  # the batch was rolled back
            sys.exit(WRITER_DISK_FULL)  # the search says so in one line
        raise


class StudyWriter:
    """Adds batches of finished trials to the persistent study, in order, from a writer
    process."""

    def __init__(self, url: str, study_name: str):
        ctx = multiprocessing.get_context("spawn")
        self.url = url
        self.queue = ctx.Queue()
        self.process = ctx.Process(
            target=_write,
            args=(os.getpid(), url, study_name, self.queue),
            name="nas-study-writer",
            daemon=True,
        )
        with ctrl_c_held():
            self.process.start()

    def put(self, trials: Sequence[FrozenTrial]) -> None:
        if not self.process.is_alive():
            self._failed("stopped")
        if trials:
            self.queue.put(list(trials))

    def close(self) -> None:
        """Wait until every trial is written."""
        self.queue.put(None)
        self.process.join()
        if self.process.exitcode != 0:
            self._failed("failed")

    def _failed(self, how: str) -> NoReturn:
        self.queue.cancel_join_thread()  # what it holds stays unwritten: exiting must not wait
        if self.process.exitcode == WRITER_DISK_FULL:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.url)
        raise RuntimeError(
            f"the study writer {how} (exit code {self.process.exitcode}); "
            "the finished trials are in the study, continue with --resume"
        )


def tagged(study, run_tag: str) -> bool:
    """Whether a trial of ``study`` was recorded by the run ``run_tag`` (runs sharing a study tag
    their candidates' results with their names)."""
    return any(
        t.user_attrs.get("result", {}).get("run") == run_tag
        for t in study.get_trials(deepcopy=False)
    )


class StudyError(Exception):
    """The study cannot be opened or created: one line saying why and what to do."""


def open_study(
    url: str,
    study_name: str,
    directions: list[str] | None = None,
    where: str = "",
    fix: str = "restore it from a copy, or start a new run",
    join: dict | None = None,
):
    """Load the study ``study_name`` at ``url``, or create it when ``directions`` are given (a new
    run: a study of that name must not exist yet). ``join``: a new run that may share an existing
    study, made by runs whose settings' identity (:meth:`pipeline.settings.Settings.identity`,
    kept as the study's user attribute ``search``) is ``join``. ``where`` names the database in
    messages, ``fix`` says what to do when it cannot be opened."""
    where = where or url
    try:
        storage = open_storage(url)
        if directions is None:
            return optuna.load_study(study_name=study_name, storage=storage)
        try:
            study = optuna.create_study(
                storage=storage, study_name=study_name, directions=directions
            )
        except optuna.exceptions.DuplicatedStudyError:
            if join is None:
                raise
            study = optuna.load_study(study_name=study_name, storage=storage)
            for _ in range(50):  # a run creating the study at this moment labels it next
                if (theirs := study.user_attrs.get("search")) is not None:
                    break
                time.sleep(0.1)
            if theirs != json.loads(json.dumps(join)):
                differ = sorted(k for k in join if (theirs or {}).get(k) != join[k])
                raise StudyError(
                    f"the study {study_name!r} in {where} was made by a search with other "
                    f"settings ({', '.join(differ) or 'not a nas.search study'}); join it with "
                    "the same ones, or choose another --study-name"
                ) from None
            return study
        if join is not None:
            study.set_user_attr("search", join)
        return study
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
