"""`selma-bench run`: generate (cached) -> score (cached) -> table for one variant."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import (
    checkpoint_roles,
    data_locator,
    force_option,
    live_lora_option,
    model_option,
    model_ref,
    non_negative_int,
    positive_int,
    print_json,
)


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `run` to the subcommands."""
    from selma.harness.metrics import all_metrics
    from selma.harness.metrics.vqa import vqa_models
    from selma.harness.scoring.conventions import conventions

    p = sub.add_parser(
        "run", parents=[common["data"]], help="generate (cached) -> score (cached) -> table for one variant"
    )
    p.add_argument("--suite", required=True)
    model_option(p)
    p.add_argument("--variant", default="base")
    p.add_argument("--metric", action="append", choices=all_metrics().names(), help="default: the suite's own")
    p.add_argument("--vqa", choices=vqa_models.names(), help="VQA model for question-answer metrics (see `metrics`)")
    p.add_argument(
        "--convention",
        action="append",
        choices=list(conventions),
        help="a question-answer metric's scoring convention (default: the official one); repeat for several",
    )
    p.add_argument("--vqa-model", help="its local path or hub id")
    p.add_argument("--checkpoint", action="append", default=[], metavar="[METRIC:]ROLE=PATH")
    p.add_argument("--limit", type=positive_int)
    p.add_argument("--images-per-prompt", type=positive_int, default=1)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="generation dtype (GPU: float16)"
    )
    p.add_argument("--batch-size", type=positive_int, default=4)
    live_lora_option(p)
    p.add_argument("--workdir", type=Path, default=Path("selma-work"))
    p.add_argument("--out", type=Path, default=Path("selma-runs") / "run")
    force_option(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and what is cached; load nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _conventions_by_metric(names: list[str] | None) -> dict[str, str]:
    from selma.harness.scoring.conventions import conventions

    return {conventions.get(name).metric: name for name in names or []}


def run(args: argparse.Namespace) -> int:
    """Generate (cached), score (cached) and tabulate one variant on one suite."""
    from dataclasses import asdict

    from selma.harness.metrics import qa_metrics
    from selma.orchestration.pipeline import RunRequest, plan_run, run_variant

    metrics = tuple(args.metric or ())
    checkpoints = {m: checkpoint_roles(args.checkpoint, m) for m in metrics or qa_metrics()}
    for metric in qa_metrics():
        if args.vqa:
            checkpoints.setdefault(metric, {})["vqa"] = args.vqa
        if args.vqa_model:
            checkpoints.setdefault(metric, {})["model"] = args.vqa_model
    request = RunRequest(
        suite=args.suite,
        model=model_ref(args),
        variant=args.variant,
        metrics=metrics,
        checkpoints={k: v for k, v in checkpoints.items() if v},
        conventions=_conventions_by_metric(args.convention),
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        limit=args.limit,
        device=args.device,
        batch_size=args.batch_size,
        fuse_lora=not args.live_lora,
        dtype=args.dtype,
        force=args.force,
    )
    locator = data_locator(args)
    if args.dry_run:
        planned = plan_run(request, locator, workdir=args.workdir, out_root=args.out)
        if args.json:
            print_json(asdict(planned))
            return 0
        print(
            f"{planned.model} / {planned.variant} on {planned.suite}: {planned.n_prompts} prompts, "
            f"{planned.n_images} images ({planned.images_cached} already rendered) in {planned.images_dir}"
        )
        for metric, info in planned.metrics.items():
            state = "cached" if info["cached"] else f"{info['model_calls']} model calls"
            print(f"  {metric}: {state}")
        for role, path in planned.models.items():
            print(f"  {role}: {path or 'not on this machine (downloaded when run online)'}")
        print(f"estimated time on {args.device}: about {planned.estimate_s:.0f} s (rough)")
        return 0
    result = run_variant(request, locator, workdir=args.workdir, out_root=args.out)
    if args.json:
        print_json(result)
    else:
        generated = result["generated"]
        print(f"images: {generated['rendered']} rendered, {generated['skipped']} reused, in {result['dir']}")
        for metric, folder in result["score_dirs"].items():
            print(f"{metric} run: {folder} (`selma-bench leaderboard add BOARD.csv {folder}`)")
        print(result["table"])
    return 0
