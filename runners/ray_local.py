"""A Ray session kept on loopback: local by default, or a cluster named by its address.

On these machines Ray must never reach an address outside 127.0.0.0/8 (docs/design.md section 9). By
default each ``ray.init`` probes cloud metadata, uses the machine's non-loopback address for its
own gRPC and listens on all interfaces. What keeps it on loopback, checked with ``strace``:
usage stats off (and their "disabled" report sent to a closed loopback port),
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (the node address becomes 127.0.0.1), a
HOME holding ``ray_bootstrap_config.yaml`` with ``{}`` (no metadata probe), the dashboard on
127.0.0.1, and ``address="local"`` so that a stray cluster is never joined. Binding to 127.0.0.1
is also the safe default for users: the dashboard and jobs API run code for whoever reaches them.

The access token that Ray 2.60 writes for a new local cluster is a credential (whoever holds it can
run code as this user through the dashboard): its directories are made 0700 before Ray starts and
the file 0600 once Ray has written it.

A local session's processes and its ``session_*`` folder end with the process that started it,
whatever ends that process (:mod:`runners.ray_guard`).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runners.ray_guard import guard

LOOPBACK_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # A `ray start` head (not ray.init) sends a "usage stats disabled" report to
    # usage-stats.ray.io even with stats off; point it at a closed loopback port instead.
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
}
TOKEN_ENV = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def token_file(home: Path) -> Path:
    """Where a local session keeps its dashboard access token (Ray 2.60 turns token
    authentication on for a new local cluster and writes the token to ``~/.ray/auth_token``)."""
    return home / ".ray" / "auth_token"


def private_home(home: Path) -> None:
    """``home`` and its ``.ray`` directory, readable by this user alone (0700)."""
    for folder in (home, token_file(home).parent):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)


def loopback_env(home: Path) -> dict[str, str]:
    """The environment that keeps Ray's processes on loopback, with HOME at ``home`` (private)."""
    private_home(home)
    (home / "ray_bootstrap_config.yaml").write_text("{}\n")
    return {**LOOPBACK_ENV, "HOME": str(home.resolve())}


def dashboard_port_free(port: int) -> int:
    """``port`` if nothing listens on 127.0.0.1:port, else a free one, said on stderr (another
    Ray session, a second search or the study, holds the default 8265)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return port
        except OSError:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
    print(
        f"note: 127.0.0.1:{port} is in use (another Ray dashboard?); this session's dashboard "
        f"is on port {free}",
        file=sys.stderr,
    )
    return free


@contextmanager
def ray_session(
    home: Path,
    address: str | None = None,
    cpus: int | None = None,
    gpus: int | None = None,
    dashboard_port: int = 8265,
) -> Iterator[str | None]:
    """Start (or join, with ``address``) Ray; yields the dashboard URL of a local session.

    Ray must not have been imported before: it reads these variables at import time."""
    saved = {k: os.environ.get(k) for k in (*LOOPBACK_ENV, "HOME", *TOKEN_ENV)}
    user_token = token_file(Path.home())
    os.environ.update(loopback_env(home))
    if address and not any(os.environ.get(k) for k in TOKEN_ENV) and user_token.is_file():
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(user_token)  # the user's token for the cluster
    import ray  # noqa: PLC0415 - loaded once the loopback environment is set (Ray reads it on import)

    watchdog = None
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
            url = None
        else:
            info = ray.init(
                address="local",
                num_cpus=cpus,
                num_gpus=gpus,
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                dashboard_port=dashboard_port_free(dashboard_port),
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
            )
            url = f"http://{info.dashboard_url}" if info.dashboard_url else None
            watchdog = guard(info.address_info.get("session_dir"))
            if token_file(home).is_file():
                os.chmod(token_file(home), 0o600)
        yield url
    finally:
        ray.shutdown()
        if watchdog is not None:  # it ends what is left of the session and removes its folder
            watchdog.stdin.close()
            watchdog.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
