"""`selma-bench study`: build a study's variants and compare them (YAML)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from selma.cli._common import data_locator, force_option, print_json


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `study` to the subcommands."""
    p = sub.add_parser(
        "study", parents=[common["data"], common["launch"]], help="build a study's variants and compare them (YAML)"
    )
    p.add_argument("study_file", type=Path, metavar="FILE")
    p.add_argument("--out", type=Path, help="default: selma-studies/<name>")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        help="render every image in this dtype (default: the file's)",
    )
    force_option(p)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run_study_file(study_path: Path, args: argparse.Namespace) -> int:
    """Plan (``--dry-run``) or run the study in ``study_path`` with the command line's launcher settings."""
    from selma.orchestration.study import load_study, plan_study, run_study

    study = load_study(study_path)
    if getattr(args, "dtype", None):
        study = study.model_copy(update={"dtype": args.dtype})
    out = args.out or Path("selma-studies") / study.name
    locator = data_locator(args)
    if args.dry_run:
        rows = plan_study(study, out, locator)
        if args.json:
            print_json({"study": study.name, "cells": rows})
            return 0
        print(f"{study.name}: {len(study.variants)} variants x {len(study.suites)} suites -> {out}")
        for row in rows:
            if row["run"] is None:
                state = "LoRA to build first"
            else:
                run = row["run"]
                todo = ", ".join(
                    f"{m} {'cached' if i['cached'] else str(i['model_calls']) + ' calls'}"
                    for m, i in run["metrics"].items()
                )
                state = f"{run['n_images'] - run['images_cached']} images to render; {todo}"
            print(f"  {row['variant']:<28} {row['suite']:<14} {state}")
        if study.compute:
            print(f"compute: {study.compute}")
        return 0
    params: dict[str, Any] = {"timeout_min": args.timeout_min}
    if args.launcher == "slurm":
        params.update(slurm_array_parallelism=args.array_parallelism, gpus_per_node=args.gpus_per_node)
        if args.slurm_partition:
            params["slurm_partition"] = args.slurm_partition
    result = run_study(study, out, locator, launcher=args.launcher, launcher_params=params, force=args.force)
    print(result["table"].to_markdown())
    print(f"wrote {out / 'comparison.md'}, {out / 'comparison.csv'}, {out / 'study.json'}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Build a study's variants and compare them."""
    return run_study_file(args.study_file, args)
