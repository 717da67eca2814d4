"""Training data for LoRA experts: image-text datasets loaded with ``datasets`` and preprocessed
without torchvision (PIL resize and crop, tensors in [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selma.errors import DataInputError, SelmaError


def load_image_text_dataset(
    sources: list[str], *, image_column: str = "image", caption_column: str = "text", limit: int | None = None
) -> Any:
    """One ``datasets.Dataset`` of (image, text) from image folders or ``load_dataset`` sources.

    A local folder must be an imagefolder with ``metadata.jsonl`` (``file_name``, ``text``), as
    ``generate`` writes it; anything else is passed to ``datasets.load_dataset``. Several sources
    are concatenated (the multi-skill and mixed-data baselines).
    """
    import datasets

    parts = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            if not (path / "metadata.jsonl").is_file() and not (path / "metadata.csv").is_file():
                raise DataInputError(
                    "image folder without metadata.jsonl (file_name, text): make it with `selma-bench generate`",
                    path=path,
                )
            data = datasets.load_dataset("imagefolder", data_dir=str(path), split="train")
        else:
            try:
                data = datasets.load_dataset(source, split="train")
            except Exception as exc:  # datasets raises many types for an unreachable source
                raise SelmaError(f"cannot load training data {source!r}: {exc}") from None
        for column in (image_column, caption_column):
            if column not in data.column_names:
                raise DataInputError(
                    f"no column '{column}' (columns: {', '.join(data.column_names)})", path=source, field=column
                )
        data = data.select_columns([image_column, caption_column])
        if image_column != "image" or caption_column != "text":
            data = data.rename_columns({image_column: "image", caption_column: "text"})
        parts.append(data)
    if not parts:
        raise SelmaError("no training data given")
    combined = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(combined) == 0:
        raise SelmaError(f"training data {', '.join(sources)} is empty")
    if limit is not None:
        combined = combined.select(range(min(limit, len(combined))))
    return combined


@dataclass(frozen=True)
class Prepared:
    """A training image at the target resolution, with SDXL's size conditioning."""

    pixels: Any  # torch tensor (3, H, W) in [-1, 1]
    original_size: tuple[int, int]
    crop_top_left: tuple[int, int]


def prepare_image(image: Any, resolution: int, crop_top_left: tuple[int, int] | None = None) -> Prepared:
    """Resize the shorter side to ``resolution`` (bilinear) and crop a square; centre crop by default."""
    import torch
    from PIL import Image

    image = image.convert("RGB")
    original = (image.height, image.width)
    scale = resolution / min(image.width, image.height)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    if size != (image.width, image.height):
        image = image.resize(size, Image.Resampling.BILINEAR)
    if crop_top_left is None:
        crop_top_left = ((image.height - resolution) // 2, (image.width - resolution) // 2)
    top, left = crop_top_left
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return Prepared(torch.from_numpy(array).permute(2, 0, 1).contiguous(), original, crop_top_left)
