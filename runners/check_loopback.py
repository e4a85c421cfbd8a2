"""``python -m runners.check_loopback``: prove that the local main job stays on loopback.

Runs ``python -m nas.search`` (search, then training through a local Ray) under
``strace -f -e trace=connect,sendto`` and fails (exit code 1) if any process of it contacts an
address outside 127.0.0.0/8 (IPv6: ``::1`` and IPv4-mapped 127.x). Unix sockets, netlink (the
kernel) and ``AF_UNSPEC`` (a UDP socket disconnecting) are local and allowed; a DNS query (port
53) fails even to a loopback resolver, because the resolver forwards it. While the job trains,
the Ray dashboard must answer ``/api/version`` on 127.0.0.1 (with the session's access token) and
listen on loopback only (``/proc/net/tcp``, ``/proc/net/tcp6``). docs/design.md section 9.

Arguments after ``--`` replace the job's default flags (a small search and one short training).
With ``--cluster N`` the job runs on an N-node cluster on this machine
(:mod:`runners.local_cluster`), and every node's processes are traced too.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from results.run import RAY_HOME
from runners.ray_local import dashboard_port_free

JOB = [
    "--budget", "0.16GFLOPs", "--trials", "30", "--train-top", "1", "--epochs", "1",
    "--train-subset", "512", "--no-progress",
]  # fmt: skip
LOCAL_FAMILIES = {"AF_UNIX", "AF_NETLINK", "AF_UNSPEC"}
_CALL = re.compile(r"\b(connect|sendto)\(")
_FAMILY = re.compile(r"sa_family=(AF_\w+)")
_INET = re.compile(r'sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"')


@dataclass(frozen=True)
class Contact:
    """One address a process tried to reach."""

    family: str
    address: str = ""
    port: int | None = None

    @property
    def allowed(self) -> bool:
        if self.family in LOCAL_FAMILIES:
            return True
        if self.family not in ("AF_INET", "AF_INET6") or self.port == 53:
            return False
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback

    def __str__(self) -> str:
        if self.family in ("AF_INET", "AF_INET6"):
            return f"{self.family} {self.address}:{self.port}"
        return self.family


def contacts(strace_lines: Iterable[str]) -> list[Contact]:
    """The addresses in ``connect`` and ``sendto`` calls of an strace log (a ``sendto`` on a
    connected socket names no address and is covered by its ``connect``)."""
    found = []
    for line in strace_lines:
        if not _CALL.search(line) or "sa_family=" not in line:
            continue
        family = _FAMILY.search(line).group(1)
        match = _INET.search(line) if family == "AF_INET" else _INET6.search(line)
        if family in ("AF_INET", "AF_INET6") and match is None:
            found.append(Contact(family, "unparsed: " + line.strip()[:120]))
        elif match is not None:
            found.append(Contact(family, match.group(2), int(match.group(1))))
        else:
            found.append(Contact(family))
    return found


def _programs(strace_lines: Iterable[str]) -> dict[str, str]:
    """pid (or thread id) -> the program it runs (execve arguments; a new thread or child
    inherits its parent's until it runs its own), from an strace -f log."""
    programs: dict[str, str] = {}
    for line in strace_lines:
        pid, _, call = line.partition(" ")
        call = call.strip()
        if call.startswith("execve(") and "= -1" not in call:
            programs[pid] = call[7:200]
        elif call.startswith(("clone", "fork", "vfork")) and "= " in call:
            child = call.rsplit("= ", 1)[1].split()[0]
            if child.isdigit():
                programs.setdefault(child, programs.get(pid, "?"))
        elif call.startswith("<... clone") and "= " in call:
            child = call.rsplit("= ", 1)[1].split()[0]
            if child.isdigit():
                programs.setdefault(child, programs.get(pid, "?"))
    return programs


def listeners(port: int) -> list[str]:
    """Local addresses listening on TCP ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(str(ipaddress.ip_address(raw)))
    return found


def _on_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def dashboard_version(port: int, token_file: Path) -> dict | None:
    """``/api/version`` of the dashboard on 127.0.0.1:``port``, or None while it does not answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/version")
    if token_file.is_file():
        request.add_header("Authorization", f"Bearer {token_file.read_text().strip()}")
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.check_loopback", description=__doc__)
    parser.add_argument("--dashboard-port", type=int, default=8265)
    parser.add_argument("--keep", metavar="DIR", help="keep the run and the strace log here")
    parser.add_argument("--cluster", type=int, metavar="N", help="run on an N-node local cluster")
    parser.add_argument("job", nargs="*", help="nas.search flags after --")
    args = parser.parse_args(argv)
    if shutil.which("strace") is None:
        print("check_loopback: strace is not installed (apt-get install strace)", file=sys.stderr)
        return 2
    # the port the job will get: a busy one gives way to a free one (runners.ray_local)
    args.dashboard_port = dashboard_port_free(args.dashboard_port)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="loopback-"))
    work.mkdir(parents=True, exist_ok=True)
    run_dir, log = work / "run", work / "strace.log"
    job = [*(args.job or JOB), "--out", str(run_dir)]
    trace = [
        "strace",
        "-f",
        "-qq",
        "-s",
        "200",
        "-e",
        "trace=connect,sendto,execve,clone,clone3,fork,vfork",
        "-o",
        str(log),
    ]
    command = [*trace, sys.executable]
    if args.cluster:
        home = work / "cluster"
        command += ["-m", "runners.local_cluster", "--nodes", str(args.cluster)]
        command += ["--home", str(home), "--dashboard-port", str(args.dashboard_port), "--", *job]
        token_file = home / ".ray" / "auth_token"
    else:
        command += ["-m", "nas.search", *job, "--dashboard-port", str(args.dashboard_port)]
        token_file = run_dir / RAY_HOME / ".ray" / "auth_token"
    print("running:", " ".join(command), flush=True)
    process = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    version, bound = None, set()
    while process.poll() is None:
        if version is None:
            version = dashboard_version(args.dashboard_port, token_file)
        if version is not None:
            bound.update(listeners(args.dashboard_port))
        time.sleep(1)
    failures = []
    if process.returncode != 0:
        failures.append(f"the job failed (exit code {process.returncode})")
    lines = log.read_text(errors="replace").splitlines()
    seen = Counter(contacts(lines))
    print("addresses contacted (calls):")
    for contact, n in sorted(seen.items(), key=lambda kv: str(kv[0])):
        print(f"  {'ok ' if contact.allowed else 'BAD'} {contact}  ({n})")
        if not contact.allowed:
            failures.append(f"contacted {contact}")
    programs = _programs(lines)
    for line in lines:
        found = contacts([line])
        if found and not found[0].allowed:
            pid = line.split()[0]
            print(f"  {found[0]} by pid {pid}: {programs.get(pid, '?')}")
    if version is None:
        failures.append(f"the dashboard never answered on 127.0.0.1:{args.dashboard_port}")
    else:
        print(f"dashboard /api/version on 127.0.0.1:{args.dashboard_port}: {json.dumps(version)}")
        print(f"dashboard listens on: {', '.join(sorted(bound)) or '-'}")
        failures += [f"the dashboard listens on {a}" for a in bound if not _on_loopback(a)]
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("passed: only loopback, Unix sockets and netlink were contacted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
