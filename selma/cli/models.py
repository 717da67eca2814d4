"""`selma-bench models`: list the model registry."""

from __future__ import annotations

import argparse
from typing import Any

from selma.cli._common import print_json, table

HELP = "list the model registry"


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `models` to the subcommands."""
    p = sub.add_parser("models", help=HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the model registry."""
    from dataclasses import asdict

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
