"""`selma-bench compare`: paired-bootstrap difference of two runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import non_negative_int, positive_int, print_json, table

HELP = "paired-bootstrap difference of two runs"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `compare` to the subcommands."""
    p = sub.add_parser("compare", help=HELP)
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--bootstrap", type=positive_int, default=2000, metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Paired-bootstrap difference between two runs."""
    from selma.reporting.compare import compare_runs

    result = compare_runs(args.run_a, args.run_b, seed=args.seed, n_resamples=args.bootstrap)
    if args.json:
        print_json(result)
        return 0
    a, b, d = result["a"], result["b"], result["difference"]
    print(f"{result['suite']} ({result['metric']}): B − A over {d['n']} prompts, paired bootstrap")
    print(f"  A {a['label']}: {a['score']:.1f}\n  B {b['label']}: {b['score']:.1f}")
    rows = [["all", d["delta"], *d["ci"], d["p_value"]]]
    rows += [[k, v["delta"], *v["ci"], v["p_value"]] for k, v in result["by_category"].items()]
    print(table(rows, ["category", "B − A", "ci low", "ci high", "p"], ("", ".1f", ".1f", ".1f", ".3f")))
    return 0
