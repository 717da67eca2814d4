"""`selma-bench report`: Markdown/LaTeX/CSV tables and a figure from runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from selma.cli._common import json_option, print_json
from selma.errors import SelmaError

HELP = "Markdown/LaTeX/CSV tables and a figure from runs"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `report` to the subcommands."""
    from selma.reporting.paper import paper_tables

    p = sub.add_parser("report", help=HELP)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "--paper",
        choices=paper_tables() or None,
        help="put the runs beside the paper's numbers (runs labelled <model>/<variant>)",
    )
    p.add_argument("--model", help="with --paper: the base model of the paper's rows (sd-v1-4, sd-v2, sdxl-base)")
    json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Tables and a figure from run directories."""
    from selma.reporting.report import write_report

    if args.paper:
        from selma.reporting.report import write_paper_report

        if not args.model:
            raise SelmaError("--paper needs --model (the base model of the paper's rows, e.g. sd-v2)")
        print(write_paper_report(args.runs, args.paper, args.model, args.out)[0])
        return 0
    written = write_report(args.runs, args.out)
    if args.json:
        print_json({name: str(path) for name, path in written.items()})
        return 0
    print((written["table.md"]).read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in written.values())}", file=sys.stderr)
    return 0
