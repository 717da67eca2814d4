"""The in-context-learning request and the parsing of its completion.

The request follows SELMA's prompt generation: an instruction asking for more diverse image
descriptions, the skill's numbered rules, then three examples numbered 1-3 and "4." for the
LLM to continue. Lines of the completion that start with the next expected number are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from selma.datagen.skills import Skill

N_EXAMPLES = 3
NUMBERED = re.compile(r"^\s*(\d+)\s*[.)]\s*(.*\S)\s*$")


def build_request(skill: Skill, examples: Sequence[str], n_new: int = 20) -> str:
    """The text sent to the LLM for one request."""
    rules = "\n".join(f"{i}. {rule}" for i, rule in enumerate(skill.rules, start=1))
    shown = "\n".join(f"{i}. {example}" for i, example in enumerate(examples, start=1))
    return (
        f"Please write {n_new} more diverse image descriptions.\n"
        f"Here are the requirements:\n{rules}\n\n"
        f"Here are some image description examples:\n{shown}\n{len(examples) + 1}."
    )


def parse_completion(completion: str, first_number: int = N_EXAMPLES + 1) -> list[str]:
    """Descriptions from a completion that continues the numbered list at ``first_number``.

    The completion usually starts right after "4." (its first line has no number); later lines
    count only if they carry the next expected number.
    """
    lines = completion.strip("\n").splitlines()
    found: list[str] = []
    expected = first_number
    if lines and not NUMBERED.match(lines[0]) and lines[0].strip():
        found.append(lines[0].strip())
        expected += 1
        lines = lines[1:]
    for line in lines:
        match = NUMBERED.match(line)
        if match and int(match.group(1)) == expected:
            found.append(match.group(2).strip())
            expected += 1
    return [text.strip().strip('"').strip() for text in found if text.strip()]
