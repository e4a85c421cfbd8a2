import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def pytest_configure(config):
    """Ctrl-C as a terminal gives it. A suite started in the background by a non-interactive
    shell (``cmd &`` in a script, ``nohup``) inherits SIGINT ignored, as POSIX has it, and every
    command a test starts would inherit that too and ignore the Ctrl-C the signal tests send
    (those tests then saw the search run to its end and exit 0)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption(
        "--update-snapshots",
        action="store_true",
        help="rewrite tests/snapshots/*.json from the current code instead of comparing",
    )


@pytest.fixture
def update_snapshots(request) -> bool:
    return request.config.getoption("--update-snapshots")


def in_ci() -> bool:
    """Under CI (``CI`` set and not 0/false, as ``.ci/run`` and most CI services set it), where
    ``./setup.sh`` has installed every tool the tests use."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def require():
    """``require(ok, reason)``: nothing where ``ok``; else the test is skipped with ``reason``,
    or, under CI (:func:`in_ci`), fails with it: there a missing tool (strace, gcc) means that
    ``./setup.sh`` did not set the machine up, which must not pass as a skip."""

    def check(ok: object, reason: str) -> None:
        if ok:
            return
        if in_ci():
            pytest.fail(f"{reason} (CI: ./setup.sh should have provided it)", pytrace=False)
        pytest.skip(reason)

    return check


# The networks that the tests taking every zoo network build and run in the fast part
# (-m "not slow"): one of each family (Bi-Real residual, binary dense, IGP, full precision); the
# whole suite runs them all.
FAST_ZOO = ("bireal_resnet18", "binary_densenet28", "igp_resnet21", "resnet18_fp")


def zoo_params(names):
    """``names`` for ``pytest.mark.parametrize``, those outside :data:`FAST_ZOO` marked slow."""
    return [n if n in FAST_ZOO else pytest.param(n, marks=pytest.mark.slow) for n in names]


def session_processes(session: int) -> list[int]:
    """The live processes of a session (a command started in its own: its helpers and Ray's
    processes), zombies waiting to be reaped aside."""
    alive = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # field 6 of stat: the session id
            alive.append(int(status.parent.name))
    return alive


ROOT = Path(__file__).parent.parent
# trained.csv's columns that differ between two runs of the same training: when and how fast
TIMING = ["images_per_s", "train_seconds", "node", "started", "ended"]

# a small main job that trains: two candidates (successive halving promotes one) and the baseline
TRAIN = ["--budget", "0.16GFLOPs", "--space", "resnet", "--trials", "12", "--train-top", "2",
         "--epochs", "2", "--train-subset", "1000", "--seed", "6"]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A run directory of :data:`TRAIN`, run once for the tests that read a trained run."""
    run = tmp_path_factory.mktemp("trained") / "run"
    out = subprocess.run(
        [sys.executable, "-m", "nas.search", "--no-progress", *TRAIN, "--dashboard-port", "8291",
         "--out", str(run)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    (run.parent / "stdout.txt").write_text(out.stdout)  # what the user's terminal showed
    (run.parent / "stderr.txt").write_text(out.stderr)
    return run
