"""`selma-bench meta-eval`: agreement of VQA scores with human ratings (TIFA-160)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from selma.cli._common import data_locator, table


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `meta-eval` to the subcommands."""
    p = sub.add_parser(
        "meta-eval", parents=[common["data"]], help="agreement of VQA scores with human ratings (TIFA-160)"
    )
    p.add_argument("--likert", required=True, type=Path, help="tifa160-likert-anns.csv")
    p.add_argument("--answers", required=True, type=Path, help="folder of <vqa>_<dsg|tifa|vq2a>.csv answer files")
    p.add_argument("--tifa-questions", type=Path, help="tifa_v1.0_question_answers.json, for multiple-choice questions")
    p.add_argument("--out", type=Path, help="write meta-eval summary and per-image records here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Agreement of VQA-based scores with human ratings on TIFA-160."""
    from selma.harness.metaeval import run_meta_eval

    summary, _ = run_meta_eval(
        args.likert, args.answers, data_locator(args), tifa_questions=args.tifa_questions, out=args.out
    )
    results = summary.results
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        print(summary.model_dump_json(indent=2))
    else:
        rows = [[k, r.spearman, r.kendall, r.n, r.tifa_gold or ""] for k, r in results.items()]
        print(table(rows, ["vqa/questions", "spearman", "kendall tau-b", "n", "TIFA gold answers"], ".3f"))
        for note in summary.notes:
            print(f"note: {note}")
    return 0
