"""Scenes of coloured shapes, their captions and DSG-style questions, and the renderer.

32x32 RGB on black; 1-4 non-overlapping objects (gap >= 2 px), shapes {circle, square,
triangle} x colours {red, green, blue, yellow}, 8-10 px. Skills: ``count`` ("three red
circles"), ``binding`` ("a blue square and a red triangle"), ``spatial`` ("a green circle left of
a yellow square", dominant-axis offset >= 6 px) and ``count_binding`` ("two red circles and a blue
square"); ``object`` ("a red circle") only helps train world models. Some (colour, shape) pairs are
held out of training prompts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

PALETTE = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (235, 220, 40)}
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {2: "two", 3: "three", 4: "four"}
SKILLS = ("count", "binding", "spatial", "count_binding")
HELD_OUT = {("red", "triangle"), ("blue", "circle")}  # never in training prompts
IMAGE_SIZE = 32


@dataclass(frozen=True)
class Thing:
    """A kind of object: colour and shape."""

    color: str
    shape: str

    def phrase(self, article: bool = True) -> str:
        """'a red circle' / 'red circle'."""
        return f"a {self.color} {self.shape}" if article else f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A scene a caption asks for: kinds of objects with counts, and an optional relation."""

    skill: str
    items: tuple[tuple[Thing, int], ...]
    relation: str | None = None
    style: int = 0  # which phrasing of the caption (the questions do not depend on it)

    def caption(self) -> str:
        """The prompt text."""
        if self.skill == "object":
            ((thing, _),) = self.items
            return [thing.phrase(), f"a picture of {thing.phrase()}"][self.style % 2]
        if self.skill == "count":
            ((thing, n),) = self.items
            many = f"{NUMBERS[n]} {thing.color} {thing.shape}s"
            return [many, f"exactly {many}", f"a picture of {many}", f"{many} on black"][self.style % 4]
        if self.skill == "count_binding":
            (a, n), (b, _) = self.items
            many = f"{NUMBERS[n]} {a.color} {a.shape}s"
            options = [
                f"{many} and {b.phrase()}",
                f"{b.phrase()} and {many}",
                f"{many} with {b.phrase()}",
                f"{b.phrase()} next to {many}",
            ]
            return options[self.style % 4]
        (a, _), (b, _) = self.items
        if self.skill == "spatial":
            return f"{a.phrase()} {self.relation} {b.phrase()}"
        options = [
            f"{a.phrase()} and {b.phrase()}",
            f"{a.phrase()} with {b.phrase()}",
            f"a picture of {a.phrase()} and {b.phrase()}",
            f"{a.phrase()} together with {b.phrase()}",
        ]
        return options[self.style % 4]

    def questions(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(question id, text, parent ids): entity, then attribute on it, counts, then the relation."""
        out: list[tuple[str, str, tuple[str, ...]]] = []
        attribute_ids = []
        for thing, n in self.items:
            entity = str(len(out) + 1)
            out.append((entity, f"Is there a {thing.shape}?", ()))
            attribute = str(len(out) + 1)
            out.append((attribute, f"Is the {thing.shape} {thing.color}?", (entity,)))
            attribute_ids.append(attribute)
            if self.skill in ("count", "count_binding") and n > 1:
                out.append(
                    (str(len(out) + 1), f"Are there exactly {NUMBERS[n]} {thing.color} {thing.shape}s?", (attribute,))
                )
        if self.relation:
            (a, _), (b, _) = self.items
            out.append(
                (
                    str(len(out) + 1),
                    f"Is the {a.color} {a.shape} {self.relation} the {b.color} {b.shape}?",
                    tuple(attribute_ids),
                )
            )
        return out


_PHRASE = re.compile(
    r"\b(?P<n>a|two|three|four) (?P<color>red|green|blue|yellow) (?P<shape>circle|square|triangle)s?\b"
)


def parse_caption(text: str) -> Scene:
    """The scene a complete caption of the world's grammar asks for (the inverse of :meth:`Scene.caption` up
    to its phrasing): its kinds of objects with counts, and its relation. Text that names no object or more
    than two kinds is not a world caption (``ValueError``).
    """
    words = {word: n for n, word in NUMBERS.items()} | {"a": 1}
    items = [(Thing(m["color"], m["shape"]), words[m["n"]]) for m in _PHRASE.finditer(text)]
    if not 1 <= len(items) <= 2:
        raise ValueError(f"not a caption of the shapes world (names {len(items)} kinds of objects): {text!r}")
    relation = next((r for r in RELATIONS if f" {r} " in text), None)
    if len(items) == 1:
        return Scene("count" if items[0][1] > 1 else "object", tuple(items))
    if relation:
        return Scene("spatial", tuple(items), relation)
    if any(n > 1 for _, n in items):
        return Scene("count_binding", tuple(sorted(items, key=lambda item: -item[1])))
    return Scene("binding", tuple(items))


def sample_scene(skill: str, rng: random.Random, *, held_out: bool = True) -> Scene:
    """A random scene of ``skill``; with ``held_out`` the held-out pairs are never drawn."""
    things = [Thing(c, s) for c in PALETTE for s in SHAPES if not (held_out and (c, s) in HELD_OUT)]
    style = rng.randrange(4)
    if skill == "object":  # one object: not a suite skill, the first thing a world model learns
        return Scene(skill, ((rng.choice(things), 1),), style=style)
    if skill == "count":
        return Scene(skill, ((rng.choice(things), rng.choice([2, 3, 4])),), style=style)
    while True:  # two objects differing in colour and shape
        a, b = rng.sample(things, 2)
        if a.color != b.color and a.shape != b.shape:
            break
    if skill == "binding":
        return Scene(skill, ((a, 1), (b, 1)), style=style)
    if skill == "spatial":
        return Scene(skill, ((a, 1), (b, 1)), rng.choice(RELATIONS), style=style)
    return Scene(skill, ((a, rng.choice([2, 3])), (b, 1)), style=style)


def _place(rng: random.Random, sizes: list[int], relation: str | None) -> list[tuple[int, int]] | None:
    boxes: list[tuple[int, int, int]] = []
    for size in sizes:
        for _ in range(200):
            x, y = rng.randint(1, IMAGE_SIZE - size - 1), rng.randint(1, IMAGE_SIZE - size - 1)
            if all(
                x + size + 2 <= bx or bx + bs + 2 <= x or y + size + 2 <= by or by + bs + 2 <= y for bx, by, bs in boxes
            ):
                boxes.append((x, y, size))
                break
        else:
            return None
    if relation is not None:
        (ax, ay, asz), (bx, by, bsz) = boxes[0], boxes[1]
        dx = (bx + bsz / 2) - (ax + asz / 2)
        dy = (by + bsz / 2) - (ay + asz / 2)
        wanted = {"left of": dx, "right of": -dx, "above": dy, "below": -dy}[relation]
        # a margin of 3 px keeps the dominant axis when centroids differ from box centres (triangles)
        dominant = abs(dx) >= abs(dy) + 3 if relation in ("left of", "right of") else abs(dy) >= abs(dx) + 3
        if not (wanted >= 6 and dominant):
            return None
    return [(x, y) for x, y, _ in boxes]


def _canonical(rng: random.Random, sizes: list[int], relation: str, jitter: int) -> list[tuple[int, int]]:
    """The two objects of a spatial scene at fixed places on the relation's axis, a quarter and three quarters
    across, each moved by at most ``jitter`` pixels either way.
    """
    near, far = IMAGE_SIZE // 4, IMAGE_SIZE - IMAGE_SIZE // 4
    first, second = {"left of": ((near, 16), (far, 16)), "right of": ((far, 16), (near, 16))}.get(
        relation, ((16, near), (16, far)) if relation == "above" else ((16, far), (16, near))
    )
    return [
        (cx - size // 2 + rng.randint(-jitter, jitter), cy - size // 2 + rng.randint(-jitter, jitter))
        for (cx, cy), size in zip((first, second), sizes, strict=True)
    ]


def render(scene: Scene, rng: random.Random, *, spatial_jitter: int | None = None) -> Any:
    """A PIL image that satisfies ``scene`` exactly. ``spatial_jitter`` (training only): a spatial scene's
    two objects at canonical places on the relation's axis, moved by at most that many pixels (at most 3);
    ``None``: anywhere the relation holds.
    """
    from PIL import Image, ImageDraw

    if spatial_jitter is not None and not 0 <= spatial_jitter <= 3:
        raise ValueError(f"spatial_jitter must be 0 to 3 pixels, not {spatial_jitter}")
    things = [thing for thing, n in scene.items for _ in range(n)]
    while True:
        sizes = [rng.randint(8, 10) for _ in things]
        if scene.relation and spatial_jitter is not None:
            places = _canonical(rng, sizes, scene.relation, spatial_jitter)
        else:
            places = _place(rng, sizes, scene.relation)
        if places is not None:
            break
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for thing, (x, y), size in zip(things, places, sizes, strict=True):
        color = PALETTE[thing.color]
        if thing.shape == "square":
            draw.rectangle((x, y, x + size - 1, y + size - 1), fill=color)
        elif thing.shape == "circle":
            draw.ellipse((x, y, x + size - 1, y + size - 1), fill=color)
        else:
            draw.polygon([(x + (size - 1) / 2, y), (x, y + size - 1), (x + size - 1, y + size - 1)], fill=color)
    return image


OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


@dataclass(frozen=True)
class CaptionNoise:
    """How a training caption departs from its image (the image is always the whole scene): incomplete, as
    alt-text is (information omitted), or wrong (a label deficit: colours swapped, a count off by one, a
    relation flipped). Each rate is a probability per caption (per object for ``color_dropped``).
    """

    count_omitted: float = 0.0
    """A count left out: "red circles" for three red circles."""
    count_vague: float = 0.0
    """A count made vague: "some red circles"."""
    color_dropped: float = 0.0
    """An object's colour left out: "a circle"."""
    object_omitted: float = 0.0
    """A two-kind scene described by its first kind only."""
    relation_stated: float = 1.0
    """How often a spatial scene's relation is said (otherwise: "a red circle and a blue square")."""
    color_swapped: float = 0.0
    """Wrong: a two-kind scene's colours swapped between its kinds ("a red square and a blue circle" for a
    blue square and a red circle); never when the swap would name a held-out pair."""
    count_off_by_one: float = 0.0
    """Wrong: a count of two to four said one more or one less (staying within two to four)."""
    relation_flipped: float = 0.0
    """Wrong: a spatial scene's relation said as its opposite ("left of" for "right of")."""

    @property
    def complete(self) -> bool:
        """Whether every caption describes its image completely."""
        return self == CaptionNoise()


def noisy_caption(scene: Scene, noise: CaptionNoise, rng: random.Random) -> str:
    """A caption of ``scene`` as incomplete as ``noise`` draws it, in the scene's phrasing style (the complete
    caption when there is no noise).
    """
    if noise.complete:
        return scene.caption()
    scene = mislabeled(scene, noise, rng)
    stated = True

    def kind(thing: Thing, n: int) -> str:
        nonlocal stated
        color = "" if rng.random() < noise.color_dropped else f"{thing.color} "
        if n == 1:
            return f"a {color}{thing.shape}"
        draw = rng.random()
        if draw < noise.count_omitted + noise.count_vague:
            stated = False
            return f"{color}{thing.shape}s" if draw < noise.count_omitted else f"some {color}{thing.shape}s"
        return f"{NUMBERS[n]} {color}{thing.shape}s"

    parts = list(scene.items)
    if len(parts) == 2 and rng.random() < noise.object_omitted:
        parts = parts[:1]
    phrases = [kind(thing, n) for thing, n in parts]
    style = scene.style % 4
    if len(phrases) == 1:
        (only,) = phrases
        if scene.skill == "count" and stated:
            return [only, f"exactly {only}", f"a picture of {only}", f"{only} on black"][style]
        return [only, f"a picture of {only}"][style % 2]
    a, b = phrases
    if scene.relation and rng.random() < noise.relation_stated:
        return f"{a} {scene.relation} {b}"
    if scene.skill == "count_binding":
        return [f"{a} and {b}", f"{b} and {a}", f"{a} with {b}", f"{b} next to {a}"][style]
    return [f"{a} and {b}", f"{a} with {b}", f"a picture of {a} and {b}", f"{a} together with {b}"][style]


def mislabeled(scene: Scene, noise: CaptionNoise, rng: random.Random) -> Scene:
    """The scene a wrong caption of ``scene`` describes, drawn with ``noise``'s wrong-label rates: colours
    swapped between the two kinds, a count off by one, the relation flipped (``scene`` when none is drawn).
    Each rate draws from ``rng`` only when it is set, so other noise draws as it did before.
    """
    items, relation = list(scene.items), scene.relation
    if noise.color_swapped and len(items) == 2 and rng.random() < noise.color_swapped:
        (a, n), (b, m) = items
        swapped = [(Thing(b.color, a.shape), n), (Thing(a.color, b.shape), m)]
        if all((t.color, t.shape) not in HELD_OUT for t, _ in swapped):
            items = swapped
    if noise.count_off_by_one and rng.random() < noise.count_off_by_one:
        counted = [i for i, (_, n) in enumerate(items) if n > 1]
        if counted:
            i = counted[0]
            thing, n = items[i]
            items[i] = (thing, n + rng.choice([d for d in (-1, 1) if 2 <= n + d <= 4]))
    if noise.relation_flipped and relation and rng.random() < noise.relation_flipped:
        relation = OPPOSITE[relation]
    return Scene(scene.skill, tuple(items), relation, scene.style)
