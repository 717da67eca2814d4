"""The exact VQA backend of the shapes world: detect objects, then answer the world's questions.

Nearest palette colour per pixel (black is background) -> 4-connected components (area >= 15,
box 5-14 px, aspect <= 1.6) -> shape from the box fill ratio (square > 0.9, circle > 0.64,
triangle > 0.35) -> centroids. Questions are the world's templates, parsed exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from selma.world.scenes import NUMBERS, PALETTE

_COLORS = list(PALETTE)
_PALETTE = np.array([(0, 0, 0), *PALETTE.values()], dtype=np.float32)
_WORDS = {word: n for n, word in NUMBERS.items()}
_THING = r"(?P<{0}color>red|green|blue|yellow) (?P<{0}shape>circle|square|triangle)"
_QUESTIONS = [
    ("exists", re.compile(r"^Is there a (?P<shape>circle|square|triangle)\?$")),
    ("attribute", re.compile(r"^Is the (?P<shape>circle|square|triangle) (?P<color>red|green|blue|yellow)\?$")),
    (
        "count",
        re.compile(
            r"^Are there exactly (?P<n>two|three|four) (?P<color>red|green|blue|yellow) "
            r"(?P<shape>circle|square|triangle)s\?$"
        ),
    ),
    (
        "relation",
        re.compile(
            rf"^Is the {_THING.format('a')} (?P<rel>left of|right of|above|below) the "
            rf"{_THING.format('b')}\?$"
        ),
    ),
]


@dataclass(frozen=True)
class Detected:
    """One detected object."""

    color: str
    shape: str
    x: float
    y: float


def detect(image: Any) -> list[Detected]:
    """The objects in a rendered (or generated) world image."""
    from scipy import ndimage

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    nearest = ((pixels[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1).argmin(-1)
    found = []
    for index, color in enumerate(_COLORS, start=1):
        labels, count = ndimage.label(nearest == index)  # 4-connectivity
        for label in range(1, count + 1):
            ys, xs = np.nonzero(labels == label)
            area, h, w = len(xs), ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            if area < 15 or not (5 <= h <= 14 and 5 <= w <= 14) or max(h, w) / min(h, w) > 1.6:
                continue
            fill = area / (h * w)
            shape = "square" if fill > 0.9 else "circle" if fill > 0.64 else "triangle" if fill > 0.35 else None
            if shape:
                found.append(Detected(color, shape, float(xs.mean()), float(ys.mean())))
    return found


def answer(objects: Sequence[Detected], question: str) -> str:
    """'yes' or 'no' for one of the world's questions; an unknown question is an error."""
    for kind, pattern in _QUESTIONS:
        match = pattern.match(question)
        if not match:
            continue
        g = match.groupdict()
        if kind == "exists":
            result = any(o.shape == g["shape"] for o in objects)
        elif kind == "attribute":
            result = any(o.shape == g["shape"] and o.color == g["color"] for o in objects)
        elif kind == "count":
            result = sum(o.shape == g["shape"] and o.color == g["color"] for o in objects) == _WORDS[g["n"]]
        else:
            first = [o for o in objects if (o.color, o.shape) == (g["acolor"], g["ashape"])]
            second = [o for o in objects if (o.color, o.shape) == (g["bcolor"], g["bshape"])]
            result = any(_related(a, b, g["rel"]) for a in first for b in second)
        return "yes" if result else "no"
    raise ValueError(f"not a question of the shapes world: {question!r}")


def _related(a: Detected, b: Detected, relation: str) -> bool:
    dx, dy = b.x - a.x, b.y - a.y
    if relation in ("left of", "right of"):
        return abs(dx) >= abs(dy) and (dx if relation == "left of" else -dx) > 2
    return abs(dy) > abs(dx) and (dy if relation == "above" else -dy) > 2


class ShapesAnswerer:
    """Answers the world's questions exactly; the same interface as the transformers VQA models."""

    batch_size = 64
    checkpoint = "exact (selma.world.evaluator)"

    def __init__(self) -> None:
        self.calls = 0

    def answer(
        self,
        images: Sequence[Any],
        questions: Sequence[str],
        image_shas: Sequence[str],
        choices: Sequence[Sequence[str] | None] | None = None,
    ) -> list[str]:
        """'yes'/'no' per (image, question); each distinct image is detected once (the questions are yes/no)."""
        detected: dict[str, list[Detected]] = {}
        answers = []
        for image, question, sha in zip(images, questions, image_shas, strict=True):
            if sha not in detected:
                detected[sha] = detect(image)
                self.calls += 1
            answers.append(answer(detected[sha], question))
        return answers
