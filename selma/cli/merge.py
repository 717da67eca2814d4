"""`selma-bench merge`: stage 4: merge experts (paper: sum of ΔW at 1/N; peft combination types)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import (
    emit,
    float_list,
    force_option,
    json_option,
    model_option,
    model_ref,
    non_negative_int,
    positive_int,
    role_path,
    unit_interval,
)

HELP = "stage 4: merge experts (paper: sum of ΔW at 1/N; peft combination types)"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `merge` to the subcommands."""
    from selma.recipe.merge import METHODS

    p = sub.add_parser("merge", help=HELP)
    model_option(p)
    p.add_argument(
        "--experts",
        nargs="+",
        action="extend",
        type=role_path,
        metavar="NAME=DIR",
        help="default: all experts in --workdir",
    )
    p.add_argument("--method", default="paper", choices=list(METHODS))
    p.add_argument("--weights", type=float_list, help="comma-separated, default 1/N each")
    p.add_argument("--density", type=unit_interval, help="for ties, dare_*, magnitude_prune (default 0.5)")
    p.add_argument("--svd-rank", type=positive_int)
    p.add_argument("--seed", type=non_negative_int, default=0, help="for dare_* random pruning")
    p.add_argument("--out", type=Path, help="default: <workdir>/<model>/merged-<method>")
    p.add_argument("--fused-pipeline", type=Path, help="also save a full pipeline with the merge fused in")
    p.add_argument("--workdir", type=Path, default=Path("selma-work"))
    force_option(p)
    json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Merge expert LoRAs."""
    from selma.models import resolve_model
    from selma.recipe.merge import merge_experts
    from selma.recipe.variants import find_experts, variant_dir

    model = resolve_model(model_ref(args))
    experts = dict(args.experts) if args.experts else find_experts(args.workdir, model)
    out = args.out or variant_dir(args.workdir, model, f"merged:{args.method}")
    weights = args.weights
    result = merge_experts(
        model,
        experts,
        out,
        method=args.method,
        weights=weights,
        density=args.density,
        seed=args.seed,
        svd_rank=args.svd_rank,
        fused_pipeline=args.fused_pipeline,
        force=args.force,
    )
    emit(
        args,
        {**result, "out": str(out)},
        f"{out}: {result['method']} merge of {', '.join(result['experts'])} at weights {result['weights']}",
    )
    return 0
