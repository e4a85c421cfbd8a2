"""Training the top candidates through Ray Tune.

The candidates run as fixed configurations in one ``Tuner``: synchronous successive halving
(:mod:`runners.promotion`) stops the weak ones after their first epoch. Each trial has an actor
of its own, which the Ray dashboard names after the trial (its "Repr" column), asks for
``cpus_per_trial`` CPUs and a (fractional) ``gpus_per_trial``, and trains its candidate's proxy
(:mod:`runners.train`), reporting loss, top-1, top-5 and images per second every epoch with a
``tune.Checkpoint``. ``FailureConfig(max_failures)`` retries a crashed trial from its last
checkpoint, and the experiment lives in ``RUN_DIR/tune`` so a killed run is restored without
training finished trials again.

The experiment's configurations carry each candidate's spec as JSON text, not a path, and the
experiment is named after its candidates (``train-<hash>``): a run directory that is moved or
copied restores its own experiment, and a resumed run whose top candidates changed (``--trials``
extended the search) trains the new ones instead of restoring the old. A restored experiment
retries its errored trials, so a fault that was fixed (a corrupt image replaced) is trained again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nas import cli
from nas.cli import duration
from nas.core.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from nas.core.model_dir import METRICS, SPEC, WEIGHTS
from nas.core.spec import ArchSpec
from results.run import EPOCH_METRICS
from runners.backend import Candidate
from runners.datasets import load_dataset
from runners.options import TrainingOptions
from runners.ray_local import ray_session, token_file
from runners.train import proxy_spec, train

EXTRA_PREFIX = "probe_"  # reported metrics that a wrapping trainable adds (kept in the rows)


def train_candidate(
    config: dict[str, Any], probe: Callable[..., dict[str, float]] | None = None
) -> None:
    """The Ray Tune trainable: trains one candidate's proxy, reporting every epoch. ``probe``
    (for a wrapping trainable): ``probe(spec, splits, options)`` measures the proxy network
    before training; its metrics go into every report, their names prefixed with
    :data:`EXTRA_PREFIX`."""
    # Ray, in the trial that runs on a worker (seconds to load)
    import ray  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415

    config = config["candidate"]
    options = TrainingOptions.from_dict(config["options"])
    splits = load_dataset(options.data.dataset, options.data.data_dir)
    spec = proxy_spec(
        ArchSpec.from_json(config["spec"]),
        splits,
        options.data.width_mult,
        stem_stride=options.data.stem_stride,
    ).replace(padding=options.data.padding)
    extra = {
        EXTRA_PREFIX + k: v for k, v in (probe(spec, splits, options) if probe else {}).items()
    }
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / SPEC).write_text(spec.to_json())  # the network as trained, beside it
        state = Path(folder) / "state.pt"
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as saved:
                shutil.copy(Path(saved) / "state.pt", state)

        def report(stats, model, optimizer) -> None:
            tune.report(
                {
                    **dataclasses.asdict(stats),
                    "arch_id": config["arch_id"],
                    "node": ray.get_runtime_context().get_node_id()[:12],
                    **extra,
                },
                checkpoint=tune.Checkpoint.from_directory(folder),
            )

        train(spec, splits, options.recipe, on_epoch=report, checkpoint=state)


class RayTune:
    """The Ray Tune backend (:class:`runners.backend.TrainingBackend`): a local Ray on loopback
    (:mod:`runners.ray_local`), or the cluster at the options' ``ray_address``. ``trainable``:
    what each trial runs (default :func:`train_candidate`; the study's adds its proxies)."""

    def __init__(self, trainable: Callable[[dict[str, Any]], None] = train_candidate):
        self.trainable = trainable

    @contextlib.contextmanager
    def session(self, home: Path, options: TrainingOptions) -> Iterator[str | None]:
        where = options.resources
        with ray_session(home, where.ray_address, dashboard_port=where.dashboard_port) as url:
            if url:
                print(
                    f"Ray dashboard: {url} (127.0.0.1 only); its access token is in "
                    f"{token_file(home)}, or run: HOME={home} ray get-auth-token",
                    file=sys.stderr,
                    flush=True,
                )
            yield url

    def train(
        self,
        storage: Path,
        candidates: Sequence[Candidate],
        options: TrainingOptions,
        *,
        stop_early: bool = True,
        baseline: str = "",
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        return tune_candidates(storage, candidates, options, self.trainable, stop_early, baseline)


def tune_candidates(
    storage: Path,
    candidates: Sequence[Candidate],
    options: TrainingOptions,
    trainable: Callable[[dict[str, Any]], None] = train_candidate,
    stop_early: bool = True,
    baseline: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``candidates`` as one Tune experiment under ``storage``, in the Ray session already
    started (:meth:`RayTune.session`). Returns one row per candidate and their learning curves
    (one row per epoch). An experiment of the same candidates and options found under
    ``storage`` is restored, its finished trials kept. ``stop_early``: successive halving
    (:class:`runners.promotion.PromoteCandidates`: every candidate trains one epoch, then the
    best third of them go on to the full recipe; the search's candidates), the ``baseline`` arch
    id never stopped; without it every trial trains all its epochs (the benchmark study). Each
    candidate's trained network is written to its ``export`` folder (:func:`export_model`); its
    ``name`` is what the progress lines and Tune call its trial (``#4``, ``bireal_resnet18``;
    default ``candidate-<arch id>``, also the trials' folder names)."""
    # only now: Ray reads its environment (the loopback recipe) when it is imported
    from ray import tune  # noqa: PLC0415
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback  # noqa: PLC0415
    from ray.tune.schedulers import FIFOScheduler  # noqa: PLC0415
    from ray.tune.trainable import wrap_function  # noqa: PLC0415

    from runners.promotion import PromoteCandidates  # noqa: PLC0415 - it imports Ray

    storage = storage.resolve()

    started, epochs_done = time.monotonic(), {}  # the epochs each trial reported, this session
    last_epoch: dict[str, int] = {}

    class Progress(tune.Callback):
        """One line per reported epoch and per finished trial, instead of Tune's tables; where
        every trial trains all its epochs, the time left at this session's pace."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            name = _trial_name(trial)
            epochs_done[name] = epochs_done.get(name, 0) + 1
            last_epoch[name] = result["epoch"]
            left = ""
            if not stop_early:
                remaining = len(candidates) * options.recipe.epochs - sum(last_epoch.values())
                pace = (time.monotonic() - started) / sum(epochs_done.values())
                left = f"; {duration(remaining * pace)} left" if remaining else ""
            print(
                f"  {name} epoch {result['epoch']}/{options.recipe.epochs}: "
                f"test top-1 {result['top1']:.4f}, loss {result['test_loss']:.3f}, "
                f"{result['images_per_s']:.0f} images/s{left}",
                flush=True,
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            print(f"  {_trial_name(trial)} failed", flush=True)

    class NamedTrainable(wrap_function(trainable)):
        """The trainable, whose actor Ray names by its ``__repr__``: the trial's name."""

        def __repr__(self) -> str:
            return self.trial_name

    resources = tune.with_resources(
        NamedTrainable,
        {"cpu": options.resources.cpus_per_trial, "gpu": options.resources.gpus_per_trial},
    )
    space = [
        {"arch_id": c.arch_id, "spec": c.spec, "options": options.to_dict()}
        | ({"baseline": True} if c.arch_id == baseline else {})
        for c in candidates
    ]
    name = "train-" + hashlib.sha256(json.dumps(space, sort_keys=True).encode()).hexdigest()[:8]
    for entry, c in zip(space, candidates, strict=True):  # not what identifies the experiment
        entry["name"] = c.name or _folder_name(c.arch_id)
    exports = {c.arch_id: c.export for c in candidates if c.export is not None}
    path = storage / name
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(str(path), trainable=resources, resume_errored=True)
    else:
        scheduler = (
            PromoteCandidates(max_t=options.recipe.epochs, rung=1, reduction_factor=3)
            if stop_early
            else FIFOScheduler()
        )
        tuner = tune.Tuner(
            resources,
            param_space={"candidate": tune.grid_search(space)},
            tune_config=tune.TuneConfig(
                metric="top1",
                mode="max",
                reuse_actors=False,  # an actor is one trial, named after it
                scheduler=scheduler,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_folder,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                verbose=0,
                # the results Tune reads back, and no TensorBoard files (nor the hint to open them
                # in a tool the project does not install): see _no_tensorboard
                callbacks=[Progress(), CSVLoggerCallback(), JsonLoggerCallback()],
                failure_config=tune.FailureConfig(max_failures=options.resources.max_failures),
            ),
        )
    with _stop_on_signal(), _no_tensorboard():
        grid = tuner.fit()
    rows, curves = [], []
    for result in grid:
        if not result.config:  # an interrupted run: a trial that never started (added below)
            continue
        config = result.config["candidate"]
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        epochs_done = metrics.get("epoch") or 0
        row = {
            "arch_id": config["arch_id"],
            # "stopped": successive halving ended it early, its accuracy is that of its last
            # epoch; "not started": the run was interrupted before it trained an epoch
            "status": "failed"
            if result.error
            else (
                "trained"
                if epochs_done >= options.recipe.epochs
                else "stopped"
                if epochs_done
                else "not started"
            ),
            "error": _reason(result.error),
        }
        for key in (*EPOCH_METRICS, "images_per_s", "node"):
            row[key] = metrics.get(key)
        row |= {k: v for k, v in metrics.items() if k.startswith(EXTRA_PREFIX)}
        row["train_seconds"] = (
            float(history["seconds"].sum()) if history is not None and len(history) else None
        )
        # when the trial trained, in Unix seconds: its first epoch began, its last one ended
        if history is not None and len(history) and "timestamp" in history:
            first = history.iloc[0]
            row["started"] = float(first["timestamp"] - first.get("time_this_iter_s", 0.0))
            row["ended"] = float(history["timestamp"].iloc[-1])
        rows.append(row)
        if config["arch_id"] in exports and result.checkpoint is not None and not result.error:
            with result.checkpoint.as_directory() as saved:
                baseline_row = {**row, "baseline": config["arch_id"] == baseline}
                export_model(Path(saved), exports[config["arch_id"]], baseline_row)
        if history is not None and len(history):
            for _, h in history.iterrows():
                curves.append(
                    {
                        "arch_id": config["arch_id"],
                        **{k: h[k] for k in EPOCH_METRICS},
                    }
                )
    done = {row["arch_id"] for row in rows}
    rows += [
        {"arch_id": c.arch_id, "status": "not started", "error": ""}
        for c in candidates
        if c.arch_id not in done
    ]
    return pd.DataFrame(rows), pd.DataFrame(curves)


def export_model(checkpoint: Path, folder: Path, row: dict[str, Any]) -> None:
    """A trial's last checkpoint as a network a user takes away (:mod:`nas.core.model_dir`): the
    spec as trained, its weights alone, and ``row``'s figures."""
    import torch  # noqa: PLC0415 - loaded by the training code already

    if not ((checkpoint / "state.pt").is_file() and (checkpoint / SPEC).is_file()):
        return  # a trainable of its own (the tests'), whose checkpoint is no network
    state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)["model"]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / SPEC, (checkpoint / SPEC).read_text())
    atomic_write_bytes(folder / WEIGHTS, buffer.getvalue())
    kept = ("arch_id", "baseline", "status", "epoch", "top1", "top5")
    metrics = {k: v for k, v in row.items() if k in kept}
    atomic_write_json(folder / METRICS, metrics)


@contextlib.contextmanager
def _environment(key: str, value: str) -> Iterator[None]:
    """The environment variable ``key`` set to ``value`` inside, as it was after."""
    before = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _no_tensorboard() -> contextlib.AbstractContextManager:
    """Tune without the loggers it adds by default (CSV, JSON and, where tensorboardX is
    installed, TensorBoard); the run's own callbacks name the first two."""
    return _environment("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[None]:
    """Ctrl-C or SIGTERM during ``Tuner.fit`` ends it at once, as a SIGKILL would, without
    Tune's own graceful stop: that stop marks the candidates held at the halving's rung as
    terminated, and a resumed run would then promote others. The experiment's periodic state
    and the trials' checkpoints are what a resume restores (tested); the Ray session's clean-up
    ends the workers."""

    def stop(signum: int, frame) -> None:
        if _gcs_ended():  # the signal went to the whole process group: Tune's clean-up would
            cli.end_now(signum)  # wait a minute on the GCS; the session's watchdog ends Ray
        raise cli.interrupted(signum)

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, stop)
    try:
        with _environment("TUNE_DISABLE_SIGINT_HANDLER", "1"):  # ours instead of Tune's
            yield
    except SystemError as e:  # raised inside Ray's Cython code, which wraps it as a SystemError
        cause = e.__cause__ or e.__context__
        if isinstance(cause, (KeyboardInterrupt, cli.Interrupted)):
            raise cause from None
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _gcs_ended(wait: float = 1.0) -> bool:
    """Whether Ray's GCS stops answering within ``wait`` seconds (it ends on a SIGTERM sent to
    the process group; it ignores SIGINT)."""
    import ray  # noqa: PLC0415 - loaded by the session already

    host, port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.2).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _folder_name(arch_id: str) -> str:
    return f"candidate-{arch_id}"


def _trial_folder(trial) -> str:
    return _folder_name(trial.config["candidate"]["arch_id"])


def _trial_name(trial) -> str:
    candidate = trial.config["candidate"]
    return candidate.get("name") or _folder_name(candidate["arch_id"])


def _reason(error: BaseException | None) -> str:
    """One line: the original exception's type and message."""
    if error is None:
        return ""
    cause = error
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause
    text = str(cause).strip().splitlines()
    last = next((line for line in reversed(text) if line.strip()), type(cause).__name__)
    return last.strip()
