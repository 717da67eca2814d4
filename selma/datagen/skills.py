"""Skills: a name, the rules given to the LLM, a length limit and three or more seed examples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from selma.errors import DataInputError

BUILTIN_SKILLS = Path(__file__).with_name("skills.yaml")
WORLD_SKILLS = Path(__file__).parents[1] / "world" / "skills.yaml"


@dataclass(frozen=True)
class Skill:
    """One skill of the SELMA recipe."""

    name: str
    title: str
    rules: tuple[str, ...]
    seeds: tuple[str, ...]
    max_words: int | None = None


def load_skills(path: Path = BUILTIN_SKILLS) -> dict[str, Skill]:
    """Read a skills YAML; a skill without rules or with fewer than 3 seeds is an error."""
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
        rules, seeds = entry.get("rules") or [], entry.get("seeds") or []
        if not isinstance(rules, list) or not rules or not all(isinstance(r, str) and r.strip() for r in rules):
            raise DataInputError("expected a non-empty list of rules", path=path, row=where, field="rules")
        if not isinstance(seeds, list) or len(seeds) < 3 or not all(isinstance(s, str) and s.strip() for s in seeds):
            raise DataInputError("expected at least 3 non-empty seed examples", path=path, row=where, field="seeds")
        skills[str(name)] = Skill(
            name=str(name),
            title=str(entry.get("title", name)),
            rules=tuple(r.strip() for r in rules),
            seeds=tuple(s.strip() for s in seeds),
            max_words=entry.get("max_words"),
        )
    return skills


def all_skills() -> dict[str, Skill]:
    """The built-in skills of the paper and the shapes world's skills."""
    return {**load_skills(BUILTIN_SKILLS), **load_skills(WORLD_SKILLS)}
