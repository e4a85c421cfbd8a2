"""Training through Ray Tune: faults, a killed run resumed, the loopback check, a two-node cluster.

Each test starts Ray in a subprocess, so that Ray is imported only after the loopback environment
is set (runners/ray_local.py) and no Ray state leaks between tests."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import session_processes

from runners.check_loopback import Contact, contacts

ROOT = Path(__file__).parent.parent

FAULTS = textwrap.dedent(
    """
    import dataclasses, sys
    from pathlib import Path
    from nas import model_spec
    from runners.options import TrainingOptions
    from runners.backend import run_training
    from runners.tune import RayTune, train_candidate

    def faulty(config):
        # One candidate raises, one produces a NaN loss (its data normalised by a zero std),
        # the third trains normally.
        arch = config["candidate"]["arch_id"]
        if arch == "raises":
            raise RuntimeError("injected fault: the data loader broke")
        if arch == "makes-nan":
            import runners.tune as tune  # the name train_candidate loads its data through
            load = tune.load_dataset
            tune.load_dataset = lambda *a, **k: dataclasses.replace(load(*a, **k), std=(0.0,))
        train_candidate(config)

    run_dir = Path(sys.argv[1])
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = run_dir / "bireal.json"
    spec.write_text(model_spec("bireal_resnet18").to_json())
    options = TrainingOptions.from_dict(dict(
        epochs=1, width_mult=0.125, train_subset=256, eval_subset=256, max_failures=0,
        dashboard_port=int(sys.argv[2]),
    ))
    candidates = [(a, spec) for a in ("raises", "makes-nan", "fine")]
    run_training(run_dir, candidates, options, backend=RayTune(faulty))
    """
)


@pytest.mark.slow
def test_failed_trials_are_reported_while_the_others_finish(tmp_path):
    script = tmp_path / "faults.py"
    script.write_text(FAULTS)
    run_dir = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, str(script), str(run_dir), "8281"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    trained = pd.read_csv(run_dir / "trained.csv", dtype={"arch_id": str}).set_index("arch_id")
    assert trained.loc["raises", "status"] == "failed"
    assert trained.loc["raises", "error"] == "injected fault: the data loader broke"
    assert trained.loc["makes-nan", "status"] == "failed"
    assert trained.loc["makes-nan", "error"].startswith("the loss became nan at epoch 1, step 1")
    assert trained.loc["fine", "status"] == "trained"
    assert 0 <= trained.loc["fine", "top1"] <= 1 and trained.loc["fine", "epoch"] == 1


PROMOTION = textwrap.dedent(
    """
    import sys
    import tempfile
    import time
    from pathlib import Path
    from ray import tune
    from runners.backend import run_training
    from runners.options import TrainingOptions
    from runners.tune import RayTune

    run_dir, port, baseline, order = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    EPOCH_SECONDS = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    SCORES = [0.9, 0.8, 0.7, 0.6, 0.5] if order == "falling" else [0.5, 0.6, 0.7, 0.8, 0.9]
    ACCURACY = {f"c{i + 1}": a for i, a in enumerate(SCORES)} | {"base": 0.1}

    def fixed(config):
        # no training: each model reports the same accuracy every epoch, with a checkpoint of
        # its epoch that a paused and resumed trial goes on from
        arch, first = config["candidate"]["arch_id"], 1
        if (saved := tune.get_checkpoint()) is not None:
            with saved.as_directory() as folder:
                first = int((Path(folder) / "epoch").read_text()) + 1
        for epoch in range(first, 4):
            time.sleep(EPOCH_SECONDS)
            (run_dir / f"{arch}-{epoch}.mark").touch()  # trained (for a test that kills it)
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "epoch").write_text(str(epoch))
                tune.report({"epoch": epoch, "top1": ACCURACY[arch], "top5": 1.0,
                             "test_loss": 1.0, "train_loss": 1.0, "images_per_s": 1.0,
                             "seconds": 0.01, "arch_id": arch, "node": "n"},
                            checkpoint=tune.Checkpoint.from_directory(folder))

    run_dir.mkdir(parents=True, exist_ok=True)
    spec = run_dir / "spec.json"
    spec.write_text("{}")
    options = TrainingOptions.from_dict(dict(epochs=3, dashboard_port=port, max_failures=0))
    candidates = [(a, spec) for a in ACCURACY]
    run_training(run_dir, candidates, options, baseline=baseline, backend=RayTune(fixed))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("exempt", "order"), [(True, "falling"), (True, "rising"), (False, "falling")]
)
def test_successive_halving_promotes_the_best_third_never_stops_the_baseline(
    tmp_path, exempt, order
):
    """Five candidates c1..c5 start in that order, two at a time, their accuracy falling or
    rising. However they arrive at the first epoch, the best third (rounded up: 2 of 5, or 2 of
    6 with the baseline among them) go on to epoch 3 and the others stop at epoch 1; Ray's ASHA
    would promote c1, the first to arrive, when it is the worst. The baseline, the worst of all,
    trains every epoch when it is exempt (and stops like the others when it is not)."""
    script = tmp_path / "promotion.py"
    script.write_text(PROMOTION)
    run_dir = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, str(script), str(run_dir), "8283", "base" if exempt else "", order],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    trained = pd.read_csv(run_dir / "trained.csv", dtype={"arch_id": str}).set_index("arch_id")
    best = ["c1", "c2"] if order == "falling" else ["c5", "c4"]
    for arch in ("c1", "c2", "c3", "c4", "c5"):
        expected = ("trained", 3) if arch in best else ("stopped", 1)
        assert (trained.loc[arch, "status"], trained.loc[arch, "epoch"]) == expected, arch
    curves = pd.read_csv(run_dir / "curves.csv", dtype={"arch_id": str})
    assert sorted(curves[curves["arch_id"] == best[0]]["epoch"]) == [1, 2, 3]  # paused, resumed
    base = trained.loc["base"]
    if exempt:
        assert base["status"] == "trained" and base["epoch"] == 3
    else:
        assert base["status"] == "stopped" and base["epoch"] == 1


@pytest.mark.slow
def test_a_run_killed_at_the_rung_resumes_to_the_same_promotions(tmp_path):
    """SIGKILL while candidates wait at the first epoch for the others (each epoch takes 2 s,
    c1..c5 of rising accuracy): the rerun restores the experiment with a fresh scheduler, which
    reads the trials' states and promotes the same two (c5, c4); no epoch is reported twice."""
    script = tmp_path / "promotion.py"
    script.write_text(PROMOTION)
    run_dir = tmp_path / "run"
    command = [sys.executable, str(script), str(run_dir), "8284", "base", "rising"]
    proc = subprocess.Popen(
        [*command, "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while len(list(run_dir.glob("c*-1.mark"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # their reports reach the scheduler: paused at the rung
    marks = sorted(m.stem for m in run_dir.glob("c*.mark"))
    assert len(marks) >= 2 and all(m.endswith("-1") for m in marks), marks  # the rung is open
    _kill_session(proc)
    assert not (run_dir / "trained.csv").exists()

    resumed = subprocess.run(
        [*command, "0"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trained = pd.read_csv(run_dir / "trained.csv", dtype={"arch_id": str}).set_index("arch_id")
    promoted = set(trained.index[(trained["status"] == "trained") & (trained["epoch"] == 3)])
    assert promoted == {"c5", "c4", "base"}
    assert set(trained.index[trained["status"] == "stopped"]) == {"c1", "c2", "c3"}
    trials = run_dir / "tune"
    assert len(list(trials.glob("train-*"))) == 1  # the same experiment, restored
    for trial in trials.glob("train-*/candidate-*"):
        epochs = [r["epoch"] for r in _reports(trial)]
        assert epochs in ([1], [1, 2, 3]), (trial.name, epochs)  # no epoch twice


def _search(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nas.search", "--no-progress", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _reports(trial_dir: Path) -> list[dict]:
    result = trial_dir / "result.json"
    if not result.is_file():
        return []
    return [json.loads(line) for line in result.read_text().splitlines() if line.strip()]


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the command and every process it started (its session), and see them gone."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while session_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    assert not session_processes(proc.pid)


@pytest.mark.slow
def test_sigkill_during_training_then_resume_retrains_nothing_finished(tmp_path):
    """Two candidates trained one after the other (each asks for both CPUs); SIGKILL of the
    command and all its processes once the first has finished; --resume trains only the second,
    and no epoch is reported twice."""
    run_dir = tmp_path / "run"
    args = [
        "--budget", "0.16GFLOPs", "--space", "resnet", "--trials", "12", "--train-top", "2",
        "--epochs", "2", "--train-subset", "400", "--width-mult", "0.125",
        "--cpus-per-trial", "2", "--dashboard-port", "8282", "--out", str(run_dir),
        "--baseline", "none",
    ]  # fmt: skip
    proc = _search(*args)
    tune_dir = run_dir / "tune"  # its experiment: train-<hash of the candidates>
    deadline = time.time() + 400
    finished = None
    while finished is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        for trial in tune_dir.glob("train-*/candidate-*") if tune_dir.is_dir() else []:
            if len(_reports(trial)) == 2:
                finished = trial
    assert finished is not None, "no trial finished in time"
    _kill_session(proc)
    assert not (run_dir / "trained.csv").exists()
    before = _reports(finished)

    resumed = subprocess.run(
        [sys.executable, "-m", "nas.search", "--no-progress", "--resume", str(run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _reports(finished) == before  # the finished trial was not trained again
    trained = pd.read_csv(run_dir / "trained.csv", dtype={"arch_id": str})
    # successive halving promotes one of the two (ceil(2 / 3)); the other stops at epoch 1
    assert set(trained["status"]) <= {"trained", "stopped"} and len(trained) == 2
    assert len(list(tune_dir.glob("train-*"))) == 1  # the same experiment, restored
    for trial in tune_dir.glob("train-*/candidate-*"):
        epochs = [r["epoch"] for r in _reports(trial)]
        assert epochs in ([1], [1, 2])  # each epoch reported once: nothing trained twice


def test_strace_log_contacts():
    """The strace parser against lines in strace's own format."""
    log = [
        "812 connect(3, {sa_family=AF_INET, sin_port=htons(6379), "
        'sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '812 connect(5, {sa_family=AF_UNIX, sun_path="/tmp/ray/session/sockets/raylet"}, 110) = 0',
        "813 connect(7, {sa_family=AF_INET6, sin6_port=htons(8265), sin6_flowinfo=htonl(0), "
        'inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        '813 sendto(4, "\\24\\0", 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, '
        "12) = 20",
        '814 sendto(9, "abc", 3, MSG_NOSIGNAL, NULL, 0) = 3',
        "815 connect(8, {sa_family=AF_INET, sin_port=htons(53), "
        'sin_addr=inet_addr("8.8.8.8")}, 16) = 0',
        "815 connect(8, {sa_family=AF_INET, sin_port=htons(443), "
        'sin_addr=inet_addr("192.0.2.2")}, 16 <unfinished ...>',
        "816 connect(6, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), "
        'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        "817 connect(6, {sa_family=AF_INET, sin_port=htons(53), "
        'sin_addr=inet_addr("127.0.0.53")}, 16) = 0',
    ]
    found = contacts(log)
    assert found == [
        Contact("AF_INET", "127.0.0.1", 6379),
        Contact("AF_UNIX"),
        Contact("AF_INET6", "::ffff:127.0.0.1", 8265),
        Contact("AF_NETLINK"),
        Contact("AF_INET", "8.8.8.8", 53),
        Contact("AF_INET", "192.0.2.2", 443),
        Contact("AF_INET6", "::1", 80),
        Contact("AF_INET", "127.0.0.53", 53),
    ]
    assert [c.allowed for c in found] == [True, True, True, True, False, False, True, False]


NO_STRACE = "strace is not installed (./setup.sh installs it; or apt-get install strace)"


@pytest.mark.slow
def test_local_main_job_stays_on_loopback(tmp_path, require):
    """The repo's check: the main job under strace contacts loopback only, and the dashboard
    answers /api/version on 127.0.0.1 and listens there only. Without strace: skipped, except
    under CI, where it fails."""
    require(shutil.which("strace"), NO_STRACE)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "runners.check_loopback",
            "--dashboard-port",
            "8283",
            "--keep",
            str(tmp_path),
            "--",
            "--budget",
            "0.16GFLOPs",
            "--space",
            "resnet",
            "--trials",
            "8",
            "--train-top",
            "1",
            "--epochs",
            "1",
            "--train-subset",
            "128",
            "--width-mult",
            "0.125",
            "--no-progress",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "passed: only loopback" in out.stdout
    assert '"ray_version": "2.60.0"' in out.stdout
    assert "dashboard listens on: 127.0.0.1" in out.stdout


@pytest.mark.slow
def test_two_node_cluster_on_loopback_trains_through_ray_address(tmp_path, require):
    """`ray start --head` plus a second node joining it, both on 127.0.0.1 with one CPU each;
    nas.search --ray-address trains two candidates at once, one on each node; under strace,
    no process of the cluster or the job contacts anything outside loopback."""
    require(shutil.which("strace"), NO_STRACE)
    # fmt: off
    command = [
        sys.executable, "-m", "runners.check_loopback", "--cluster", "2",
        "--dashboard-port", "8285", "--keep", str(tmp_path), "--",
        "--budget", "0.16GFLOPs", "--space", "resnet", "--trials", "12", "--train-top", "2",
        "--epochs", "1", "--train-subset", "200", "--width-mult", "0.125", "--no-progress",
        "--baseline", "none",
    ]
    # fmt: on
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "node 1 up (worker)" in out.stdout and "passed: only loopback" in out.stdout
    trained = pd.read_csv(tmp_path / "run" / "trained.csv", dtype={"arch_id": str})
    assert list(trained["status"]) == ["trained", "trained"]
    assert trained["node"].nunique() == 2  # one CPU per node: the trials ran on both nodes
    # every process of the cluster names its address (--gcs-address=127.0.0.1:6390, ...)
    leftovers = subprocess.run(["pgrep", "-f", "127.0.0.1:6390"], capture_output=True)
    assert leftovers.stdout.strip() == b""  # the nodes' processes are gone


def test_a_busy_dashboard_port_gives_way_to_a_free_one(capsys):
    """A second Ray session on this machine (a search beside the study) must not fail on the
    dashboard's default port: ray_session asks for a free port instead, and says so."""
    import socket

    from runners.ray_local import dashboard_port_free

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        port = dashboard_port_free(busy)
        assert port != busy
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", port))  # free indeed
        assert f"127.0.0.1:{busy} is in use" in capsys.readouterr().err
    assert dashboard_port_free(busy) == busy  # released: kept as asked
    assert capsys.readouterr().err == ""
