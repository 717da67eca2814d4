"""`selma-bench export`: score runs in another tool's results layout (lm-evaluation-harness)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import print_json

HELP = "write score runs in lm-evaluation-harness's results layout"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `export` to the subcommands."""
    p = sub.add_parser("export", help=HELP)
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders (with summary.json)")
    p.add_argument("--format", choices=["lm-eval"], default="lm-eval")
    p.add_argument("--out", type=Path, required=True, help="the output folder (one subfolder per model)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export runs."""
    from selma.reporting.export import export_lm_eval

    written = export_lm_eval(args.runs, args.out)
    if args.json:
        print_json({"format": args.format, "results": [str(p) for p in written]})
    else:
        for path in written:
            print(f"wrote {path}")
    return 0
