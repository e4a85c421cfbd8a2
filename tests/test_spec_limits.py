"""Bad specs and bad flags: one line on stderr, exit code 2, no traceback; the spec's stated limits;
``nas.paths`` and ``nas.profile`` on a generated spec of many blocks (results, not speed)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from nas import ArchSpec, SpecError, arch_id, list_models, model_spec
from nas.core import spec as spec_module
from nas.core.blocks import chain_block
from nas.core.graph import depth, lower
from nas.core.metrics import PathGraph
from nas.core.spec import Stage, Stem
from nas.paths import render as paths_render
from nas.profile import render as profile_render
from search_spaces import get_space, list_spaces
from speed.suite import chain_spec, spec_size

ROOT = Path(__file__).parent.parent


def _run(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _one_line_error(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert out.stderr.count("\n") == 1 and out.stderr.endswith("\n"), out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "\x1b" not in out.stderr, out.stderr
    for word in words:
        assert word in out.stderr, (word, out.stderr)


def _bireal() -> dict:
    return model_spec("bireal_resnet18", input_size=32, classes=10).to_dict()


def _edited(edit) -> str:
    data = _bireal()
    edit(data)
    return json.dumps(data)


# (file name, its content, what the one line says after the file's name)
BAD_SPEC_FILES = [
    ("deep.json", "[" * 100_000, "nested too deeply"),
    ("deep_object.json", '{"a": ' * 100_000, "nested too deeply"),
    ("list.json", "[1, 2]", "spec: must be a JSON object, got list"),
    ("null.json", "null", "spec: must be a JSON object, got NoneType"),
    ("digits.json", '{"name": ' + "9" * 5000 + "}", "not valid JSON (Exceeds the limit"),
    (
        "wide.json",
        _edited(lambda d: d["stages"][0]["blocks"][0].update(width=10**9)),
        "stages[0].blocks[0].width: must be at most 65,536, got 1000000000",
    ),
    (
        "pixels.json",
        _edited(lambda d: d.update(input_size=10**6)),
        "input_size: must be at most 8,192",
    ),
    (
        "classes.json",
        _edited(lambda d: d.update(classes=10**9)),
        "classes: must be at most 1,000,000",
    ),
    (
        "stem.json",
        _edited(lambda d: d["stem"].update(channels=2**20)),
        "stem.channels: must be at most 65,536",
    ),
    (
        "far_node.json",  # one edge to node 10^12: refused at once, not by walking 10^12 nodes
        _edited(lambda d: d["stages"][0]["blocks"][0].update(convs=[[0, 1], [1, 10**12]])),
        "stages[0].blocks[0]: node 2 has no incoming conv edge",
    ),
    (
        "kernel.json",
        _edited(lambda d: d["stages"][0]["blocks"][0].update(kernel=9)),
        "stages[0].blocks[0].kernel: must be 1, 3, 5 or 7, got 9",
    ),
    (
        "type.json",
        _edited(lambda d: d["stages"][0]["blocks"][0].update(width=[1] * 100_000)),
        "stages[0].blocks[0].width: must be an integer, got [1, 1, 1, 1, 1, 1, ...]",
    ),
    (
        "key.json",
        _edited(lambda d: d["stages"][0]["blocks"][0].update({"x" * 100_000: 1})),
        "stages[0].blocks[0].xxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxx: unknown field",
    ),
    (
        "name.json",
        _edited(lambda d: d.update(name="evil\x1b[2J\nname")),
        "name: control characters are not allowed (got 'evil\\x1b[2J\\nname')",
    ),
    (
        "long_name.json",
        _edited(lambda d: d.update(name="n" * 10_000)),
        "name: 10,000 characters, over the limit of 256 for a name",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["nas.paths", "nas.profile"])
@pytest.mark.parametrize(
    "name, content, says", BAD_SPEC_FILES, ids=[case[0] for case in BAD_SPEC_FILES]
)
def test_a_bad_spec_file_is_one_line_naming_the_file(tmp_path, command, name, content, says):
    path = tmp_path / name
    path.write_text(content)
    out = _run(command, str(path))
    _one_line_error(out, f"{command}: error: {path}: {says}")
    assert out.stdout == ""


def test_unreadable_spec_files(tmp_path):
    """Not UTF-8, over the size limit (a sparse file: no 64 MiB written), a folder."""
    (tmp_path / "binary.json").write_bytes(b"\x80\x81 not text")
    with open(tmp_path / "huge.json", "wb") as f:
        f.truncate(spec_module.MAX_SPEC_BYTES + 1)
    (tmp_path / "folder.json").mkdir()
    for name, says in [
        ("binary.json", "not valid JSON ('utf-8' codec can't decode byte 0x80"),
        ("huge.json", "the file is over the limit of 64.0 MiB for a spec"),
        ("folder.json", "cannot read the spec file (Is a directory)"),
    ]:
        _one_line_error(_run("nas.paths", str(tmp_path / name)), f"{tmp_path / name}: {says}")


# (command, flags, what the one line says)
BAD_FLAGS = [
    ("nas.paths", ["--input-size", "0"], "argument --input-size: invalid input size (1-8192)"),
    ("nas.paths", ["--input-size", "99999"], "argument --input-size: invalid input size"),
    ("nas.paths", ["--classes", "-3"], "argument --classes: invalid number of classes"),
    ("nas.profile", ["--classes", "nan"], "argument --classes: invalid number of classes"),
    ("nas.profile", ["--input-size", "1e9"], "argument --input-size: invalid input size"),
    ("speed.packed", ["--seconds", "nan"], "argument --seconds: invalid number of seconds"),
    ("speed.packed", ["--seconds", "-1"], "argument --seconds"),
    ("speed.packed", ["--seconds", "0"], "argument --seconds"),
    ("speed.packed", ["--seconds", "inf"], "argument --seconds"),
    ("nas.benchmarks", ["scoring", "--seconds", "nan"], "argument --seconds"),
    ("nas.benchmarks", ["scoring", "--repeats", "0"], "argument --repeats"),
    ("nas.benchmarks", ["spec-size", "--sizes", "0"], "argument --sizes"),
    ("nas.benchmarks", ["spec-size", "--sizes", "10000000"], "argument --sizes"),
    ("nas.pack", ["--check", "0"], "argument --check: invalid number of images"),
]


@pytest.mark.slow
@pytest.mark.parametrize("command, flags, says", BAD_FLAGS)
def test_a_bad_number_is_refused_as_it_is_parsed(command, flags, says):
    model = [] if command in ("speed.packed", "nas.benchmarks") else ["bireal_resnet18"]
    _one_line_error(_run(command, *model, *flags), f"{command}: error: {says}")


@pytest.mark.parametrize(
    "edit, where, problem",
    [
        (lambda d: d.update(in_channels=65_537), "in_channels", "must be at most 65,536"),
        (
            lambda d: d["stages"][1].update(transition={"kind": "avgpool_conv", "channels": 10**5}),
            "stages[1].transition.channels",
            "must be at most 65,536",
        ),
        (lambda d: d.update(name="tab\there"), "name", "control characters are not allowed"),
        (lambda d: d.update(name="\u202eevil"), "name", "control characters are not allowed"),
    ],
)
def test_limits_name_the_field(edit, where, problem):
    data = _bireal()
    edit(data)
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(data)
    assert err.value.where == where and problem in err.value.problem


def test_dense_limits():
    """A dense unit deeper than the limit, and dense units whose concatenation outgrows it."""
    data = model_spec("binary_densenet28", input_size=32, classes=10).to_dict()
    depth_over = spec_module.MAX_DENSE_DEPTH + 1
    data["stages"][0]["blocks"][0]["convs"] = [[i, i + 1] for i in range(depth_over)]
    with pytest.raises(SpecError, match=f"depth {depth_over} is over the limit of 64"):
        ArchSpec.from_dict(data)
    data = model_spec("binary_densenet28", input_size=32, classes=10).to_dict()
    data["stages"][0]["blocks"][0]["width"] = 65_536
    channels = data["stem"]["channels"] + 65_536
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(data)
    assert err.value.where == "stages[0].blocks[0]"
    assert f"its output has {channels:,} channels" in err.value.problem


def test_block_and_edge_totals(monkeypatch):
    """The totals over all stages (lowered here, so the test need not build 200,000 blocks)."""
    text = chain_spec(30).to_json()
    monkeypatch.setattr(spec_module, "MAX_BLOCKS", 20)
    with pytest.raises(SpecError, match="stages: 30 blocks, over the limit of 20"):
        ArchSpec.from_json(text)
    monkeypatch.setattr(spec_module, "MAX_BLOCKS", 200_000)
    monkeypatch.setattr(spec_module, "MAX_EDGES", 50)
    with pytest.raises(SpecError, match="stages: 60 conv and shortcut edges, over the limit of 50"):
        ArchSpec.from_json(text)


def test_every_zoo_model_and_search_space_net_is_within_the_limits():
    for name in list_models():
        model_spec(name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in list_spaces():
        space = get_space(name)
        structures = [*space.extremes(), *(s for s, _ in space.references().values())]
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        structures += [space.sample(study.ask()) for _ in range(50)]
        for structure in structures:
            for width in space.width_bounds:  # the widest the solver can return, too
                space.build(structure, width, 224, 1000)


def test_the_limits_are_stated():
    for name in ("MAX_CHANNELS", "MAX_INPUT_SIZE", "MAX_CLASSES", "MAX_BLOCKS", "MAX_EDGES"):
        assert isinstance(getattr(spec_module, name), int)
    assert "**Limits.**" in spec_module.__doc__


N_BLOCKS = 20_000


@pytest.mark.slow
def test_paths_and_profile_of_a_spec_of_many_blocks(tmp_path):
    """N Bi-Real blocks in a row: the network has 2^N paths, sum_k C(N, k) of them through k
    convs, so N = (0, c, 2c) with counts 1, N and N(N-1)/2; a conv of block i reaches the output
    through the N-1-i blocks after it. Checked through both commands' JSON."""
    spec = chain_spec(N_BLOCKS)
    path = tmp_path / "chain.json"
    path.write_text(spec.to_json())
    c = 9 * 64 * 64 * 32 * 32 / 64
    out = _run("nas.paths", str(path), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    pairs = N_BLOCKS * (N_BLOCKS - 1) // 2
    assert data["network"] == {
        "N": [0, c, 2 * c],
        "L": [0, 1, 2],
        "count": [1, N_BLOCKS, pairs],
        "L_count": [1, N_BLOCKS, pairs],
    }
    assert len(data["blocks"]) == N_BLOCKS and len(data["layers"]) == N_BLOCKS
    assert all(b["N"] == [0, c, None] and b["count"] == [1, 1, None] for b in data["blocks"])
    for i in (0, N_BLOCKS // 2, N_BLOCKS - 2, N_BLOCKS - 1):
        after = N_BLOCKS - 1 - i
        layer = data["layers"][i]
        assert layer["scope"] == f"stages.0.blocks.{i}.convs.0_1.conv"
        assert layer["count"] == [1, after or None, after * (after - 1) // 2 or None]
    assert json.loads(paths_render(spec, as_json=True)) == data
    profile = json.loads(profile_render(ArchSpec.load(path), as_json=True))
    assert profile["depth"] == N_BLOCKS + 2 == depth(spec)
    assert profile["binary_params"] == N_BLOCKS * 9 * 64 * 64
    assert profile["bops"] == N_BLOCKS * 9 * 64 * 64 * 32 * 32
    assert profile["arch_id"] == data["arch_id"] == arch_id(spec)
    text = paths_render(spec)
    assert text.count("\n") > 2 * N_BLOCKS and f"stages.0.blocks.{N_BLOCKS - 1}" in text


def test_a_block_of_many_nodes_is_lowered_in_one_pass():
    """A block of a 20,000-conv chain with a Bi-Real shortcut beside each: 40,000 edges (the
    per-node edge scan this replaced took minutes)."""
    m = 20_000
    spec = ArchSpec(
        name="long_block",
        stages=(Stage(blocks=(chain_block(8, m, "bireal"),)),),
        stem=Stem("small", 8),
        input_size=4,
        classes=2,
    )
    ops = lower(spec)
    graph = PathGraph.from_ops(ops, {})
    assert len(graph.binary) == m and depth(spec) == m + 2


def test_spec_size_benchmark_reports_each_command():
    rows = spec_size(sizes=(10, 20))
    assert [r["blocks"] for r in rows] == [10, 20]
    for command in ("paths", "paths --json", "profile", "profile --json"):
        assert all(r[command] > 0 and r[f"{command} us/block"] > 0 for r in rows)
        assert math.isfinite(rows[-1][f"{command} per-block ratio"])
