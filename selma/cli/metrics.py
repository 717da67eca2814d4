"""`selma-bench metrics`: list the scorers, their conventions and default checkpoints."""

from __future__ import annotations

import argparse
from typing import Any

from selma.cli._common import print_json

HELP = "list the scorers, their conventions and default checkpoints"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `metrics` to the subcommands."""
    p = sub.add_parser("metrics", help=HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the scorers with their conventions, references and default checkpoints."""
    from selma.harness.metrics import all_metrics, qa_metrics
    from selma.harness.metrics.vqa import NO_TRANSFORMERS_PORT, vqa_models
    from selma.harness.scoring.conventions import conventions

    metrics = all_metrics()
    entries = [metrics.get(name).info for name in metrics]
    qa = [conventions.get(name) for name in conventions]
    if args.json:
        from dataclasses import asdict

        print_json(
            {
                "metrics": [asdict(i) for i in entries],
                "qa_conventions": [asdict(c) for c in qa],
                "vqa_models": [asdict(vqa_models.get(n)) for n in vqa_models],
                "no_transformers_port": NO_TRANSFORMERS_PORT,
            }
        )
        return 0
    for info in entries:
        print(f"{info.name}: {info.display_name}\n  {info.convention}")
        print(f"  reference: {info.reference}")
        print("  checkpoints: " + ", ".join(f"{k}={v}" for k, v in info.checkpoints.items()))
        if info.notes:
            print(f"  note: {info.notes}")
    qa_names = ", ".join(qa_metrics())
    print(f"\n{qa_names}: the suite's questions answered by a VQA model, scored by a convention (--convention NAME)")
    for convention in qa:
        default = " [default]" if convention.official else ""
        print(f"{convention.name}{default}: {convention.title}")
        print(f"  reference: {convention.reference}")
        print(f"  answers by: {convention.vqa}; answer mapping: {convention.matcher}")
        if convention.notes:
            print(f"  note: {convention.notes}")
    print("\nVQA models (--checkpoint vqa=NAME, model=PATH):")
    for name in vqa_models:
        spec = vqa_models.get(name)
        print(f"  {name}: {spec.checkpoint or '(built in)'}" + (f"; {spec.notes}" if spec.notes else ""))
    for name, why in NO_TRANSFORMERS_PORT.items():
        print(f"not available: {name}: {why}")
    return 0
