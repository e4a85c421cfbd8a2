"""``python -m runners.local_cluster -- <nas.search flags>``: a multi-node Ray cluster on this
machine, on 127.0.0.1, and the job run on it through ``--ray-address``.

This is how the product scales past one machine, rehearsed on one: ``ray start --head`` starts
the head node, each further ``ray start --address`` joins it as another node (here on the same
host, each with its own raylet and ``--num-cpus``), and ``nas.search --ray-address`` sends the
training trials to the cluster. On a real cluster run the same two ``ray start`` commands on the
machines (with their own addresses) and pass the head's address to ``nas.search``.

Every node is kept on loopback as in :mod:`runners.ray_local`, with token authentication on (a
fresh token in the cluster's HOME, handed to the job through ``RAY_AUTH_TOKEN_PATH``). The nodes
are started with ``--block`` and stopped by signalling the processes this command started, never
with ``ray stop`` (which would stop every Ray on the machine).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from runners.ray_local import loopback_env, token_file

JOB = [
    "--budget", "0.16GFLOPs", "--space", "resnet", "--trials", "30", "--train-top", "2",
    "--epochs", "1", "--train-subset", "2000", "--width-mult", "0.25", "--no-progress",
]  # fmt: skip
# `ray start` for a node that joins a cluster, on loopback. The loopback recipe's
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes `ray start --address` refuse to start ("multi-node
# clusters are not supported"), and with it set to 1 Ray replaces --node-ip-address 127.0.0.1 by
# the host's outside address (found by a UDP connect to 8.8.8.8). This launcher lifts the refusal
# in the `ray start` process only and keeps 127.0.0.1 (no probe of 8.8.8.8); the node's own
# processes still see the recipe's environment. Ray 2.60 internals: ray._private.ray_constants
# and ray._private.services.
_JOIN = (
    "import sys; import ray._private.ray_constants as c; import ray._private.services as s; "
    "c.ENABLE_RAY_CLUSTER = True; s.resolve_ip_for_localhost = lambda host: host; "
    "s.node_ip_address_from_perspective = lambda address=None: '127.0.0.1'; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)
_COUNT_NODES = (
    "import ray; ray.init(address='{address}', log_to_driver=False); "
    "print(sum(n['Alive'] for n in ray.nodes()))"
)


def cluster_env(home: Path) -> dict[str, str]:
    """The environment of every node and client of the cluster: loopback, and a token."""
    env = {**os.environ, **loopback_env(home), "RAY_AUTH_MODE": "token"}
    token = token_file(home)
    if not token.is_file():
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    env["RAY_AUTH_TOKEN_PATH"] = str(token)
    return env


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _COUNT_NODES.format(address=address)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = out.stdout.strip().splitlines()
    return int(lines[-1]) if out.returncode == 0 and lines and lines[-1].isdigit() else 0


@contextmanager
def local_cluster(
    home: Path, nodes: int = 2, cpus_per_node: int = 1, port: int = 6390, dashboard_port: int = 8266
) -> Iterator[tuple[str, dict[str, str]]]:
    """Start a head node and ``nodes - 1`` worker nodes on 127.0.0.1; yields the cluster
    address and the environment a client needs. All nodes are stopped on exit."""
    env = cluster_env(home)
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus_per_node)]
    head = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--port", str(port),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--disable-usage-stats", *common,
    ]  # fmt: skip
    started: list[subprocess.Popen] = []
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for k in range(nodes):
            join = [sys.executable, "-c", _JOIN, "start", "--address", address, *common]
            command = head if k == 0 else join
            log = open(logs / f"node{k}.log", "w")  # noqa: SIM115 (closed with the process)
            started.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            deadline = time.time() + 90
            while _alive_nodes(address, env) < k + 1:
                if started[-1].poll() is not None or time.time() > deadline:
                    raise RuntimeError(
                        f"node {k} did not join the cluster at {address}; see {logs}/node{k}.log"
                    )
                time.sleep(1)
            print(f"node {k} up ({'head' if k == 0 else 'worker'}), cluster {address}", flush=True)
        yield address, env
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
        for process in reversed(started):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.local_cluster", description=__doc__)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--port", type=int, default=6390, help="the head's GCS port")
    parser.add_argument("--dashboard-port", type=int, default=8266)
    parser.add_argument("--home", help="the cluster's HOME (token, logs); default a temp dir")
    parser.add_argument("job", nargs="*", help="nas.search flags after --")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    home = Path(args.home or tempfile.mkdtemp(prefix="ray-cluster-"))
    with local_cluster(home, args.nodes, args.cpus_per_node, args.port, args.dashboard_port) as (
        address,
        env,
    ):
        job = [sys.executable, "-m", "nas.search", *(args.job or JOB), "--ray-address", address]
        print("running:", " ".join(job), flush=True)
        return subprocess.run(job, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
