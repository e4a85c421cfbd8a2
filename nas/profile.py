"""``python -m nas.profile MODEL``: the cost of a network, as the paper counts it.

A summary in the spirit of larq's model summary: per weighted layer and per stage, 1-bit and
32-bit parameters and MACs, the binarised share of the MACs, storage (Mbit) and FLOPs
(= FP MACs + BOPs / 64), and for every binary layer the representational capability of its output
(the paper, section 2). MODEL is a zoo name (``--list``) or a path to an ArchSpec JSON file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from nas import cli
from nas.core.cost import CostReport, ops_cost
from nas.core.graph import Op, lower, ops_arch_id, ops_depth
from nas.core.names import printable
from nas.core.registry import list_models, model_doc, model_spec
from nas.core.spec import ArchSpec
from nas.core.zoo import TABLE1


def text_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as right-aligned columns under their headers, one space apart: the layout of
    pandas' ``to_string(index=False)`` (numbers get a sign's space, text none), in time linear in
    the rows, which pandas' is not."""
    columns = list(rows[0])
    cells, widths = [], []
    for c in columns:
        values = [r[c] for r in rows]
        number = not isinstance(values[0], str)
        if number:
            values = [str(v) for v in values]
        cells.append(values)
        widths.append(max(len(c), *map(len, values)) + number)
    lines = [" ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += (
        " ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))
        for values in zip(*cells, strict=True)
    )
    return "\n".join(lines)


def json_text(obj: dict[str, Any]) -> str:
    """``obj`` as indented JSON, each object of a top-level list of objects (a layer, a scope) on
    one line: as readable as ``json.dumps(obj, indent=1)`` and written by json's C encoder (the
    indented encoder is pure Python, slow on large specs)."""
    parts = []
    for key, value in obj.items():
        if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            rows = ",\n  ".join(map(json.dumps, value))
            parts.append(f" {json.dumps(key)}: [\n  {rows}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: " + json.dumps(value, indent=1).replace("\n", "\n "))
    return "{\n" + ",\n".join(parts) + "\n}"


def profile(spec: ArchSpec, count_bn: bool = False, ops: list[Op] | None = None) -> dict[str, Any]:
    """The profile of ``spec`` as plain data (the ``--json`` output); ``ops``: its lowered ops,
    where the caller has them."""
    ops = lower(spec) if ops is None else ops
    report = ops_cost(ops, count_bn=count_bn)
    return {
        "model": spec.name,
        "arch_id": ops_arch_id(ops),
        "input_size": spec.input_size,
        "classes": spec.classes,
        "count_bn": count_bn,
        **report.total.to_dict(),
        "binary_mac_ratio": report.total.binary_mac_ratio,
        "depth": ops_depth(ops),
        "stages": [
            {"stage": name, **cost.to_dict(), "binary_mac_ratio": cost.binary_mac_ratio}
            for name, cost in report.stages.items()
        ],
        "layers": [
            {
                "name": layer.name,
                "stage": layer.stage,
                "binary": layer.binary,
                "cin": layer.cin,
                "cout": layer.cout,
                "kernel": layer.kernel,
                "stride": layer.stride,
                "size": layer.size,
                "params": layer.params,
                "macs": layer.macs,
                "capability_bits": layer.capability_bits,
            }
            for layer in report.layers
        ],
    }


def _si(x: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3f} {unit}"
    return f"{x:g}"


def format_summary(
    spec: ArchSpec, report: CostReport, count_bn: bool = False, ops: list[Op] | None = None
) -> str:
    """The human-readable summary (default output); ``ops``: the spec's lowered ops, where the
    caller has them."""
    ops = lower(spec) if ops is None else ops
    layers = text_table(
        [
            {
                "layer": layer.name,
                "bits": 1 if layer.binary else 32,
                "in -> out": f"{layer.cin} -> {layer.cout}",
                "k/s": f"{layer.kernel}/{layer.stride}" if layer.kernel else "fc",
                "output": f"{layer.size}x{layer.size}",
                "params": f"{layer.params:,}",
                "MACs": _si(layer.macs),
                "capability (bits)": (
                    f"{layer.capability_bits:.4g}" if layer.capability_bits is not None else "-"
                ),
            }
            for layer in report.layers
        ]
    )
    rows = list(report.stages.items()) + [("total", report.total)]
    stages = text_table(
        [
            {
                "stage": name,
                "1-bit params": f"{c.binary_params:,}",
                "32-bit params": f"{c.fp_params:,}",
                "BOPs (1-bit MACs)": _si(c.bops),
                "FP MACs": _si(c.fp_macs),
                "binarised MACs": f"{100 * c.binary_mac_ratio:.1f}%",
                "storage (Mbit)": f"{c.storage_mbit:.2f}",
                "FLOPs": f"{c.flops / 1e9:.4f} G",
            }
            for name, c in rows
        ]
    )
    t = report.total
    head = (
        f"{printable(spec.name)}: {spec.input_size}x{spec.input_size}x{spec.in_channels} -> "
        f"{spec.classes} classes, depth {ops_depth(ops)}, id {ops_arch_id(ops)}"
    )
    foot = (
        f"FLOPs = FP MACs + BOPs/64 = {t.flops / 1e9:.4f}e9   storage = {t.storage_mbit:.2f} Mbit "
        f"({t.binary_params:,} 1-bit + {t.fp_params:,} 32-bit weights"
        f"{', BN counted' if count_bn else ', BN not counted'})"
    )
    return "\n\n".join(
        [
            head,
            layers,
            stages,
            foot,
            "capability: log2 of (k*k*C_in + 1)^(H*W*C_out), the output states of a binary layer "
            "(the paper, section 2); shortcuts do not change it.",
        ]
    )


def format_zoo() -> str:
    """The zoo at 224 px and 1000 classes: depth, storage and FLOPs of every model, beside the
    paper's Table 1 where the model is a row of it."""
    rows = []
    for name in list_models():
        ops = lower(model_spec(name))
        t = ops_cost(ops).total
        rows.append(
            {
                "model": name,
                "depth": ops_depth(ops),
                "storage (Mbit)": f"{t.storage_mbit:.2f}",
                "FLOPs": f"{t.flops / 1e9:.4f} G",
                "BOPs": _si(t.bops),
                "FP MACs": _si(t.fp_macs),
                "Table 1": (
                    f"{TABLE1[name][0]} / {TABLE1[name][1] / 1e9:.2f} G" if name in TABLE1 else ""
                ),
                "about": model_doc(name).split(":")[0].split("(")[0].strip(),
            }
        )
    return text_table(rows)


def render(spec: ArchSpec, count_bn: bool = False, as_json: bool = False) -> str:
    """What the command prints for ``spec``: the summary, or the JSON object."""
    ops = lower(spec)
    if as_json:
        return json_text(profile(spec, count_bn, ops))
    return format_summary(spec, ops_cost(ops, count_bn=count_bn), count_bn, ops)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m nas.profile",
        description="Cost of a binary CNN as the paper counts it (FLOPs = FP MACs + BOPs/64).",
    )
    parser.add_argument("model", nargs="?", help="a zoo model name, or a path to an ArchSpec .json")
    cli.add_spec_options(parser)
    parser.add_argument(
        "--count-bn", action="store_true", help="count BN's gamma and beta as 32-bit weights"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--list", action="store_true", help="list the zoo models and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(format_zoo())
        return 0
    if args.model is None:
        parser.error("give a MODEL (a zoo name or a spec .json), or --list")
    spec = cli.load_model_arg(args.model, args.input_size, args.classes)
    print(render(spec, args.count_bn, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("nas.profile", main))
