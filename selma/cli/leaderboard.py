"""`selma-bench leaderboard`: add runs to a leaderboard CSV, or render it (Markdown + HTML)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from selma.cli._common import emit, json_option, print_json
from selma.errors import SelmaError

HELP = "add runs to a leaderboard CSV, or render it (Markdown + HTML)"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `leaderboard` to the subcommands."""
    p = sub.add_parser("leaderboard", help=HELP)
    p.add_argument("action", choices=["add", "render"])
    p.add_argument("board", type=Path, help="e.g. leaderboards/dsg.csv")
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--model", help="row label (default: from the run's label)")
    p.add_argument("--variant")
    p.add_argument("--title")
    p.add_argument("--out", type=Path, help="render: output folder (default: the board's name)")
    json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Add runs to a leaderboard CSV, or render one."""
    from selma.reporting.leaderboard import add_runs, render

    if args.action == "add":
        if not args.runs:
            raise SelmaError("leaderboard add needs at least one run directory")
        frame = add_runs(args.board, args.runs, model=args.model, variant=args.variant)
        emit(args, {"board": str(args.board), "rows": len(frame)}, f"{args.board}: {len(frame)} rows")
        return 0
    written = render(args.board, args.out or args.board.with_suffix(""), title=args.title)
    if args.json:
        print_json({name: str(path) for name, path in written.items()})
        return 0
    print(written["markdown"].read_text(encoding="utf-8"))
    print(f"wrote {written['markdown']} and {written['html']}", file=sys.stderr)
    return 0
