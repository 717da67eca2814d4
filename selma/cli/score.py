"""`selma-bench score`: score a folder of images of a suite's prompts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from selma.cli._common import (
    checkpoint_roles,
    data_locator,
    force_option,
    non_negative_int,
    positive_int,
    print_json,
    table,
)


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `score` to the subcommands."""
    from selma.harness.metrics import all_metrics
    from selma.harness.scoring.conventions import conventions

    p = sub.add_parser("score", parents=[common["data"]], help="score a folder of images of a suite's prompts")
    p.add_argument("--suite", required=True)
    p.add_argument(
        "--images",
        required=True,
        type=Path,
        help="generate's folder, an imagefolder (metadata.jsonl or .csv), GenEval's <i>/samples/, T2I-CompBench's "
        "samples/<prompt>_<k>.png, or files named by prompt id or text",
    )
    p.add_argument("--metric", required=True, action="append", choices=all_metrics().names())
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="[METRIC:]ROLE=PATH",
        help="a local checkpoint for a role (see `metrics`); e.g. pickscore:model=/models/PickScore_v1; "
        "for question-answer metrics: vqa=NAME, model=PATH and (TIFA's SBERT) matcher=PATH",
    )
    p.add_argument(
        "--convention", choices=list(conventions), help="a question-answer metric's convention (default: official)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=positive_int, help="only the first N prompts that have images")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--label")
    p.add_argument("--out", type=Path)
    force_option(p, "score again even when a run of this configuration exists")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score a folder of images with one or more metrics."""
    from selma.harness.metrics import qa_metrics
    from selma.harness.score import score_folder

    locator = data_locator(args)
    results = []
    for metric in args.metric:
        out = args.out / metric if args.out and len(args.metric) > 1 else args.out
        summary, run_dir, cached = score_folder(
            args.suite,
            args.images,
            metric,
            locator,
            checkpoints=checkpoint_roles(args.checkpoint, metric),
            convention=args.convention if metric in qa_metrics() else None,
            device=args.device,
            limit=args.limit,
            seed=args.seed,
            label=args.label,
            out=out,
            force=args.force,
        )
        results.append(summary)
        print(f"{'reused' if cached else 'wrote'} {run_dir}", file=sys.stderr)
    if args.json:
        print_json([json.loads(s.model_dump_json()) for s in results])
    else:
        rows = [[s.metric, s.score, *s.ci["score"], s.n_prompts] for s in results]
        print(table(rows, ["metric", "score", "ci low", "ci high", "prompts"], ("", ".3f", ".3f", ".3f", "")))
    return 0
