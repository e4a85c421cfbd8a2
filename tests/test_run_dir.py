"""A run directory protects itself: one process at a time, paths relative to it, no silent
overwrite, ``--resume`` that refuses contradicting flags, a damaged study refused in one line."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from runners.options import TrainingOptions

# every test runs the search command: most of them a whole search, the others one process per
# bad flag (about 2 s each)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
SEARCH = [sys.executable, "-m", "nas.search", "--no-progress", "--train-top", "0"]


def _search(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SEARCH, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def _one_line_error(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("nas.search: error: "), out.stderr
    for word in words:
        assert word in out.stderr, (word, out.stderr)


def _trials(run: Path, name: str | None = None) -> list:
    study = optuna.load_study(study_name=name or run.name, storage=f"sqlite:///{run / 'study.db'}")
    return study.trials


def _files(run: Path) -> dict[str, bytes]:
    """Every file of a run but its lock (which records the pid of its last holder)."""
    files = sorted(p for p in run.rglob("*") if p.is_file() and p.name != ".lock")
    return {str(p.relative_to(run)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A finished 20-trial run."""
    run = tmp_path_factory.mktemp("runs") / "done"
    out = _search("--budget", "0.16GFLOPs", "--trials", "20", "--seed", "2", "--out", str(run))
    assert out.returncode == 0, out.stderr
    return run


def test_settings_name_the_study_relative_to_the_run(done):
    settings = json.loads((done / "settings.json").read_text())
    assert settings["storage"] == "" and str(done) not in (done / "settings.json").read_text()


def test_copied_run_resumes_into_its_own_database(done, tmp_path):
    copy = tmp_path / "copy-of-done"  # another name: the study keeps the name it was made with
    shutil.copytree(done, copy)
    before = (done / "study.db").read_bytes()
    out = _search("--resume", str(copy), "--trials", "30")
    assert out.returncode == 0, out.stderr
    assert "extending the run from 20 to 30 trials" in out.stderr
    assert len(_trials(copy, "done")) == 30 and len(_trials(done)) == 20
    assert (done / "study.db").read_bytes() == before  # the original is untouched
    assert json.loads((copy / "settings.json").read_text())["trials"] == 30


def test_moved_run_resumes(done, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(done, tmp_path / "tmp")
    (tmp_path / "tmp").rename(moved)
    out = _search("--resume", str(moved))
    assert out.returncode == 0, out.stderr
    assert len(_trials(moved, "done")) == 20


def test_a_live_run_refuses_a_second_process(tmp_path):
    run = tmp_path / "live"
    first = subprocess.Popen(
        [*SEARCH, "--budget", "0.16GFLOPs", "--trials", "100000", "--out", str(run)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not (run / "settings.json").is_file():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.1)
        _one_line_error(_search("--resume", str(run)), str(run), "in use", str(first.pid))
        _one_line_error(_search("--budget", "0.16GFLOPs", "--out", str(run)), "already holds a run")
        report = _report(run)  # a report of the live run: refused too
        assert report.returncode == 2 and report.stderr.count("\n") == 1, report.stderr
        assert "in use" in report.stderr and "Traceback" not in report.stderr
        assert first.poll() is None  # the live run goes on
    finally:
        first.kill()
        first.wait()
    assert json.loads((run / "settings.json").read_text())["trials"] == 100000


def _report(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "results.report", str(run)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip


def test_a_planted_lock_link_truncates_nothing(done, tmp_path):
    """RUN/.lock as a symbolic link to a file the user can write: --resume and the report refuse
    in one line, and the file keeps its contents."""
    victim = tmp_path / "victim"
    victim.write_text("DATA\n")
    run = tmp_path / "run"
    shutil.copytree(done, run)
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(victim)
    _one_line_error(_search("--resume", str(run)), ".lock", "symbolic link")
    out = _report(run)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "symbolic link" in out.stderr
    assert victim.read_text() == "DATA\n"


@pytest.mark.parametrize("name", ["specs", "plots", "tune", ".ray_home"])
def test_a_directory_link_inside_a_run_is_refused(done, tmp_path, name):
    """A run directory whose specs/, plots/, tune/ or .ray_home is a symbolic link to a folder
    elsewhere (or a file): --resume and results.report refuse in one line and write nothing
    there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    shutil.copytree(done, run)
    shutil.rmtree(run / name, ignore_errors=True)
    (run / name).symlink_to(elsewhere, target_is_directory=True)
    _one_line_error(_search("--resume", str(run)), name, "symbolic link")
    out = _report(run)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "symbolic link" in out.stderr and "Traceback" not in out.stderr
    assert list(elsewhere.iterdir()) == []
    (run / name).unlink()
    (run / name).write_text("not a folder")
    _one_line_error(_search("--resume", str(run)), name, "not a directory")


def test_out_refuses_a_directory_that_holds_other_files(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    _one_line_error(
        _search("--budget", "0.16GFLOPs", "--trials", "5", "--out", str(mine)), "holds other files"
    )
    assert [p.name for p in mine.iterdir()] == ["report.md"]
    assert (mine / "report.md").read_text() == "my notes"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _search("--budget", "0.16GFLOPs", "--trials", "5", "--out", str(empty)).returncode == 0


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--budget", "0.3GFLOPs"], ["--budget 0.3GFLOPs differs from the run's 0.16GFLOPs"]),
        (["--seed", "5"], ["--seed 5 differs from the run's 2"]),
        (["--space", "resnet"], ["--space resnet differs from the run's all"]),
        (["--trials", "8"], ["--trials 8 is fewer than the run's 20"]),
        (["--sampler", "random"], ["--sampler random differs"]),
        (["--train-top", "2"], ["--train-top 2 differs from the run's 0"]),
        (["--out", "elsewhere"], ["--out cannot be given with --resume"]),
    ],
)
def test_resume_refuses_flags_that_contradict_the_run(done, flags, words):
    before = _files(done)
    _one_line_error(_search("--resume", str(done), *flags), *words)
    assert _files(done) == before


def test_resume_accepts_flags_given_as_they_were(done, tmp_path):
    copy = tmp_path / "same"
    shutil.copytree(done, copy)
    out = _search("--resume", str(copy), "--budget", "160MFLOPs", "--seed", "2", "--trials", "20")
    assert out.returncode == 0, out.stderr
    assert len(_trials(copy, "done")) == 20


def test_a_run_keeps_the_weights_it_ranked_with(done, tmp_path):
    """A run records the fitted scorer's weights at its start; resumed after a refit (here: the
    run's record differs from nas/core/ranking_choice.json), it refuses rather than rank half of its
    candidates with other weights."""
    settings = json.loads((done / "settings.json").read_text())
    committed = json.loads((ROOT / "nas" / "core" / "ranking_choice.json").read_text())
    assert settings["scorer"] == committed["default"] == "paths_capacity"
    assert settings["scorer_model"] == committed["models"][settings["scorer"]]
    run = tmp_path / "refitted"
    shutil.copytree(done, run)
    settings["scorer_model"]["weights"][0] += 0.5
    (run / "settings.json").write_text(json.dumps(settings))
    before = _files(run)
    _one_line_error(_search("--resume", str(run)), "ranking_choice.json holds other weights")
    assert _files(run) == before


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda db: db.write_bytes(b""), "is empty"),  # emptied: would rerun everything
        (lambda db: db.write_bytes(b"this is no database" * 100), "not a database"),
        (lambda db: db.unlink(), "is missing"),
    ],
)
def test_damaged_study_is_refused(done, tmp_path, damage, words):
    run = tmp_path / "damaged"
    shutil.copytree(done, run)
    for extra in run.glob("study.db-*"):
        extra.unlink()
    damage(run / "study.db")
    before = _files(run)
    _one_line_error(_search("--resume", str(run)), str(run / "study.db"), words)
    assert _files(run) == before  # nothing written, the damaged file included


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--budget", "1e400"], ["must be a finite number"]),
        (["--budget", "inf"], ["cannot read the budget"]),
        (["--budget", "nan"], ["cannot read the budget"]),
        (["--budget", "0.16GFLOPs", "--dashboard-port", "99999"], ["--dashboard-port"]),
        (["--budget", "0.16GFLOPs", "--dashboard-port", "0"], ["--dashboard-port"]),
        (["--budget", "0.16GFLOPs", "--tolerance", "nan"], ["--tolerance"]),
        (["--budget", "0.16GFLOPs", "--trials", "0"], ["--trials must be at least 1"]),
        (["--budget", "0.16GFLOPs", "--train-top", "-1"], ["--train-top must be at least 0"]),
        (["--budget", "0.16GFLOPs", "--cpus-per-trial", "nan"], ["--cpus-per-trial"]),
        (["--budget", "0.16GFLOPs", "--gpus-per-trial", "-1"], ["--gpus-per-trial"]),
        (["--budget", "0.16GFLOPs", "--max-failures", "-2"], ["--max-failures"]),
        (["--budget", "0.16GFLOPs", "--width-mult", "nan"], ["--width-mult"]),
        (["--budg", "0.16GFLOPs"], ["unrecognized arguments: --budg"]),  # no abbreviations
    ],
)
def test_bad_flags_are_refused_before_any_work(tmp_path, flags, words):
    out = tmp_path / "never"
    _one_line_error(_search(*flags, "--out", str(out)), *words)
    assert not out.exists()


def _broken_curves(run: Path) -> None:
    """A valid trained.csv for the top candidate, and a curves.csv with a word for an epoch."""
    import pandas as pd

    top = pd.read_csv(run / "candidates.csv", dtype={"arch_id": str}).iloc[0]["arch_id"]
    (run / "trained.csv").write_text(
        "arch_id,status,error,epoch,top1,top5,test_loss,train_loss,images_per_s,node,"
        f"train_seconds\n{top},trained,,1,0.8,0.99,0.5,0.6,100.0,n1,10.0\n"
    )
    (run / "curves.csv").write_text(f"arch_id,epoch,top1\n{top},one,0.8\n")


def _edit_json(name: str, **fields):
    def edit(run: Path) -> None:
        data = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps({**data, **fields}))

    return edit


def _edit_training(**fields):
    def edit(run: Path) -> None:
        data = json.loads((run / "settings.json").read_text())
        # the fixture's run trains nothing: the section a training run would hold
        data["training"] = {**TrainingOptions().to_dict(), **fields}
        (run / "settings.json").write_text(json.dumps(data))

    return edit


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda r: (r / "draws.json").write_text('{"candidates": 20, "dra'), "draws.json is not"),
        (_edit_json("draws.json", drawn="many"), "drawn must be a count"),
        (_edit_json("draws.json", space_size="big"), "space_size must be a number"),
        (_edit_json("settings.json", budget="0.16"), "budget must be a number"),
        (_edit_json("settings.json", top=1e12), "top must be an integer"),
        (_edit_json("settings.json", top=10**12), "top must be in [1, 1000000]"),
        (_edit_json("settings.json", study_name=7), "study_name must be a string"),
        (
            lambda r: (r / "settings.json").write_text(
                (r / "settings.json").read_text().replace('"budget": 160000000.0', '"budget": NaN')
            ),
            "budget must be above 0, got nan",
        ),
        (_edit_training(epochs="x"), "training.epochs must be an integer, got 'x'"),
        (_edit_training(width_mult=9), "training.width_mult must be in (0, 4], got 9"),
        (_broken_curves, "curves.csv: column epoch holds values that are not numbers"),
    ],
    ids=["draws cut", "draws string", "space size", "budget string", "top float", "top huge",
         "name number", "budget nan", "epochs string", "width huge", "curves"],
)  # fmt: skip
def test_hand_edited_run_files_are_one_line(done, tmp_path, damage, words):
    """A run file edited by hand against its format: the report (and, for settings.json, the
    resume) refuse in one line naming the file and the field, exit 2, and rewrite nothing."""
    run = tmp_path / "edited"
    shutil.copytree(done, run)
    damage(run)
    before = _files(run)
    out = _report(run)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.count("\n") == 1 and words in out.stderr, out.stderr
    assert _files(run) == before
    if any(w in words for w in ("budget", "top", "study_name", "training")):
        _one_line_error(_search("--resume", str(run)), "settings.json", words.split()[0])
        assert _files(run) == before
