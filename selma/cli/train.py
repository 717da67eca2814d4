"""`selma-bench train`: stage 3: train a LoRA (diffusers conventions, the paper's defaults)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import (
    emit,
    force_option,
    json_option,
    model_option,
    model_ref,
    non_negative_int,
    positive_float,
    positive_int,
    renamed,
)
from selma.errors import SelmaError

HELP = "stage 3: train a LoRA (diffusers conventions, the paper's defaults)"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `train` to the subcommands."""
    p = sub.add_parser("train", help=HELP)
    model_option(p)
    p.add_argument(
        "--data",
        required=True,
        nargs="+",
        action="extend",
        help="image folders (metadata.jsonl/.csv), save_to_disk folders, parquet files or folders, or hub datasets",
    )
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--as", dest="as_variant", help="or: expert:<skill>, multi, gt:<name>, w2s:<weak> in --workdir")
    p.add_argument("--workdir", type=Path, default=Path("selma-work"))
    p.add_argument("--rank", type=positive_int, default=128)
    p.add_argument("--alpha", type=positive_int, default=128)
    p.add_argument("--learning-rate", type=positive_float, default=3e-4)
    p.add_argument("--batch-size", type=positive_int, help="default 16 (SDXL 4)")
    p.add_argument("--gradient-accumulation-steps", type=positive_int, help="default 4 (SDXL 8)")
    p.add_argument("--max-train-steps", type=positive_int, help="optimizer steps (default 5,000; SDXL 10,000)")
    renamed(p, "--steps", "--max-train-steps")
    p.add_argument(
        "--resolution", type=int, help="default: SELMA's (512 for SD v1/v2, 1024 for SDXL; native for others)"
    )
    p.add_argument("--vae", help="autoencoder to train with (default SDXL: madebyollin/sdxl-vae-fp16-fix, as SELMA)")
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "fp16", "bf16"])
    p.add_argument("--seed", type=non_negative_int, default=42)
    p.add_argument("--checkpointing-steps", type=positive_int, help="default 500 (SDXL 2,000)")
    p.add_argument("--checkpoints-total-limit", type=positive_int)
    p.add_argument("--resume", help="'latest' or a checkpoint folder")
    p.add_argument("--cache", action="store_true", help="cache VAE latents (both flips) and text embeddings on disk")
    p.add_argument("--cache-dir", help="where the cache's files go (default: the system's temporary folder)")
    p.add_argument(
        "--no-random-flip",
        dest="random_flip",
        action="store_false",
        help="never flip training images (flips swap left and right: turn them off for spatial skills)",
    )
    p.add_argument(
        "--lr-scheduler",
        default="constant",
        choices=["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"],
    )
    p.add_argument("--lr-warmup-steps", type=non_negative_int, default=0)
    p.add_argument(
        "--report-to",
        choices=["tensorboard", "wandb"],
        help="log loss, learning rate and validation images (wandb: set WANDB_MODE=offline to stay offline)",
    )
    p.add_argument("--logging-dir", help="the tracker's folder (default: OUT/logs)")
    p.add_argument(
        "--validation-prompt",
        action="append",
        default=[],
        help="a prompt rendered every --validation-steps into OUT/validation/step-N/ (repeat for several)",
    )
    p.add_argument("--validation-steps", type=positive_int, default=500)
    p.add_argument("--dataset-config", help="the configuration of a `datasets.load_dataset` source")
    p.add_argument("--split", default="train", help="the split of a datasets source (default: train)")
    p.add_argument("--image-column", default="image")
    p.add_argument("--caption-column", default="text")
    p.add_argument("--limit", type=positive_int, help="use the first N examples")
    p.add_argument("--device", help="cpu to force the CPU")
    force_option(p)
    json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train one LoRA (an expert, the multi-skill baseline, a GT or weak-to-strong LoRA)."""
    from selma.models import resolve_model
    from selma.recipe.train import TrainConfig, train_lora
    from selma.recipe.variants import variant_dir

    model = resolve_model(model_ref(args))
    if (args.out is None) == (args.as_variant is None):
        raise SelmaError("give exactly one of --out DIR and --as VARIANT")
    out = args.out or variant_dir(args.workdir, model, args.as_variant)
    if out is None:
        raise SelmaError("--as base names no LoRA")
    config = TrainConfig.for_model(
        model,
        rank=args.rank,
        alpha=args.alpha,
        learning_rate=args.learning_rate,
        train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_train_steps=args.max_train_steps,
        resolution=args.resolution,
        vae=args.vae,
        mixed_precision=args.mixed_precision,
        seed=args.seed,
        checkpointing_steps=args.checkpointing_steps,
        checkpoints_total_limit=args.checkpoints_total_limit,
        cache=args.cache,
        cache_dir=args.cache_dir,
        random_flip=args.random_flip,
        lr_scheduler=args.lr_scheduler,
        lr_warmup_steps=args.lr_warmup_steps,
        report_to=args.report_to,
        logging_dir=args.logging_dir,
        validation_prompts=tuple(args.validation_prompt),
        validation_steps=args.validation_steps,
        dataset_config=args.dataset_config,
        split=args.split,
        image_column=args.image_column,
        caption_column=args.caption_column,
        limit=args.limit,
    )
    result = train_lora(
        model, [str(d) for d in args.data], out, config, resume=args.resume, device=args.device, force=args.force
    )
    if result:
        emit(
            args,
            {**result, "out": str(out)},
            f"{out}: {result['steps']} steps on {result['n_examples']} examples; last loss {result['losses'][-1]:.4f}",
        )
    return 0
