"""``shapes-dsg``: the world's exact DSG score of one image against its own prompt, as a per-image metric.

The prompt is parsed by the world's grammar (:func:`selma.world.scenes.parse_caption`), its questions
are answered exactly from the pixels (:mod:`selma.world.evaluator`) and scored with DSG's official
rule (a question counts when answered "yes" and its parents were): 0-100 per image. It scores any
folder of world images, such as a model's own training images before they are kept (a verifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selma.harness.metrics.base import MetricInfo, check_pairs, register_metric
from selma.harness.scoring.conventions import default_convention
from selma.harness.scoring.matchers import ExactMatcher
from selma.harness.scoring.qa import score_questions
from selma.harness.suites.spec import Prompt

INFO = MetricInfo(
    name="shapes-dsg",
    display_name="Shapes DSG (exact)",
    convention="the world caption's DSG-style questions answered exactly, DSG's dependency rule, 0-100 per image",
    reference="selma/world (exact by construction)",
    notes="only prompts of the shapes world's grammar",
)


class ShapesDSG:
    """Exact per-image DSG scores in the shapes world."""

    info = INFO

    def __init__(self) -> None:
        self.notes: list[str] = []

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
        """One 0-100 score per (image, prompt)."""
        from selma.world.evaluator import answer, detect
        from selma.world.scenes import parse_caption
        from selma.world.suite import scene_questions

        check_pairs(images, prompts)
        convention, matcher = default_convention("dsg"), ExactMatcher()
        scores = []
        for image, text in zip(images, prompts, strict=True):
            try:
                questions = scene_questions("p", parse_caption(text))
            except ValueError as exc:
                raise ValueError(f"shapes-dsg: {exc}") from None
            objects = detect(image)
            answers = {("p", q.id): answer(objects, q.text) for q in questions}
            scored = score_questions([Prompt("p", text)], questions, answers, matcher, convention)
            scores.append(scored.prompts[0]["score"])
        return scores


@register_metric(INFO)
def build(checkpoints: dict[str, str], device: str = "cpu") -> ShapesDSG:
    """The exact scorer (it has no checkpoints)."""
    return ShapesDSG()
