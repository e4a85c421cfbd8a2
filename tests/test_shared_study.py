"""Several searches sharing one study in a real PostgreSQL server (Optuna's distributed
optimisation): each finds its own candidates, the study gathers them, and a run directory's
table holds their union with every architecture once.

The server is started by the test (Debian's ``postgresql`` package, which ``./setup.sh``
installs as root; as root the server runs as the ``postgres`` user), in a temporary directory,
listening on a Unix socket only."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if isinstance(found, list) and found else found or None


@pytest.fixture
def postgres_url(require):
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    require(initdb and pg_ctl, "PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401, PLC0415 - the driver SQLAlchemy uses for postgresql://
    except ImportError:
        require(False, "psycopg is not installed (pip install -e '.[dev]')")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        require(shutil.which("runuser"), "runuser is missing: cannot run PostgreSQL as postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="nas-pg-"))
    data, socket = home / "data", home / "socket"
    socket.mkdir()
    if as_user:
        shutil.chown(home, "postgres")
        shutil.chown(socket, "postgres")
    run = {"check": True, "capture_output": True, "text": True}
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "nas", "--auth=trust"], **run)
    options = f"-k {socket} -c listen_addresses='' -p 5433"
    log = str(home / "server.log")  # the server's output goes there (a pipe would stay open)
    start = [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", log, "-w", "start"]
    subprocess.run(start, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the README's form: a plain postgresql:// URL, the driver chosen by SQLAlchemy
        yield f"postgresql://nas@/postgres?host={socket}&port=5433"
    finally:
        stop = [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run(stop, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)


def _search(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nas.search", "--no-progress", "--train-top", "0",
         "--budget", "0.16GFLOPs", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_two_searches_share_one_postgresql_study(postgres_url, tmp_path):
    shared = ("--storage", postgres_url, "--study-name", "shared", "--trials", "150")
    a, b = tmp_path / "a", tmp_path / "b"
    procs = [_search(*shared, "--seed", "1", "--out", str(a)),
             _search(*shared, "--seed", "2", "--out", str(b))]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    results = [t.user_attrs["result"] for t in study.trials]
    by_run = pd.Series([r["run"] for r in results]).value_counts()
    assert dict(by_run) == {"a": 150, "b": 150}  # each found its own candidates
    assert sorted(t.number for t in study.trials) == list(range(300))
    union = {r["arch_id"] for r in results}
    # A run's table, written again from the study: the union, each architecture once. (Each run
    # skips what the other had recorded when it started, so the two overlap little if at all.)
    resumed = subprocess.run(
        [sys.executable, "-m", "nas.search", "--resume", str(a), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    table = pd.read_csv(a / "candidates.csv")
    found = table[table["reference"].isna()]
    assert found["arch_id"].is_unique
    assert set(found["arch_id"]) == union
    # a run of other settings cannot join the study
    other = _search(*shared, "--seed", "3", "--out", str(tmp_path / "c"), "--tolerance", "0.1")
    _, err = other.communicate(timeout=300)
    assert other.returncode == 2 and err.count("\n") == 1 and "tolerance" in err, err
