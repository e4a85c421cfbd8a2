"""How a command ends when it cannot go on: a Ctrl-C (SIGINT to the whole process group, as a
terminal sends it) or a SIGTERM at several moments of a search ends it with one line that says
how to resume, exit code 130 or 143, no traceback and no helper left running, and the resumed
run's files equal an uninterrupted run's; a full disk is one line and exit code 1."""

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import TIMING, TRAIN, session_processes

from nas import cli

ROOT = Path(__file__).parent.parent
SEARCH = [sys.executable, "-m", "nas.search", "--no-progress", "--train-top", "0"]
ARGS = ["--budget", "0.16GFLOPs", "--trials", "1000", "--seed", "4"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("signals") / "whole"
    subprocess.run([*SEARCH, *ARGS, "--out", str(run)], cwd=ROOT, check=True, capture_output=True)
    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "after", "code"),
    [
        (signal.SIGINT, 0.0, 130),  # while the run directory is being made and helpers start
        (signal.SIGINT, 2.0, 130),  # in the middle of the search
        (signal.SIGTERM, 0.3, 143),
        (signal.SIGTERM, 2.0, 143),
    ],
)
def test_a_signal_ends_the_search_in_one_line_and_resume_finishes_it(
    uninterrupted, tmp_path, sig, after, code
):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [*SEARCH, *ARGS, "--out", str(run)], cwd=ROOT, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not (run / "settings.json").is_file():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    time.sleep(after)
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out[-1500:], err[-1500:])
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == f"nas.search: interrupted: resume with python -m nas.search --resume {run}"
    deadline = time.time() + 10
    # the helpers (evaluators, the study writer) end with the search
    while session_processes(proc.pid):
        assert time.time() < deadline, session_processes(proc.pid)
        time.sleep(0.1)
    resumed = subprocess.run(
        [*SEARCH, "--resume", str(run)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (run / "candidates.csv").read_text() == (uninterrupted / "candidates.csv").read_text()


@pytest.mark.slow
def test_a_real_full_disk_is_one_line_and_the_run_resumes_once_there_is_space(
    uninterrupted, tmp_path
):
    """The search on a 2 MB filesystem (a tmpfs: root only) fills it: one line, exit code 1;
    grown to 64 MB, --resume finishes the run as if nothing had happened."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root (and CAP_SYS_ADMIN)")
    try:
        run = disk / "run"
        out = subprocess.run(
            [*SEARCH, *ARGS, "--out", str(run)], cwd=ROOT, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
        *before, last = out.stderr.strip().splitlines()
        assert before == [f"run directory: {run}"], out.stderr[-3000:]  # what a search prints first
        assert last.startswith("nas.search: error: no space left on the device")
        assert last.endswith(f"resume with python -m nas.search --resume {run}")
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = subprocess.run(
            [*SEARCH, "--resume", str(run)], cwd=ROOT, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert (run / "candidates.csv").read_text() == (
            uninterrupted / "candidates.csv"
        ).read_text()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_line_and_exit_1(capsys):
    """A write that fails for want of space (faked: a disk cannot be filled here safely) ends
    the command with one line that says nothing was lost and how to go on."""

    def main(argv):
        cli.set_resume_hint("resume with python -m nas.search --resume RUN")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    try:
        assert cli.run("nas.search", main, []) == 1
    finally:
        cli.set_resume_hint("")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left" in err and "nothing earlier was lost" in err
    assert err.rstrip().endswith("resume with python -m nas.search --resume RUN")


def test_a_keyboard_interrupt_is_one_line_and_exit_130(capsys):
    def main(argv):
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        assert cli.run("results.report", main, []) == 130
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    assert capsys.readouterr().err == "results.report: interrupted\n"


def ray_sessions(driver: int) -> list[Path]:
    """Ray's session folders of the local session that process ``driver`` started (Ray names
    them session_<date>_<time>_<driver's pid>)."""
    return list((Path(tempfile.gettempdir()) / "ray").glob(f"session_*_{driver}"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "group", "code"),
    [
        (signal.SIGINT, True, 130),
        (signal.SIGTERM, False, 143),
        (signal.SIGTERM, True, 143),  # as timeout(1) sends it: Ray's GCS ends with the run
        (signal.SIGKILL, False, -9),
    ],
)
def test_a_signal_during_training_ends_in_one_line_and_resume_finishes_it(
    trained_run, tmp_path, sig, group, code
):
    """Ctrl-C (to the process group), SIGTERM (to the search or its group) or SIGKILL (to the
    search alone) once the first
    checkpoint is written: Tune stops, saving its state (SIGKILL: the last checkpoint stands);
    the command ends with its one line, no traceback (SIGKILL: silence); Ray's processes, its
    agents included, are gone within seconds, and so is its session folder; --resume trains
    what is left and gives the uninterrupted run's trained.csv (but for timings)."""
    import pandas as pd

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.search", "--no-progress", *TRAIN, "--dashboard-port", "8292",
         "--out", str(run)],
        cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.time() + 600
    while not list(run.glob("tune/train-*/candidate-*/checkpoint_*")):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    (os.killpg if group else os.kill)(proc.pid, sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err[-2000:]
    if sig != signal.SIGKILL:
        assert "Traceback" not in err and "Tuner.restore" not in err
        last = err.strip().splitlines()[-1]
        assert last == f"nas.search: interrupted: resume with python -m nas.search --resume {run}"
    deadline = time.time() + 20  # Ray's own agents would linger 60 s
    # Ray's processes (raylet, agents, workers) end with the run, and its session folder goes
    while session_processes(proc.pid) or ray_sessions(proc.pid):
        assert time.time() < deadline, (session_processes(proc.pid), ray_sessions(proc.pid))
        time.sleep(0.5)
    resumed = subprocess.run(
        [*SEARCH[:-2], "--resume", str(run), "--dashboard-port", "8292"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (
        pd.read_csv(r / "trained.csv").drop(columns=TIMING).sort_values("arch_id")
        for r in (trained_run, run)
    )
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True)), (a.to_string(), b.to_string())
