"""The shapes world's offline prompt writer, the ``world`` LLM backend of ``datagen`` (registered by the plugin)."""

from __future__ import annotations

import random
import re
from typing import Any

from selma.recipe.datagen.backends import OneAtATime
from selma.world.scenes import sample_scene


class WorldWriter(OneAtATime):
    """The shapes world's offline prompt writer: continues the numbered list with captions sampled from
    the world's grammar, of the skill the in-context examples show (held-out colour-shape pairs excluded).
    """

    def __init__(self, n_lines: int = 8) -> None:
        self.n_lines = n_lines

    def complete(self, prompt: str, *, seed: int) -> str:
        """Numbered captions of the examples' skill."""
        examples = re.findall(r"^\d+\.\s*(.+)$", prompt.split("examples:")[-1], flags=re.MULTILINE)
        if not examples:
            return ""
        rng = random.Random(seed)
        skill = self.skill_of(examples[0])
        first = len(examples) + 1
        lines = [sample_scene(skill, rng).caption() for _ in range(self.n_lines)]
        return "\n".join(f"{first + k}. {text}" for k, text in enumerate(lines))

    @staticmethod
    def skill_of(caption: str) -> str:
        """Which world skill a caption belongs to."""
        if re.search(r"\b(left of|right of|above|below)\b", caption):
            return "spatial"
        if re.search(r"\b(and|with|next to)\b", caption):
            return "count_binding" if re.search(r"\b(two|three|four) \w+ \w+s\b", caption) else "binding"
        return "count"

    def describe(self) -> dict[str, Any]:
        """The writer and its setting."""
        return {"backend": "world", "n_lines": self.n_lines}
