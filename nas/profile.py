"""``python -m nas.profile MODEL``: the cost of a network, as the paper counts it.

A summary in the spirit of larq's model summary: per weighted layer and per stage, 1-bit and
32-bit parameters and MACs, the binarised share of the MACs, storage (Mbit) and FLOPs
(= FP MACs + BOPs / 64), and for every binary layer the representational capability of its output
(the paper, section 2). MODEL is a zoo name (``--list``) or a path to an ArchSpec JSON file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from nas import _cli
from nas.cost import CostReport, spec_cost
from nas.graph import arch_id, depth
from nas.registry import list_models, model_doc, model_spec
from nas.spec import ArchSpec


def profile(spec: ArchSpec, count_bn: bool = False) -> dict[str, Any]:
    """The profile of ``spec`` as plain data (the ``--json`` output)."""
    report = spec_cost(spec, count_bn=count_bn)
    return {
        "model": spec.name,
        "arch_id": arch_id(spec),
        "input_size": spec.input_size,
        "classes": spec.classes,
        "count_bn": count_bn,
        **report.total.to_dict(),
        "binary_mac_ratio": report.total.binary_mac_ratio,
        "depth": depth(spec),
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


def format_summary(spec: ArchSpec, report: CostReport, count_bn: bool = False) -> str:
    """The human-readable summary (default output)."""
    import pandas as pd

    layers = pd.DataFrame(
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
    )
    rows = list(report.stages.items()) + [("total", report.total)]
    stages = pd.DataFrame(
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
    )
    t = report.total
    head = (
        f"{spec.name}: {spec.input_size}x{spec.input_size}x{spec.in_channels} -> {spec.classes} "
        f"classes, depth {depth(spec)}, id {arch_id(spec)}"
    )
    foot = (
        f"FLOPs = FP MACs + BOPs/64 = {t.flops / 1e9:.4f}e9   storage = {t.storage_mbit:.2f} Mbit "
        f"({t.binary_params:,} 1-bit + {t.fp_params:,} 32-bit weights"
        f"{', BN counted' if count_bn else ', BN not counted'})"
    )
    return "\n\n".join(
        [
            head,
            layers.to_string(index=False),
            stages.to_string(index=False),
            foot,
            "capability: log2 of (k*k*C_in + 1)^(H*W*C_out), the output states of a binary layer "
            "(the paper, section 2); shortcuts do not change it.",
        ]
    )


def format_zoo() -> str:
    """The zoo at 224 px and 1000 classes: depth, storage and FLOPs of every model, beside the
    paper's Table 1 where the model is a row of it."""
    import pandas as pd

    from nas.zoo import TABLE1

    rows = []
    for name in list_models():
        spec = model_spec(name)
        t = spec_cost(spec).total
        rows.append(
            {
                "model": name,
                "depth": depth(spec),
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
    return pd.DataFrame(rows).to_string(index=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _cli.Parser(
        prog="python -m nas.profile",
        description="Cost of a binary CNN as the paper counts it (FLOPs = FP MACs + BOPs/64).",
    )
    parser.add_argument("model", nargs="?", help="a zoo model name, or a path to an ArchSpec .json")
    parser.add_argument("--input-size", type=int, help="input side in pixels (default: 224)")
    parser.add_argument("--classes", type=int, help="number of classes (default: 1000)")
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
    spec = _cli.load_model_arg(args.model, args.input_size, args.classes)
    if args.json:
        print(json.dumps(profile(spec, args.count_bn), indent=1))
    else:
        print(format_summary(spec, spec_cost(spec, count_bn=args.count_bn), args.count_bn))
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run("nas.profile", main))
