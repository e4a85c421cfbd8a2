"""``python -m nas.paths MODEL|SPEC.json``: the gradient-path metrics of a network, as a table,
as JSON (``--json``, the shape of :meth:`nas.core.metrics.PathReport.to_dict` plus the ranking key)
or as a drawing of one stage or block with its cheapest paths (``--plot``)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas import cli
from nas.core import scopes as names
from nas.core.graph import lower, ops_arch_id, scopes
from nas.core.metrics import PathGraph, PathReport, PathStats, path_report
from nas.core.names import printable
from nas.core.pathplot import plot_scope
from nas.core.scorers import DEFAULT_SCORER, Scorer, get_scorer, list_scorers, measure
from nas.core.spec import ArchSpec
from nas.profile import json_text, text_table

PLOT_FORMATS = (".png", ".svg", ".pdf")


def _fmt(values: Sequence[Any], scale: float = 1.0) -> str:
    return ", ".join("-" if v is None else f"{v / scale:.4g}" for v in values)


def format_report(name: str, report: PathReport, key: tuple, scorer: str) -> str:
    """The human-readable report (default output)."""

    def rows(stats: dict[str, PathStats]) -> str:
        return text_table(
            [
                {
                    "scope": n,
                    "N (MFLOP-eq)": _fmt(s.N, 1e6),
                    "paths per N": _fmt(s.count),
                    "L (binary convs)": _fmt(s.L),
                    "paths per L": _fmt(s.L_count),
                }
                for n, s in stats.items()
            ]
        )

    net = report.network
    parts = [
        f"{printable(name)}: gradient paths (N in millions of FLOP-equivalents = BOPs/64; "
        "'-' = missing)",
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


def analyse(spec: ArchSpec, scorer: Scorer | None = None):
    """The path graph, the report and the ranking key of ``spec`` (what every output needs)."""
    ops = lower(spec)
    graph = PathGraph.from_ops(ops, scopes(ops))
    report = path_report(graph)
    key = (scorer or get_scorer(DEFAULT_SCORER))(measure(ops, report))
    return ops, graph, report, key


def render(spec: ArchSpec, scorer: str = DEFAULT_SCORER, as_json: bool = False) -> str:
    """What the command prints for ``spec``: the tables, or the JSON object."""
    ops, _, report, key = analyse(spec, get_scorer(scorer))
    return _output(spec, ops, report, key, scorer, as_json)


def _output(spec, ops, report: PathReport, key: tuple, scorer: str, as_json: bool) -> str:
    if not as_json:
        return format_report(spec.name, report, key, scorer)
    out = {
        "model": spec.name,
        "arch_id": ops_arch_id(ops),
        "scorer": scorer,
        "key": list(key),  # finite for every network (nas.core.scorers: a missing value's ceiling)
        **report.to_dict(),
    }
    return json_text(out)


def _check_plot_file(path: str) -> None:
    """Refuse a ``--plot`` file that cannot be written before any work is done: an unknown image
    format (a usage error) or a folder that is missing or no folder (an OSError naming it)."""
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise cli.UsageError(
            f"--plot {printable(path)}: give a file name ending in {', '.join(PLOT_FORMATS)}"
        )
    folder = Path(path).parent
    if not folder.is_dir():
        code = errno.ENOTDIR if folder.exists() or _under_a_file(folder) else errno.ENOENT
        raise OSError(code, os.strerror(code), path)


def _under_a_file(folder: Path) -> bool:
    return any(p.exists() and not p.is_dir() for p in folder.parents)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m nas.paths",
        description="Gradient-path metrics N_1st/N_2nd/N_3rd and L_1st/L_2nd/L_3rd of a network.",
    )
    parser.add_argument("model", help="a zoo model name, or a path to an ArchSpec .json")
    cli.add_spec_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw a stage or block with its cheapest gradient paths (.png, .svg or .pdf)",
    )
    parser.add_argument(
        "--scope",
        default=names.stage_label(0),
        help=f"what --plot draws: a stage ({names.stage_label(0)}) or block "
        f"({names.block_path(0, 0)})",
    )
    parser.add_argument(
        "--scorer", default=DEFAULT_SCORER, help=f"ranking key, one of: {', '.join(list_scorers())}"
    )
    args = parser.parse_args(argv)
    try:
        scorer = get_scorer(args.scorer)
    except KeyError as e:
        raise cli.UsageError(e.args[0]) from None
    if args.plot:
        _check_plot_file(args.plot)
    spec = cli.load_model_arg(args.model, args.input_size, args.classes)
    ops, graph, report, key = analyse(spec, scorer)
    if args.plot:
        known = [n for n, _, _ in graph.scopes["stages"] + graph.scopes["blocks"]]
        if args.scope not in known:
            raise cli.UsageError(
                f"unknown scope {printable(repr(args.scope))}; choose one of "
                f"{', '.join(known[:6])}, ..."
            )
        try:
            plot_scope(spec, graph, args.scope, args.plot)
        except ValueError as e:  # a scope too large to draw
            raise cli.UsageError(str(e)) from None
    print(_output(spec, ops, report, key, args.scorer, args.json))
    if args.plot and not args.json:
        print(f"\nplot of {args.scope} written to {printable(args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("nas.paths", main))
