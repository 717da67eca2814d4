"""`selma-bench suites`: list suites, `suites show NAME`, or `suites export NAME` for another generator."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selma.cli._common import data_locator, print_json, table


def add_parser(sub: Any, common: dict[str, argparse.ArgumentParser]) -> None:
    """Add `suites` to the subcommands."""
    from selma.harness.layouts import EXPORT_FORMATS

    p = sub.add_parser(
        "suites", parents=[common["data"]], help="list suites, `suites show NAME`, or `suites export NAME --out F`"
    )
    p.add_argument("action", nargs="?", choices=["list", "show", "export"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="jsonl",
        help="export: jsonl (prompt_id, text, category), txt (a prompt a line) or geneval (GenEval's metadata lines)",
    )
    p.add_argument("--out", type=Path, help="export: the file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List suites, or describe one."""
    from selma.harness.suites import describe_suite, suite_overview

    locator = data_locator(args)
    if args.action == "export":
        return _export(args, locator)
    if args.name is None:
        rows = suite_overview(locator)
        if args.json:
            print_json(rows)
        else:
            print(
                table(
                    [[r["name"], r["title"], r["prompts"], r["scoring"] or "-", r["data"]] for r in rows],
                    ["suite", "title", "prompts", "scoring", "data"],
                )
            )
        return 0
    info = describe_suite(args.name, locator)
    if args.json:
        print_json(info)
        return 0
    print(f"{info['name']}: {info['title']}\n")
    print(info["description"] + "\n")
    for key in ("source", "license", "citation", "scoring"):
        print(f"{key:>10}: {info[key]}")
    if "size" in info:
        questions = info["size"]["questions"] or "- (question file not on disk)"
        print(f"{'size':>10}: {info['size']['prompts']} prompts, {questions} questions")
        cats = ", ".join(f"{k} {v}" for k, v in info["categories"].items())
        print(f"{'categories':>10}: {cats or '-'}")
    print("\nfiles:")
    for s in info["files"]:
        print(f"  {s['role']}: {s['path']} ({s['size'] or '?'} B, sha256 {s['sha256'] or 'not pinned'})")
        print(f"    {s['status']}")
    for note in info.get("notes", []):
        print(f"note: {note}")
    return 0


def _export(args: argparse.Namespace, locator: Any) -> int:
    from selma.errors import SelmaError
    from selma.harness.layouts import export_prompts
    from selma.harness.suites import load_suite

    if not args.name or args.out is None:
        raise SelmaError("suites export needs a suite name and --out FILE")
    suite = load_suite(args.name, locator)
    out = export_prompts(suite, args.out, args.format)
    if args.json:
        print_json({"suite": suite.name, "format": args.format, "prompts": len(suite.prompts), "out": str(out)})
    else:
        print(f"wrote {len(suite.prompts)} prompts of {suite.name} to {out} ({args.format})")
    return 0
