"""SELMA's in-context-learning request and the parsing of its completion, as its code does them.

The request is the skill's instruction followed by a newline, ``{i}. {example}`` and a newline for the three
examples (``encode_prompt`` in ``jialuli-luka/SELMA`` @ dc691fa ``llm/prompt_generation.py``);
the LLM continues with "4. ...". A line of the completion is kept only when it contains the next
expected marker ``"{k}. "`` (k = 4, 5, ...), and the description is the text after the marker,
unstripped (``post_process_gpt4_response``).
"""

from __future__ import annotations

from collections.abc import Sequence

from selma.recipe.datagen.skills import Skill

N_EXAMPLES = 3


def build_request(skill: Skill, examples: Sequence[str]) -> str:
    """The text sent to the LLM for one request."""
    return skill.instruction + "".join(f"\n{i}. {example}\n" for i, example in enumerate(examples, start=1))


def parse_completion(completion: str, n_examples: int = N_EXAMPLES) -> list[str]:
    """The descriptions of a completion: lines carrying the next expected number, in order."""
    found: list[str] = []
    expected = n_examples + 1
    for line in completion.split("\n"):
        marker = f"{expected}. "
        if line == "" or marker not in line:
            continue
        found.append(line.split(marker)[1])
        expected += 1
    return found
