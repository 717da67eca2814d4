"""A labelled image grid: the same prompts (columns) rendered by each variant (rows)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path


def image_grid(
    images: Mapping[str, Sequence[Path | None]],
    captions: Sequence[str],
    path: Path,
    *,
    cell: int = 128,
    label_width: int = 190,
) -> Path:
    """Write a PNG with one row per variant (``images`` maps a row label to one image per caption; ``None``
    leaves a blank) and one column per caption. Small images are enlarged without smoothing, so a
    32-pixel world image stays readable.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    wrapped = [textwrap.wrap(caption, width=max(8, cell // 7))[:4] for caption in captions]
    header = 14 * max((len(lines) for lines in wrapped), default=1) + 8
    width = label_width + cell * len(captions)
    height = header + cell * len(images)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for column, lines in enumerate(wrapped):
        draw.multiline_text((label_width + column * cell + 4, 4), "\n".join(lines), fill=(0, 0, 0), font=font)
    for row, (label, files) in enumerate(images.items()):
        top = header + row * cell
        draw.multiline_text((6, top + cell // 2 - 7), "\n".join(textwrap.wrap(label, 28)), fill=(0, 0, 0), font=font)
        for column, file in enumerate(files):
            if file is None or not Path(file).is_file():
                continue
            with Image.open(file) as image:
                resample = Image.Resampling.NEAREST if image.width < cell else Image.Resampling.LANCZOS
                tile = image.convert("RGB").resize((cell - 4, cell - 4), resample)
            canvas.paste(tile, (label_width + column * cell + 2, top + 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
