"""``python -m nas.paths MODEL|SPEC.json``: the gradient-path metrics of a network, as a table,
as JSON (``--json``, the shape of :meth:`nas.metrics.PathReport.to_dict` plus the ranking key) or
as a drawing of one stage or block with its cheapest paths (``--plot``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from nas import _cli
from nas.graph import arch_id, lower, scopes
from nas.metrics import PathGraph, PathReport, PathStats, path_report
from nas.scorers import DEFAULT_SCORER, get_scorer, list_scorers


def _fmt(values: Sequence[Any], scale: float = 1.0) -> str:
    return ", ".join("-" if v is None else f"{v / scale:.4g}" for v in values)


def format_report(name: str, report: PathReport, key: tuple, scorer: str) -> str:
    """The human-readable report (default output)."""
    import pandas as pd

    def rows(stats: dict[str, PathStats]) -> str:
        return pd.DataFrame(
            {
                "scope": n,
                "N (MFLOP-eq)": _fmt(s.N, 1e6),
                "paths per N": _fmt(s.count),
                "L (binary convs)": _fmt(s.L),
                "paths per L": _fmt(s.L_count),
            }
            for n, s in stats.items()
        ).to_string(index=False)

    net = report.network
    parts = [
        f"{name}: gradient paths (N in millions of FLOP-equivalents = BOPs/64; '-' = missing)",
        f"network  N = ({_fmt(net.N, 1e6)})  L = ({_fmt(net.L)})  "
        f"paths per N = ({_fmt(net.count)})",
        f"ranking key ({scorer}, smaller is better): ({_fmt(key, 1e6)})",
    ]
    if report.stages:
        parts.append("stages\n" + rows(report.stages))
    if report.blocks:
        parts.append("blocks\n" + rows(report.blocks))
    if report.layers:
        parts.append(
            "binary convs (paths from the conv's output to the network output)\n"
            + rows(report.layers)
        )
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _cli.Parser(
        prog="python -m nas.paths",
        description="Gradient-path metrics N_1st/N_2nd/N_3rd and L_1st/L_2nd/L_3rd of a network.",
    )
    parser.add_argument("model", help="a zoo model name, or a path to an ArchSpec .json")
    parser.add_argument("--input-size", type=int, help="input side in pixels (default: 224)")
    parser.add_argument("--classes", type=int, help="number of classes (default: 1000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw a stage or block with its cheapest gradient paths"
    )
    parser.add_argument(
        "--scope",
        default="stage1",
        help="what --plot draws: a stage (stage1) or block (stages.0.blocks.0)",
    )
    parser.add_argument(
        "--scorer", default=DEFAULT_SCORER, help=f"ranking key, one of: {', '.join(list_scorers())}"
    )
    args = parser.parse_args(argv)
    try:
        scorer = get_scorer(args.scorer)
    except KeyError as e:
        raise _cli.UsageError(e.args[0]) from None
    spec = _cli.load_model_arg(args.model, args.input_size, args.classes)
    ops = lower(spec)
    graph = PathGraph.from_ops(ops, scopes(ops))
    report = path_report(graph)
    key = scorer(report)
    if args.plot:
        from nas.pathplot import plot_scope

        known = [n for n, _, _ in graph.scopes["stages"] + graph.scopes["blocks"]]
        if args.scope not in known:
            raise _cli.UsageError(
                f"unknown scope {args.scope!r}; choose one of {', '.join(known[:6])}, ..."
            )
        plot_scope(spec, graph, args.scope, args.plot)
    if args.json:
        out = {
            "model": spec.name,
            "arch_id": arch_id(spec),
            "scorer": args.scorer,
            "key": [None if k == float("inf") else k for k in key],
            **report.to_dict(),
        }
        print(json.dumps(out, indent=1))
    else:
        print(format_report(spec.name, report, key, args.scorer))
        if args.plot:
            print(f"\nplot of {args.scope} written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run("nas.paths", main))
