"""`selma-bench datagen`: stage 1: skill prompts by in-context learning with an LLM (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import data_locator, emit, force_option, json_option, non_negative_int, positive_int
from selma.recipe.datagen.backends import BackendOptions, backends, make_backend


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `datagen` to the subcommands."""
    p = sub.add_parser(
        "datagen",
        parents=[common["data"]],
        help="stage 1: skill prompts by in-context learning with an LLM (resumable)",
    )
    p.add_argument("--skills", help="comma-separated (default: SELMA's six, read from its prompt-generation data)")
    p.add_argument("--skills-file", type=Path, help="a YAML file of extra skills")
    p.add_argument("--n", type=positive_int, default=1000, help="prompts per skill")
    p.add_argument("--backend", default="offline", choices=backends.names(), help="the LLM backend")
    p.add_argument("--llm", help="transformers: local path or hub id; openai: the model name")
    p.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM)")
    p.add_argument("--completions", action="store_true", help="use the legacy completions endpoint, not chat")
    p.add_argument("--max-tokens", type=positive_int, default=3072, help="SELMA's: 3072")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", required=True, type=Path, help="JSONL output; an existing file is resumed")
    force_option(p)
    json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write skill prompts with an LLM."""
    from selma.recipe.datagen.loop import generate_prompts
    from selma.recipe.datagen.skills import SELMA_SKILLS, resolve_skills

    names = args.skills.split(",") if args.skills else list(SELMA_SKILLS)
    skills = resolve_skills(names, data_locator(args), args.skills_file)
    options = BackendOptions(args.llm, args.base_url, args.completions, args.max_tokens, args.device)
    backend = make_backend(args.backend, options)
    counts = generate_prompts(skills, args.n, backend, args.out, seed=args.seed, force=args.force)
    emit(
        args,
        {"out": str(args.out), "prompts": counts},
        f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
    )
    return 0
