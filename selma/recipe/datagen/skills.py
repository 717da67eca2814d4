"""Skills: a name, the instruction shown to the LLM and three or more seed examples.

SELMA's skills are SELMA's own, read at run time: the instruction strings of its
``encode_prompt`` and the seed captions of its ``__main__`` (``jialuli-luka/SELMA`` @ dc691fa,
``llm/prompt_generation.py``), from ``selma/prompt_generation.json`` in the data directory, or,
when that file is absent, extracted from the pinned source file itself (downloaded once). A
plugin's skill file (the shapes world's) and a user's ``--skills-file`` are YAML: rules and seeds,
written into an instruction of the same layout.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from selma.errors import DataInputError, SelmaError
from selma.harness.suites.spec import DataFile
from selma.registry import Registry

skill_files: Registry[Path] = Registry("skill file")
"""Skill YAML files registered by plugins (the shapes world's ``selma/world/skills.yaml``)."""

# selma-bench's skill names -> the names of SELMA's code (``--skills``)
SELMA_SKILLS = {
    "localized_narratives": "Localized_Narrative",
    "countbench": "CountBench",
    "diffusiondb": "DiffusionDB",
    "whoops": "Whoops",
    "coco": "Coco",
    "midjourney": "Midjourney",
}
SELMA_DATA = DataFile(
    role="selma_prompt_generation",
    path="selma/prompt_generation.json",
    sha256="62199f7c2f254ac3152e2799196c582d5184712234432e57f445bfae6317dae1",
    size=8259,
)
SELMA_SOURCE = DataFile(
    role="selma_source",
    path="selma/prompt_generation.py",
    url="https://raw.githubusercontent.com/jialuli-luka/SELMA/dc691fa9485f1cb111eff19577795582d0189896/llm/"
    "prompt_generation.py",
    sha256="b58464d4fd9ff130ef82b18cf02f56f63e6fc5129298a12aa19176a1d56c67bc",
    size=11913,
)
SELMA_REFERENCE = "jialuli-luka/SELMA @ dc691fa llm/prompt_generation.py"


@dataclass(frozen=True)
class Skill:
    """One skill of the SELMA recipe: what the LLM is told, and the examples it starts from."""

    name: str
    title: str
    instruction: str
    """The request's text before the numbered examples, verbatim (whitespace included)."""
    seeds: tuple[str, ...]
    source: str = ""
    """Where the instruction and seeds come from."""


def instruction_from_rules(rules: list[str]) -> str:
    """An instruction in the layout of SELMA's: the request, numbered rules, then the examples' heading."""
    numbered = "\n".join(f"{i}. {rule}" for i, rule in enumerate(rules, start=1))
    return (
        "Please create 20 more diverse image descriptions. Here are several rules for creating the image "
        f"description:\n{numbered}\n\nHere're some image description examples:\n"
    )


def load_skills(path: Path) -> dict[str, Skill]:
    """Read a skills YAML (name -> {title, rules, seeds}); a skill without rules or with fewer than
    3 seeds is an error naming the file and the skill.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataInputError(f"cannot read skills ({exc})", path=path) from None
    if not isinstance(raw, dict) or not raw:
        raise DataInputError("expected a mapping of skill names to {title, rules, seeds}", path=path)
    skills = {}
    for name, entry in raw.items():
        where = f"skill '{name}'"
        if not isinstance(entry, dict):
            raise DataInputError("expected a mapping", path=path, row=where)
        unknown = set(entry) - {"title", "rules", "seeds"}
        if unknown:
            raise DataInputError("unknown key", path=path, row=where, field=sorted(unknown)[0])
        rules, seeds = entry.get("rules") or [], entry.get("seeds") or []
        if not isinstance(rules, list) or not rules or not all(isinstance(r, str) and r.strip() for r in rules):
            raise DataInputError("expected a non-empty list of rules", path=path, row=where, field="rules")
        if not isinstance(seeds, list) or len(seeds) < 3 or not all(isinstance(s, str) and s.strip() for s in seeds):
            raise DataInputError("expected at least 3 non-empty seed examples", path=path, row=where, field="seeds")
        skills[str(name)] = Skill(
            name=str(name),
            title=str(entry.get("title", name)),
            instruction=instruction_from_rules([r.strip() for r in rules]),
            seeds=tuple(s.strip() for s in seeds),
            source=str(path),
        )
    return skills


def plugin_skills() -> dict[str, Skill]:
    """The skills of every registered skill file, by name."""
    return {name: skill for key in skill_files.names() for name, skill in load_skills(skill_files.get(key)).items()}


def skill_names(skills_file: Path | None = None) -> list[str]:
    """Every known skill name (SELMA's, the plugins', and a user file's), without loading data."""
    names = [*SELMA_SKILLS, *plugin_skills()]
    return names + (list(load_skills(skills_file)) if skills_file else [])


def selma_generation_data(locator: Any) -> dict[str, Any]:
    """SELMA's prompt-generation instructions, seeds and settings: the data file, or the pinned source."""
    found = locator.find(SELMA_DATA)
    if found is not None:
        path = locator.resolve(SELMA_DATA, "selma prompt generation")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataInputError(f"not valid JSON ({exc})", path=path) from None
        return data
    source = locator.resolve(SELMA_SOURCE, "selma prompt generation")
    return extract_prompt_generation(source.read_text(encoding="utf-8"))


def extract_prompt_generation(source: str) -> dict[str, Any]:
    """The instruction strings of ``encode_prompt`` and the seeds of ``__main__`` from SELMA's
    ``llm/prompt_generation.py``, read from its syntax tree (nothing is executed).
    """
    tree = ast.parse(source)
    instructions: dict[str, str] = {}
    seeds: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            names = _skill_test(node.test)
            if not names:
                continue
            for statement in node.body:
                if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
                    target = statement.targets[0].id
                    value = ast.literal_eval(statement.value)
                    for name in names:
                        if target == "prompt" and isinstance(value, str):
                            instructions[name] = value
                        elif target == "seeds" and isinstance(value, list):
                            seeds[name] = value
    if not instructions:
        raise SelmaError("no skill instructions found in SELMA's prompt_generation.py")
    return {
        "source": SELMA_REFERENCE,
        "skills": {name: {"instruction": text, "seeds": seeds.get(name, [])} for name, text in instructions.items()},
    }


def _skill_test(test: ast.expr) -> list[str]:
    """The skill names of ``SKILL == "X"`` (or ``... or SKILL == "Y"``) conditions."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        return [name for value in test.values for name in _skill_test(value)]
    if (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "SKILL"
        and isinstance(test.comparators[0], ast.Constant)
    ):
        return [str(test.comparators[0].value)]
    return []


def selma_skills(locator: Any) -> dict[str, Skill]:
    """SELMA's skills (under selma-bench's names), with their instruction and seeds verbatim."""
    data = selma_generation_data(locator)
    skills = {}
    for name, original in SELMA_SKILLS.items():
        entry = data["skills"].get(original)
        if entry is None or len(entry.get("seeds", [])) < 3:
            raise SelmaError(f"SELMA's prompt-generation data has no instruction and seeds for {original!r}")
        skills[name] = Skill(
            name=name,
            title=f"SELMA's {original}",
            instruction=entry["instruction"],
            seeds=tuple(entry["seeds"]),
            source=f"{data.get('source', SELMA_REFERENCE)} ({original})",
        )
    return skills


def resolve_skills(names: list[str], locator: Any, skills_file: Path | None = None) -> list[Skill]:
    """The skills ``names``: SELMA's (read from data), a plugin's, or a user file's."""
    known: dict[str, Skill] = {**plugin_skills(), **(load_skills(skills_file) if skills_file else {})}
    unknown = [n for n in names if n not in known and n not in SELMA_SKILLS]
    if unknown:
        raise SelmaError(f"unknown skill(s) {', '.join(unknown)}; known: {', '.join(skill_names(skills_file))}")
    if any(n in SELMA_SKILLS and n not in known for n in names):
        known = {**selma_skills(locator), **known}
    return [known[n] for n in names]
