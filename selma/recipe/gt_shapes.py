"""A small ground-truth image-text set rendered with PIL: coloured shapes on black, exact captions.

It stands in for a real ground-truth dataset (COCO captions, Localized Narratives) in studies on
the tiny random-weight models (the CI study), so the ``gt:<name>`` variant trains on images whose
captions are true by construction.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from selma.stage import ensure_output

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (235, 220, 40)}
SHAPES = ("circle", "square", "triangle")


def render_shapes_dataset(out: Path, n: int, *, size: int = 32, seed: int = 0) -> Path:
    """Write ``n`` images of one coloured shape each with ``metadata.jsonl`` (an imagefolder)."""
    return ensure_output(
        out, "gt-shapes", {"n": n, "size": size, "seed": seed}, lambda tmp: _render(tmp, n, size, seed)
    )


def _render(out: Path, n: int, size: int, seed: int) -> None:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        image = Image.new("RGB", (size, size), (0, 0, 0))
        draw = ImageDraw.Draw(image)
        r = size // 4
        cx, cy = rng.randint(r, size - r - 1), rng.randint(r, size - r - 1)
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=COLORS[color])
        elif shape == "square":
            draw.rectangle(box, fill=COLORS[color])
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLORS[color])
        name = f"{i:05d}.png"
        image.save(out / name)
        rows.append({"file_name": name, "text": f"a {color} {shape}"})
    (out / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
