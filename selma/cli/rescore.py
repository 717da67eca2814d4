"""`selma-bench rescore`: score recorded VQA answers (DSG CSV, TIFA result JSON)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from selma.cli._common import data_locator, force_option, non_negative_int, positive_int, table


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `rescore` to the subcommands."""
    from selma.harness.scoring.conventions import conventions
    from selma.harness.scoring.matchers import matchers

    p = sub.add_parser(
        "rescore", parents=[common["data"]], help="score recorded VQA answers (DSG CSV, TIFA result JSON)"
    )
    p.add_argument("--suite", required=True, help="a suite with questions (dsg, tifa160, tifa)")
    p.add_argument("--answers", required=True, type=Path, help="answers file")
    p.add_argument("--answers-format", help="a registered answer format (default: from the file suffix)")
    p.add_argument("--t2i-model", help="which model's answers, when the file has several")
    p.add_argument(
        "--convention", choices=list(conventions), help="scoring convention (default: the metric's official one)"
    )
    p.add_argument("--matcher", choices=list(matchers), help="answer-to-choice mapping (default: the convention's)")
    p.add_argument("--matcher-model", help="local path (or hub id) of the SBERT model for --matcher sbert")
    p.add_argument("--strict", action="store_true", help="a blank answer is an error instead of scoring 0")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed")
    p.add_argument("--bootstrap", type=positive_int, default=2000, metavar="N", help="bootstrap resamples")
    p.add_argument("--label", help="row label in tables")
    p.add_argument("--out", type=Path, help="run directory (default: selma-runs/rescore-<suite>-<file>-<hash>)")
    force_option(p, "replace a run of another configuration in --out")
    p.add_argument("--json", action="store_true", help="print the summary JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score recorded VQA answers with a suite's rules."""
    from selma.harness.rescore import RescoreRequest, rescore
    from selma.harness.scoring.conventions import conventions

    request = RescoreRequest(
        suite=args.suite,
        answers=args.answers,
        answers_format=args.answers_format,
        t2i_model=args.t2i_model,
        convention=args.convention,
        matcher=args.matcher,
        matcher_model=args.matcher_model,
        strict=args.strict,
        seed=args.seed,
        n_resamples=args.bootstrap,
        label=args.label,
    )
    result = rescore(request, data_locator(args), out=args.out, force=args.force)
    summary = result.summary
    if args.json:
        print(summary.model_dump_json(indent=2))
    else:
        low, high = summary.ci["score"]
        print(f"{summary.label} on {summary.suite} (convention {summary.convention}): {summary.n_prompts} prompts")
        print(f"  score {summary.score:.2f}  [95% CI {low:.2f}, {high:.2f}]")
        if conventions.get(summary.convention).dependencies != "none":
            no_dep, macro, micro = summary.score_no_dependency, summary.macro, summary.micro
            print(f"  without dependency rule {no_dep:.2f}   per prompt {macro:.2f}   per question {micro:.2f}")
        rows = [[k, v, *summary.by_category_ci[k]] for k, v in summary.by_category.items()]
        print(table(rows, ["category", "score", "ci low", "ci high"]))
    sys.stdout.flush()
    # one write: unbuffered, print() sends the newline apart, and a pipe (`| head`) may land inside the line
    sys.stderr.write(f"{'reused' if result.cached else 'wrote'} {result.run_dir}\n")
    return 0
