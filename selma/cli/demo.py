"""`selma-bench demo`: the SELMA study in the shapes world, exactly scored, on a CPU."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from selma.cli._common import comma_list, non_negative_int, positive_int, renamed
from selma.orchestration.demo_config import DemoConfig

DEFAULTS = DemoConfig()
HELP = "the SELMA study in the shapes world, exactly scored, on a CPU"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `demo` to the subcommands."""
    p = sub.add_parser("demo", help=HELP)
    p.add_argument("--out", type=Path, default=Path("selma-demo"))
    p.add_argument(
        "--max-train-steps", type=positive_int, help=f"optimizer steps per LoRA (default {DEFAULTS.train_steps})"
    )
    renamed(p, "--steps", "--max-train-steps")
    p.add_argument(
        "--prompts-per-skill",
        type=positive_int,
        help=f"LLM-stage prompts per skill (default {DEFAULTS.prompts_per_skill})",
    )
    p.add_argument(
        "--train-images",
        type=positive_int,
        help=f"base-model images per training prompt (default {DEFAULTS.train_images_per_prompt})",
    )
    p.add_argument(
        "--suite", choices=["shapes", "shapes-mini", "shapes-large"], help=f"evaluation suite ({DEFAULTS.suite})"
    )
    p.add_argument("--seed", type=non_negative_int)
    p.add_argument(
        "--recipes",
        type=comma_list,
        help="data recipes of the multi-skill LoRA, comma-separated: verified (default), g8 (training images at "
        "CFG 8); '' for none",
    )
    p.add_argument(
        "--selection",
        action="store_true",
        help="also pick multi's checkpoint on held-out prompts (shapes-val) against picking it on the test suite",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the SELMA study in the shapes world."""
    from dataclasses import replace

    from selma.errors import SelmaError
    from selma.orchestration.demo import RECIPES, DemoConfig, run_demo

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the demo needs ships with the package
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    config = DemoConfig()
    sizes = {
        "train_steps": args.max_train_steps,
        "prompts_per_skill": args.prompts_per_skill,
        "train_images_per_prompt": args.train_images,
        "seed": args.seed,
        "suite": args.suite,
    }
    if args.recipes is not None:
        unknown = [r for r in args.recipes if r not in RECIPES]
        if unknown:
            raise SelmaError(f"unknown demo recipe {unknown[0]!r}: one of {', '.join(RECIPES)}")
        sizes["recipes"] = tuple(args.recipes)
    if args.selection:
        sizes["selection"] = True
    config = replace(config, **{k: v for k, v in sizes.items() if v is not None})
    result = run_demo(args.out, config, progress=not args.quiet)
    print(Path(result["reports"]["per_skill.md"]).read_text(encoding="utf-8"))
    print(f"stage timings (s): {result['timings_s']}")
    print(f"wrote {args.out / 'reports'}")
    return 0
