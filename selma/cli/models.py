"""`selma-bench models`: list the model registry, or `models tiny-scorer KIND --out DIR` for offline runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import print_json, table

HELP = "list the model registry, or save a tiny random-weight scorer model (`models tiny-scorer KIND --out DIR`)"
TINY_SCORERS = {
    "blip-vqa": ("save_tiny_blip_vqa", {}, "BLIP VQA: --vqa blip --vqa-model DIR"),
    "blip2": ("save_tiny_blip2", {}, "BLIP-2: --vqa blip2-flant5-xl --vqa-model DIR"),
    "instructblip": (
        "save_tiny_blip2",
        {"instruct": True},
        "InstructBLIP: --vqa instructblip-vicuna-7b --vqa-model DIR",
    ),
    "llava": ("save_tiny_llava", {}, "LLaVA: --vqa llava-1.5-7b --vqa-model DIR"),
    "clip": ("save_tiny_clip", {}, "CLIP for PickScore: --checkpoint model=DIR --checkpoint processor=DIR"),
}


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `models` to the subcommands."""
    p = sub.add_parser("models", help=HELP)
    p.add_argument("action", nargs="?", choices=["list", "tiny-scorer"], default="list")
    p.add_argument("kind", nargs="?", choices=sorted(TINY_SCORERS), help="tiny-scorer: which model")
    p.add_argument("--out", type=Path, help="tiny-scorer: the folder to write")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _tiny_scorer(args: argparse.Namespace) -> int:
    import importlib

    from selma.errors import SelmaError
    from selma.io import write_folder

    if args.kind is None or args.out is None:
        raise SelmaError(f"models tiny-scorer needs a kind ({', '.join(sorted(TINY_SCORERS))}) and --out DIR")
    if args.out.exists():
        raise SelmaError(f"{args.out} exists; give a new folder")
    builder, options, use = TINY_SCORERS[args.kind]
    build = getattr(importlib.import_module("selma.harness.metrics.tiny"), builder)
    write_folder(args.out, lambda tmp: build(tmp, **options))
    if args.json:
        print_json({"kind": args.kind, "out": str(args.out)})
    else:
        print(f"wrote a tiny random-weight {args.kind} to {args.out} (scores mean nothing); use it as {use}")
    return 0


def run(args: argparse.Namespace) -> int:
    """List the model registry, or save a tiny scorer model."""
    from dataclasses import asdict

    if args.action == "tiny-scorer":
        return _tiny_scorer(args)

    from selma.models import model_registry

    specs = [model_registry().get(name) for name in model_registry()]
    if args.json:
        print_json([asdict(s) for s in specs])
        return 0
    rows = [
        [
            s.name,
            s.hub_id or (f"packaged ({s.packaged})" if s.packaged else "(built offline, random weights)"),
            s.family,
            s.resolution,
            s.prediction_type,
            s.steps,
            s.guidance_scale,
        ]
        for s in specs
    ]
    print(table(rows, ["model", "source", "family", "px", "prediction", "steps", "cfg"]))
    print("Any local diffusers pipeline directory works too.")
    return 0
