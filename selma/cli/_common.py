"""What the subcommands share: argument types, the data options, output helpers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from selma.errors import SelmaError


def _int_at_least(value: str, minimum: int, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def positive_int(value: str) -> int:
    """An integer of at least 1 (argparse type)."""
    return _int_at_least(value, 1, "a positive integer")


def non_negative_int(value: str) -> int:
    """An integer of at least 0 (argparse type)."""
    return _int_at_least(value, 0, "an integer of at least 0")


def number_in(value: str, what: str, ok: Any) -> float:
    import math

    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if not math.isfinite(number) or not ok(number):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def positive_float(value: str) -> float:
    """A finite number above 0 (argparse type)."""
    return number_in(value, "a number above 0", lambda x: x > 0)


def non_negative_float(value: str) -> float:
    """A finite number of at least 0 (argparse type)."""
    return number_in(value, "a number of at least 0", lambda x: x >= 0)


def unit_interval(value: str) -> float:
    """A number in (0, 1] (argparse type)."""
    return number_in(value, "a number in (0, 1]", lambda x: 0 < x <= 1)


def resolution(value: str) -> int:
    """A positive multiple of 8 (argparse type): Stable Diffusion's latents are 1/8 of the image."""
    number = positive_int(value)
    if number % 8:
        raise argparse.ArgumentTypeError(f"expected a multiple of 8, got {value!r}")
    return number


def float_list(value: str) -> list[float]:
    """Comma-separated finite numbers (argparse type)."""
    return [number_in(part.strip(), "comma-separated numbers", lambda x: True) for part in value.split(",")]


def comma_list(value: str) -> list[str]:
    """Comma-separated names, empty entries dropped; '' is the empty list (argparse type)."""
    return [part.strip() for part in value.split(",") if part.strip()]


def caption_noise(value: str) -> Any:
    """``name=probability,...`` for the world's :class:`CaptionNoise` (argparse type)."""
    from dataclasses import fields

    from selma.world.scenes import CaptionNoise

    known = {f.name for f in fields(CaptionNoise)}
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, number = part.partition("=")
        if not sep or name not in known:
            raise argparse.ArgumentTypeError(
                f"expected NAME=P with NAME one of {', '.join(sorted(known))}, got {part!r}"
            )
        rates[name] = number_in(number, "a probability in [0, 1]", lambda x: 0 <= x <= 1)
    return CaptionNoise(**rates)


def role_path(value: str) -> tuple[str, Path]:
    role, sep, path = value.partition("=")
    if not sep or not role or not path:
        raise argparse.ArgumentTypeError(
            f"expected ROLE=PATH (e.g. questions=tifa_v1.0_question_answers.json), got {value!r}"
        )
    return role, Path(path)


def model_option(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--revision`` (read together by :func:`model_ref`)."""
    parser.add_argument(
        "--model", required=True, help="registry name (`selma-bench models`), local diffusers directory or hub id"
    )
    parser.add_argument(
        "--revision", help="a hub model's branch, tag or commit (resolved to its commit, part of every cache key)"
    )


def model_ref(args: argparse.Namespace) -> str:
    """The model reference of ``--model`` pinned to ``--revision`` (``org/name@REV``)."""
    from selma.models import with_revision

    return with_revision(args.model, args.revision)


def data_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("data")
    group.add_argument(
        "--data-dir", type=Path, help="folder holding suite files (default: $SELMA_BENCH_DATA, then the cache)"
    )
    group.add_argument(
        "--offline",
        action="store_true",
        help="never download data or model weights (also $SELMA_BENCH_OFFLINE, $HF_HUB_OFFLINE)",
    )
    group.add_argument(
        "--file",
        type=role_path,
        action="append",
        default=[],
        metavar="ROLE=PATH",
        help="use PATH for a suite file role",
    )
    group.add_argument("--suites-file", type=Path, help="a YAML file of extra suite definitions")
    return parent


def data_locator(args: argparse.Namespace) -> Any:
    from selma.harness.suites import DataLocator, add_suites_file

    if args.suites_file:
        add_suites_file(args.suites_file)
    if args.offline:
        from selma.weights import go_offline

        go_offline()  # model weights too, not only suite data
    return DataLocator.from_env(args.data_dir, offline=args.offline, overrides=dict(args.file))


class _Renamed(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        parser.error(f"{option} was renamed: use {self.metavar}")


def renamed(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Keep ``old`` as a hidden flag whose use stops with a pointer to ``new`` (one meaning per flag name)."""
    parser.add_argument(old, nargs="?", action=_Renamed, metavar=new, help=argparse.SUPPRESS)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: the command's result as JSON on stdout instead of its text."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def emit(args: argparse.Namespace, result: Any, text: str) -> None:
    """Print ``result`` as JSON under ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print_json(result)
    else:
        print(text)


def table(rows: list[list[Any]], header: list[str], floatfmt: str | tuple[str, ...] = ".1f") -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=header, floatfmt=floatfmt)


def checkpoint_roles(values: list[str], metric: str) -> dict[str, str]:
    found = {}
    for value in values:
        scope, _, assignment = value.rpartition(":") if ":" in value.split("=", 1)[0] else ("", "", value)
        role, sep, path = assignment.partition("=")
        if not sep:
            raise SelmaError(f"--checkpoint expects [METRIC:]ROLE=PATH, got {value!r}")
        if scope in ("", metric):
            found[role] = path
    return found


def launcher_options() -> argparse.ArgumentParser:
    """The submitit launcher options of `study` and `reproduce`."""
    launch = argparse.ArgumentParser(add_help=False)
    group = launch.add_argument_group("launcher (submitit)")
    group.add_argument("--launcher", choices=["slurm", "local", "debug"], help="run each stage as a job array")
    group.add_argument("--slurm-partition")
    group.add_argument("--gpus-per-node", type=positive_int, default=1)
    group.add_argument("--timeout-min", type=positive_int, default=24 * 60)
    group.add_argument("--array-parallelism", type=positive_int, default=16)
    return launch


def live_lora_option(parser: argparse.ArgumentParser) -> None:
    """``--live-lora``: render a variant with its LoRA as a live adapter instead of fused into the weights."""
    parser.add_argument(
        "--live-lora",
        action="store_true",
        help="keep the variant's LoRA as a live adapter (default: fused into the weights, at the base model's speed)",
    )


def force_option(parser: argparse.ArgumentParser, help: str = "replace an output made with other settings") -> None:
    """``--force``: a stage output made with other settings is replaced instead of refused."""
    parser.add_argument("--force", action="store_true", help=help)
