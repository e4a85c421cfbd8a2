"""A watchdog that ends a local Ray session with the process that started it, however it ends.

``ray.init`` starts the GCS, the raylet and the dashboard as children of the driver; they die
with it. The raylet's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) notice its
death at once but then try to report it to the dead GCS with a fixed 60 s timeout, listening on
loopback all the while. And Ray leaves its ``session_*`` directory in the temp folder, one more
with every run.

:func:`guard` starts this module as a process of its own, given the session's processes and its
directory. It waits for end-of-file on its stdin, whose other end only the driver holds: the
driver closes it at a clean shutdown, and the kernel closes it when the driver is killed, even by
SIGKILL. It then kills what is left of those processes (each matched by its start time, so that
a reused PID is never hit) and removes the session directory. It ignores Ctrl-C and SIGTERM sent
to the process group, so that it outlives the driver it watches.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

SESSION_PREFIX = "session_"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None
    once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def guard(session_dir: str | None) -> subprocess.Popen | None:
    """Start the watchdog over this process's descendants (the Ray session just started) and
    ``session_dir``; close its stdin (``proc.stdin.close()``) after ``ray.shutdown``. None where
    there is no /proc."""
    if not Path("/proc/self/stat").is_file():
        return None
    watched = [f"{pid}:{_start_time(pid)}" for pid in descendants(os.getpid())]
    return subprocess.Popen(
        [sys.executable, "-m", "runners.ray_guard", session_dir or "", *watched],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )


def _removable(session_dir: str) -> Path | None:
    """``session_dir`` if it is a real directory named like Ray's session folders, else None:
    the watchdog removes nothing else."""
    path = Path(session_dir)
    if not session_dir or not path.name.startswith(SESSION_PREFIX):
        return None
    if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
        return None
    return path


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    session_dir, *watched = argv
    sys.stdin.buffer.read()  # returns once the driver has closed its end or died
    for item in watched:
        pid, started = item.split(":")
        if _start_time(int(pid)) == started:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    if path := _removable(session_dir):
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
