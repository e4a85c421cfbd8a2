"""Gradient paths: the paper's worked values, the zoo, traced modules, autograd, and the CLI."""

import json
import math
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import zoo_params
from torch import nn

from nas import (
    ArchSpec,
    Stage,
    Stem,
    analyze,
    analyze_spec,
    build_model,
    get_scorer,
    list_models,
    model_spec,
    paths,
    register_scorer,
    spec_cost,
    spec_graph,
    trace_graph,
)
from nas.core.blocks import chain_block, dense_unit, fractal_block
from nas.core.graph import _labels, lower
from nas.core.scorers import SCORERS, list_scorers, measure
from nas.nn.trace import autograd_reached
from results.trained_benchmark import load_archs
from speed.suite import chain_spec

ROOT = Path(__file__).parent.parent
SIDE, WIDTH = 8, 16
C = 9 * WIDTH * WIDTH * SIDE * SIDE / 64  # one 3x3 WIDTH -> WIDTH binary conv, in FLOP-equivalents


def _one_block(block, stem_channels=WIDTH) -> ArchSpec:
    return ArchSpec(
        name="t",
        stages=(Stage(blocks=(block,)),),
        stem=Stem("small", stem_channels),
        input_size=SIDE,
        classes=10,
    )


def test_binary_resnet_pair():
    stats = analyze_spec(_one_block(chain_block(WIDTH, 2, "resnet"))).blocks["stages.0.blocks.0"]
    assert stats.N == (0, 2 * C, None) and stats.L == (0, 2, None)


def test_bireal_pair():
    stats = analyze_spec(_one_block(chain_block(WIDTH, 2, "bireal"))).blocks["stages.0.blocks.0"]
    assert stats.N == (0, C, 2 * C) and stats.L == (0, 1, 2)
    assert stats.count == (1, 2, 1)  # the two single-conv paths are one distinct value


def test_ebireal_pair_is_no_better_than_bireal():
    stats = analyze_spec(_one_block(chain_block(WIDTH, 2, "ebireal"))).blocks["stages.0.blocks.0"]
    assert stats.N == (0, C, 2 * C)


def test_dense_block_of_two_layers():
    """Layer costs c1 (C -> k) < c2 (C + k -> k): N_2nd = c1."""
    k = 8
    spec = ArchSpec(
        name="d",
        stages=(Stage(blocks=(dense_unit(k), dense_unit(k))),),
        stem=Stem("small", WIDTH),
        input_size=SIDE,
        classes=10,
    )
    c1 = 9 * WIDTH * k * SIDE * SIDE / 64
    c2 = 9 * (WIDTH + k) * k * SIDE * SIDE / 64
    stats = analyze_spec(spec).stages["stage1"]
    assert c1 < c2
    assert stats.N == (0, c1, c2)


def test_fractal_block_L2_is_one():
    stats = analyze_spec(_one_block(fractal_block(WIDTH, 3))).blocks["stages.0.blocks.0"]
    assert stats.L[1] == 1 and stats.N == (0, C, 2 * C)
    plain = analyze_spec(_one_block(fractal_block(WIDTH, 3, pattern="none")))
    assert plain.blocks["stages.0.blocks.0"].L == (1, 2, 3)  # FractalNet alone: no free path


def test_zoo_bireal_stage1_and_igp_against_bireal():
    c = 9 * 64 * 64 * 56 * 56 / 64
    bireal = analyze_spec(model_spec("bireal_resnet18"))
    assert bireal.stages["stage1"].N == (0, c, 2 * c)
    igp = analyze_spec(model_spec("igp_resnet37"))
    mean_n2 = {
        name: sum(s.N[1] for s in r.stages.values()) / len(r.stages)
        for name, r in (("bireal", bireal), ("igp", igp))
    }
    assert mean_n2["igp"] < mean_n2["bireal"]
    assert all(s.N[1] < bireal.stages["stage1"].N[1] for s in igp.stages.values())
    flops = [spec_cost(model_spec(n)).total.flops for n in ("bireal_resnet18", "igp_resnet37")]
    assert abs(flops[0] - flops[1]) / flops[0] < 0.25
    key = get_scorer("stage_mean_n")  # the paper's key ranks IGP-ResNet37 first
    assert key(measure(lower(model_spec("igp_resnet37")))) < key(
        measure(lower(model_spec("bireal_resnet18")))
    )


@pytest.mark.parametrize("name", zoo_params(list_models()))
def test_traced_module_graph_equals_spec_graph(name):
    spec = model_spec(name, input_size=32, classes=10)
    model = build_model(spec)
    x = torch.randn(1, 3, 32, 32)
    traced, from_spec = trace_graph(model, x), spec_graph(spec)
    for g in (traced, from_spec):
        nx.set_node_attributes(g, _labels(g), "label")
    assert nx.is_isomorphic(
        traced,
        from_spec,
        node_match=lambda a, b: a["label"] == b["label"] and a["weight"] == b["weight"],
    )
    assert analyze(model, x).to_dict() == analyze_spec(spec).to_dict()


@pytest.mark.parametrize("name", zoo_params(list_models()))
def test_graph_agrees_with_autograd(name):
    spec = model_spec(name, input_size=32, classes=10)
    model = build_model(spec)
    x = torch.randn(2, 3, 32, 32)
    reached, convs = autograd_reached(model, x)
    report = analyze(model, x)
    assert set(report.layers) == convs
    assert reached == convs - set(report.unreached())


class _Sign(torch.autograd.Function):
    """A user's own straight-through sign, as custom code writes it."""

    @staticmethod
    def forward(ctx, x):
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class PlainBiReal(nn.Module):
    """A Bi-Real-style net in plain PyTorch, none of the project's layers: sign with the detach
    trick or a custom Function, F.conv2d on sign(weight) * mean|W|, additions, an unused branch."""

    def __init__(self, width=WIDTH, dead_branch=False):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.w = nn.ParameterList(
            [nn.Parameter(torch.randn(width, width, 3, 3)) for _ in range(2)]
            + [nn.Parameter(torch.randn(2 * width, width, 3, 3))]
            + [nn.Parameter(torch.randn(2 * width, 2 * width, 3, 3))]
        )
        self.down = nn.Conv2d(width, 2 * width, 1, bias=False)
        self.bns = nn.ModuleList(nn.BatchNorm2d(w.shape[0]) for w in self.w)
        self.fc = nn.Linear(2 * width, 10)
        self.dead_branch = dead_branch

    def bconv(self, i, x, stride=1):
        xb = x + (torch.sign(x) - x).detach() if i % 2 == 0 else _Sign.apply(x)
        w = self.w[i]
        wb = w + (torch.sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True) - w).detach()
        return self.bns[i](F.conv2d(xb, wb, stride=stride, padding=1))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.bconv(0, x)
        if self.dead_branch:
            self.bconv(1, x)  # computed, never used
        x = x + self.bconv(1, x)
        x = self.down(F.avg_pool2d(x, 2)) + self.bconv(2, x, stride=2)
        x = x + self.bconv(3, x)
        return self.fc(x.mean((2, 3)))


def test_plain_pytorch_model_is_analysed_like_its_spec():
    model = PlainBiReal()
    x = torch.randn(2, 3, SIDE, SIDE)
    report = analyze(model, x)
    spec = ArchSpec(
        name="same",
        stem=Stem("small", WIDTH),
        input_size=SIDE,
        classes=10,
        stages=(
            Stage(blocks=(chain_block(WIDTH, 1, "bireal"), chain_block(WIDTH, 1, "bireal"))),
            Stage(
                blocks=(
                    chain_block(2 * WIDTH, 1, "bireal", stride=2),
                    chain_block(2 * WIDTH, 1, "bireal"),
                )
            ),
        ),
    )
    expected = analyze_spec(spec)
    assert len(report.layers) == 4
    assert report.network == expected.network
    assert list(report.stages.values()) == list(expected.stages.values())
    assert list(report.blocks.values()) == list(expected.blocks.values())
    assert list(report.layers.values()) == list(expected.layers.values())
    assert report.stages["stage1"].N == (0, C, 2 * C)


def test_dead_branch_is_unreached_by_graph_and_by_autograd():
    model = PlainBiReal(dead_branch=True)
    x = torch.randn(2, 3, SIDE, SIDE)
    report = analyze(model, x)
    reached, convs = autograd_reached(model, x)
    assert len(convs) == 5 and len(report.unreached()) == 1
    assert reached == convs - set(report.unreached())


def test_binary_selector_by_name():
    model = PlainBiReal()
    x = torch.randn(1, 3, SIDE, SIDE)
    names = list(analyze(model, x).layers)
    only = analyze(model, x, binary=names[:1])
    assert list(only.layers) == names[:1]
    none = analyze(model, x, binary=lambda name: False)
    assert none.layers == {} and none.network.N == (0, None, None)


def test_scorer_registry_is_pluggable():
    @register_scorer
    def first_stage_n2(m):
        return (next(iter(m.paths.stages.values())).N[1],)

    try:
        assert get_scorer("first_stage_n2")(measure(lower(model_spec("bireal_resnet18")))) == (
            9 * 64 * 64 * 56 * 56 / 64,
        )
    finally:
        SCORERS.remove("first_stage_n2")
    with pytest.raises(KeyError, match="stage_mean_n"):
        get_scorer("stage_mean")


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "nas.paths", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_cli_json_and_plot(tmp_path):
    png = tmp_path / "stage.png"
    out = _cli("bireal_resnet18", "--json", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {"network", "stages", "blocks", "layers"}
    for entry in [data["network"], *data["stages"], *data["blocks"], *data["layers"]]:
        assert len(entry["N"]) == len(entry["L"]) == len(entry["count"]) == 3
    assert data["stages"][0]["N"] == [0, 9 * 64 * 64 * 56 * 56 / 64, 2 * 9 * 64 * 64 * 56 * 56 / 64]
    import matplotlib.image  # noqa: PLC0415 - heavy: only this test reads an image

    assert matplotlib.image.imread(png).shape[0] > 100


def test_cli_bad_input():
    for args, words in (
        (["bireal_resnet19"], "bireal_resnet18"),
        (["bireal_resnet18", "--plot", "x.png", "--scope", "stage9"], "stage1"),
        (["bireal_resnet18", "--scorer", "nope"], "stage_mean_n"),
    ):
        out = _cli(*args)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert words in out.stderr and "Traceback" not in out.stderr


def test_python_api_matches_cli(tmp_path):
    spec = model_spec("igp_resnet21", input_size=32, classes=10)
    path = tmp_path / "s.json"
    path.write_text(spec.to_json())
    out = json.loads(_cli(str(path), "--json").stdout)
    api = analyze(build_model(spec), torch.randn(1, 3, 32, 32)).to_dict()
    assert {k: out[k] for k in api} == api


def test_cli_plot_into_a_place_that_cannot_be_written(tmp_path):
    """A missing folder, a path under a regular file (as root, a read-only folder does not stop
    a write), an unknown image format, a scope too large to draw: one line, exit 2, naming the
    file or the scope, and no image written."""
    (tmp_path / "afile").write_text("")
    chain = tmp_path / "chain.json"
    chain.write_text(chain_spec(600).to_json())
    for args, says in [
        (["--plot", str(tmp_path / "afile" / "x.png")], f"cannot use {tmp_path}/afile/x.png"),
        (["--plot", str(tmp_path / "none" / "x.png")], f"cannot use {tmp_path}/none/x.png: No"),
        (["--plot", str(tmp_path / "x.bmp")], f"--plot {tmp_path}/x.bmp: give a file name"),
    ]:
        out = _cli("bireal_resnet18", *args)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert says in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = _cli(str(chain), "--plot", str(tmp_path / "big.png"), "--scope", "stage1")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "stage1 has 1,201 ops, too many to draw" in out.stderr
    assert not any(p.suffix in (".png", ".tmp") for p in tmp_path.rglob("*"))


def test_every_zoo_and_benchmark_network_has_a_finite_key_under_every_scorer():
    """`python -m nas.paths SPEC --json` prints numbers, never null, for the zoo and for every
    architecture of the benchmark study (whose archs.csv keys are finite too)."""
    for name in list_models():
        out = json.loads(paths.render(model_spec(name), as_json=True))
        assert all(isinstance(v, float) and math.isfinite(v) for v in out["key"]), name
    archs = load_archs()
    for spec in archs["spec"]:
        m = measure(lower(ArchSpec.from_json(spec)))
        for scorer in list_scorers():
            assert all(math.isfinite(v) for v in get_scorer(scorer)(m)), scorer
    keys = archs[[c for c in archs.columns if c.startswith("key_")]]
    assert not keys.isna().any().any() and pd.api.types.is_float_dtype(keys.stack())
