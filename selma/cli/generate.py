"""`selma-bench generate`: stage 2: images for a prompt file (resumable; accelerate launch shards it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import (
    emit,
    force_option,
    json_option,
    live_lora_option,
    model_option,
    model_ref,
    non_negative_float,
    non_negative_int,
    positive_int,
    renamed,
    resolution,
)

HELP = "stage 2: images for a prompt file (resumable; accelerate launch shards it)"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `generate` to the subcommands."""
    p = sub.add_parser("generate", help=HELP)
    p.add_argument("--prompts", required=True, type=Path, help="JSONL of {id, text} or one prompt per line")
    model_option(p)
    p.add_argument(
        "--variant", default="base", help="base, expert:<skill>, multi, merged[:<method>], gt:<name>, w2s:<weak>"
    )
    p.add_argument("--workdir", type=Path, default=Path("selma-work"), help="where variants' LoRAs live")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--inference-steps", type=positive_int, help="denoising steps (default: the model's)")
    renamed(p, "--steps", "--inference-steps")
    p.add_argument("--guidance-scale", type=non_negative_float, help="default: the model's")
    p.add_argument("--resolution", type=resolution, help="default: the model's native resolution")
    p.add_argument("--images-per-prompt", type=positive_int, default=1)
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--limit", type=positive_int, help="only the first N prompts")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    force_option(p)
    live_lora_option(p)
    json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render images for a prompt file."""
    from selma.recipe.generate import GenerationSettings, generate
    from selma.recipe.prompts import read_prompt_file
    from selma.recipe.variants import resolve_variant

    prompts = read_prompt_file(args.prompts)
    if args.limit:
        prompts = prompts[: args.limit]
    variant = resolve_variant(model_ref(args), args.variant, workdir=args.workdir, fuse=not args.live_lora)
    settings = GenerationSettings.for_variant(
        variant,
        steps=args.inference_steps,
        guidance_scale=args.guidance_scale,
        resolution=args.resolution,
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        dtype=args.dtype,
    )
    device = args.device
    if device == "cuda":  # one GPU per process under `accelerate launch`
        from accelerate import PartialState

        device = f"cuda:{PartialState().local_process_index}"
    result = generate(
        prompts,
        settings,
        args.out,
        lambda: variant.load(device=device, dtype=args.dtype),
        batch_size=args.batch_size,
        prompt_file=args.prompts,
        force=args.force,
    )
    emit(
        args,
        {**result, "out": str(args.out)},
        f"{result['rendered']} rendered, {result['skipped']} already present, {result['total']} in {args.out}",
    )
    return 0
