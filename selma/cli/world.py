"""`selma-bench world`: train, evaluate or export a shapes-world model (selma/world)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from selma.cli._common import (
    caption_noise,
    comma_list,
    float_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    renamed,
)

HELP = "train, evaluate or export a shapes-world model (selma/world)"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `world` to the subcommands."""
    p = sub.add_parser("world", help=HELP)
    world = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = world.add_parser("train", help="train a world model from scratch (resumes from <out>/state/)")
    q.add_argument(
        "--arch",
        default="base",
        choices=["base", "weak", "base-coord", "base-bidir", "base-coord-bidir", "base-twopass", "base-coord-twopass"],
        help="sizes and position signals (selma.world.model.ARCHITECTURES)",
    )
    q.add_argument("--init-from", metavar="MODEL", help="start from this world pipeline's weights (a warm start)")
    q.add_argument(
        "--coord-init-std",
        type=non_negative_float,
        default=0.0,
        help="a warm start's coordinate weights: std relative to the source's weights (0: zeros)",
    )
    q.add_argument("--warmup-steps", type=non_negative_int, default=500)
    q.add_argument(
        "--freeze-text-encoder",
        action="store_true",
        help="train the UNet alone (the warm start's text encoder kept): a deficit then lives where LoRAs act",
    )
    q.add_argument("--ema-decay", type=non_negative_float, default=0.999)
    q.add_argument(
        "--timestep-bias-multiplier",
        type=positive_float,
        default=1.0,
        help="weight of the noisiest timesteps (diffusers' timestep bias, strategy later; 1: uniform)",
    )
    q.add_argument("--timestep-bias-portion", type=positive_float, default=0.25, help="share of timesteps biased")
    q.add_argument("--checkpoint-every", type=positive_int, default=500, help="optimizer steps between saved states")
    q.add_argument("--max-train-steps", type=positive_int, default=12000, help="optimizer steps")
    renamed(q, "--steps", "--max-train-steps")
    q.add_argument("--batch-size", type=positive_int, default=64)
    q.add_argument("--learning-rate", type=positive_float, default=1e-3)
    renamed(q, "--lr", "--learning-rate")
    q.add_argument("--seed", type=non_negative_int, default=0)
    q.add_argument("--eval-every", type=positive_int, default=1000)
    q.add_argument("--eval-prompts-per-skill", type=positive_int, default=32, help="evaluation prompts per skill")
    renamed(q, "--per-skill", "--eval-prompts-per-skill")
    q.add_argument("--threads", type=positive_int, help="torch CPU threads")
    q.add_argument(
        "--caption-noise",
        type=caption_noise,
        default=caption_noise(""),
        metavar="RATE=P,...",
        help="captions that omit (count_omitted, count_vague, color_dropped, object_omitted, relation_stated) "
        "or are wrong (color_swapped, count_off_by_one, relation_flipped)",
    )
    q.add_argument(
        "--spatial-jitter",
        type=non_negative_int,
        help="spatial scenes in canonical layouts, objects moved by at most this many pixels (0-3)",
    )
    q.add_argument(
        "--noise-skills",
        type=comma_list,
        help="the skills whose captions get --caption-noise, comma-separated (default: all)",
    )
    q.add_argument(
        "--skill-weights", type=float_list, help="shares of object, count, binding, spatial, count_binding in a batch"
    )
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=run)
    q = world.add_parser("eval", help="per-skill exact scores of a world model")
    q.add_argument("model", help="shapes-base, shapes-weak or a pipeline directory")
    q.add_argument("--prompts-per-skill", type=positive_int, default=32)
    renamed(q, "--per-skill", "--prompts-per-skill")
    q.add_argument("--seed", type=non_negative_int, default=0)
    q.add_argument("--guidance-scale", type=non_negative_float, default=4.0)
    renamed(q, "--guidance", "--guidance-scale")
    q.set_defaults(func=run)
    q = world.add_parser("export", help="copy a training run's pipeline at a step, with its training record")
    q.add_argument("run", type=Path)
    q.add_argument("--step", type=positive_int, required=True)
    q.add_argument("--to", type=Path, required=True)
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, evaluate or export a shapes-world model."""
    from selma.world.train_model import (
        SamplingSettings,
        WorldTrainConfig,
        evaluate_world_pipeline,
        export_world_model,
        train_world_model,
    )

    if args.action == "train":
        config = WorldTrainConfig(
            architecture=args.arch,
            steps=args.max_train_steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=args.seed,
            eval_every=args.eval_every,
            eval_per_skill=args.eval_prompts_per_skill,
            caption_noise=args.caption_noise,
            init_from=args.init_from,
            spatial_jitter=args.spatial_jitter,
            noise_skills=tuple(args.noise_skills) if args.noise_skills else None,
            coord_init_std=args.coord_init_std,
            freeze_text_encoder=args.freeze_text_encoder,
            warmup_steps=args.warmup_steps,
            ema_decay=args.ema_decay,
            checkpoint_every=args.checkpoint_every,
            timestep_bias_multiplier=args.timestep_bias_multiplier,
            timestep_bias_portion=args.timestep_bias_portion,
            **({"skill_weights": tuple(args.skill_weights)} if args.skill_weights else {}),
        )
        command = "selma-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        record = train_world_model(config, args.out, threads=args.threads, progress=not args.quiet, command=command)
        print(json.dumps(record))
        return 0
    if args.action == "export":
        record = export_world_model(args.run, args.step, args.to)
        print(f"{args.to}: step {record['steps']}, {json.dumps(record['evaluation'])}")
        return 0
    from selma.models import load_pipeline, resolve_model

    pipe = load_pipeline(resolve_model(args.model))
    scores = evaluate_world_pipeline(
        pipe,
        per_skill=args.prompts_per_skill,
        seed=args.seed,
        sampling=SamplingSettings(guidance_scale=args.guidance_scale),
    )
    print(json.dumps(scores, indent=2))
    return 0
