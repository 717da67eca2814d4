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
    add_train_settings(p)
    renamed(p, "--steps", "--max-train-steps")
    p.add_argument("--resume", help="'latest' or a checkpoint folder")
    p.add_argument("--device", help="cpu to force the CPU")
    force_option(p)
    json_option(p)
    p.set_defaults(func=run)


def add_train_settings(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~selma.recipe.train_config.TrainConfig` setting, with its help, check and choices;
    unset flags keep the model family's default.
    """
    from selma.recipe.train_config import train_settings

    numbers = {
        (int, "positive"): positive_int,
        (int, "non_negative"): non_negative_int,
        (float, "positive"): positive_float,
    }
    for setting in train_settings():
        if not setting.cli:
            continue
        kwargs: dict[str, Any] = {"dest": setting.name, "default": None, "help": setting.family_help}
        if setting.type is bool:
            flag = setting.flag if not setting.default else "--no-" + setting.flag.removeprefix("--")
            kwargs["action"] = "store_true" if not setting.default else "store_false"
            kwargs["help"] = setting.help if not setting.default else f"don't {setting.help}"
            parser.add_argument(flag, **kwargs)
            continue
        if setting.choices:
            kwargs["choices"] = list(setting.choices)
            parser.add_argument(setting.flag, **kwargs)
            continue
        kwargs["metavar"] = setting.flag.removeprefix("--").upper().replace("-", "_")
        if setting.default == ():
            kwargs["action"] = "append"
        else:
            kind = next((t for t in (int, float) if setting.type in (t, t | None)), str)
            kwargs["type"] = numbers.get((kind, setting.check), kind)
        parser.add_argument(setting.flag, **kwargs)


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (the others keep their defaults)."""
    from selma.recipe.train_config import train_settings

    given = {s.name: getattr(args, s.name) for s in train_settings() if s.cli}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v is not None}


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
    config = TrainConfig.for_model(model, **train_overrides(args))
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
