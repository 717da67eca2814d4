"""The README's commands, as written: every one parses, and every block marked to run runs on a CPU.

Each ``bash`` or ``console`` block that calls selma-bench carries a marker on the line above it:
``<!-- readme-test: run -->`` (run here, in README order, in one folder beside a ``../shared/data``;
a console block's shown output must appear in what the command prints, ``...``/``…`` lines standing
for lines left out) or ``<!-- readme-test: parse (why) -->`` (real weights, a GPU or a long run: the
reason is the README's own words).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import DATA

from selma.cli import build_parser

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"^```(bash|console)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!-- readme-test: (run|parse)(?: \((.+)\))? -->")
INLINE = re.compile(r"`(selma-bench [^`]+)`")
ELLIPSIS = {"...", "…"}


@dataclass(frozen=True)
class Command:
    """One shell command of the README and what its block shows it printing."""

    line: int
    text: str
    mode: str
    shown: tuple[str, ...] = ()


def _block_commands(lang: str, body: str, line: int, mode: str) -> list[Command]:
    lines = body.replace("\\\n", " ").splitlines()
    if lang == "bash":
        return [Command(line + i, text.strip(), mode) for i, text in enumerate(lines) if _is_command(text)]
    commands: list[Command] = []
    for i, text in enumerate(lines):
        if text.startswith("$ "):
            commands.append(Command(line + i, text[2:].strip(), mode))
        elif commands:
            last = commands[-1]
            commands[-1] = Command(last.line, last.text, mode, (*last.shown, text.rstrip()))
    return commands


def _is_command(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and not stripped.startswith("#")


def readme_commands() -> list[Command]:
    """Every command of the README's bash and console blocks, with its block's marker."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for match in BLOCK.finditer(text):
        lang, body = match.groups()
        if "selma" not in body:
            continue
        above = text[: match.start()].rstrip("\n").splitlines()[-1]
        line = text[: match.start()].count("\n") + 2
        marker = MARKER.fullmatch(above.strip())
        assert marker, f"README.md line {line - 1}: a block of commands without a readme-test marker above it"
        assert marker.group(1) == "run" or marker.group(2), f"README.md line {line - 1}: say why it only parses"
        commands += _block_commands(lang, body, line, marker.group(1))
    return commands


def _cli_words(command: str) -> list[list[str]]:
    """The selma-bench argument lists in a shell command (``selma-bench ...`` or ``-m selma.cli ...``)."""
    words = shlex.split(command, comments=True)
    calls = []
    for i, word in enumerate(words):
        if word.endswith("selma-bench") or (word == "selma.cli" and words[i - 1] == "-m"):
            rest = words[i + 1 :]
            ends = [j for j, w in enumerate(rest) if w in {"|", ">", "2>&1", "&&", ";"}]
            calls.append(rest[: ends[0]] if ends else rest)
    return calls


def test_every_readme_command_parses() -> None:
    commands = readme_commands()
    inline = [
        text
        for text in INLINE.findall(README.read_text(encoding="utf-8"))
        if not any(mark in text for mark in ("[", "...", "…", "|"))  # not placeholders or alternatives
    ]
    calls = [(f"line {c.line}", words) for c in commands for words in _cli_words(c.text)]
    calls += [(f"inline `{text}`", shlex.split(text)[1:]) for text in inline if " -" in text]
    assert len(calls) > 30 and any(mode == "run" for mode in (c.mode for c in commands))
    parser = build_parser()
    (subcommands,) = (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    named = {shlex.split(text)[1] for text in inline if " -" not in text}  # `selma-bench score` names a command
    assert named <= set(subcommands), f"README.md names unknown subcommands {sorted(named - set(subcommands))}"
    for where, words in calls:
        try:
            parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"README.md {where}: `selma-bench {shlex.join(words)}` does not parse")


def _shows(shown: tuple[str, ...], printed: str) -> str | None:
    """The first shown line missing, in order, from what was printed (``None``: all there)."""
    lines = [line.rstrip() for line in printed.splitlines()]
    at = 0
    for want in shown:
        if want.strip() in ELLIPSIS or not want.strip():
            continue
        while at < len(lines) and lines[at] != want:
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(DATA.resolve())
    work = tmp_path / "checkout"  # the README's commands run from a checkout beside ../shared
    work.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",  # warnings and results in the order they are printed
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "COLUMNS": "200",
        "SELMA_BENCH_DATA": str(work / ".." / "shared" / "data"),  # as the README's transcripts were made
    }
    ran = 0
    for command in readme_commands():
        if command.mode != "run":
            continue
        done = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command.text}"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"README.md line {command.line}: `{command.text}` failed:\n{done.stdout[-3000:]}"
        missing = _shows(command.shown, done.stdout)
        assert missing is None, (
            f"README.md line {command.line}: `{command.text}` did not print {missing!r}:\n{done.stdout}"
        )
        ran += 1
    assert ran >= 20
