"""`selma-bench reproduce`: the paper's tables as studies: --list, or run one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import table
from selma.cli.study import run_study_file
from selma.errors import SelmaError


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `reproduce` to the subcommands."""
    p = sub.add_parser(
        "reproduce",
        parents=[common["data"], common["launch"]],
        help="the paper's tables as studies: --list, or run one",
    )
    p.add_argument("name", nargs="?")
    p.add_argument("--list", action="store_true")
    p.add_argument("--out", type=Path)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List or run the paper-reproduction studies."""
    from selma.orchestration.study import load_study
    from selma.reporting.paper import paper_configs

    configs = paper_configs()
    if args.list or not args.name:
        rows = []
        for name, path in configs.items():
            study = load_study(path)
            rows.append([name, study.paper, study.base_model, len(study.variants), study.compute])
        print(table(rows, ["study", "paper", "model", "variants", "compute"]))
        return 0
    if args.name not in configs:
        raise SelmaError(f"unknown paper study {args.name!r}; choose one of: {', '.join(configs)}")
    return run_study_file(configs[args.name], args)
