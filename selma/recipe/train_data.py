"""Training data for LoRA experts: image-text datasets loaded with ``datasets`` and preprocessed
without torchvision (PIL resize and crop, tensors in [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selma.errors import DataInputError, SelmaError
from selma.io import inside, read_jsonl


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
            check_image_folder(path, image_column=image_column, caption_column=caption_column)
            try:
                data = datasets.load_dataset("imagefolder", data_dir=str(path), split="train")
            except Exception as exc:  # datasets raises many types for a damaged folder
                raise DataInputError(f"not a readable imagefolder ({str(exc)[:200]})", path=path) from None
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
    # decoded by `decode_image`, which names the file of a broken image
    return combined.cast_column("image", datasets.Image(decode=False))


def check_image_folder(folder: Path, *, image_column: str = "image", caption_column: str = "text") -> None:
    """An imagefolder's ``metadata.jsonl``: every line an object with a file name inside the folder (an
    existing, readable image) and a caption; errors name the file, line and field.
    """
    from PIL import Image

    metadata = folder / "metadata.jsonl"
    if not metadata.is_file():
        if (folder / "metadata.csv").is_file():
            return
        raise DataInputError(
            "image folder without metadata.jsonl (file_name, text): make it with `selma-bench generate`", path=folder
        )
    rows = read_jsonl(metadata, {"file_name": str, caption_column: str})
    if not rows:
        raise DataInputError("no images listed", path=metadata)
    for row in rows:
        where = f"line {row['_line']}"
        image = inside(folder, row["file_name"], path=metadata, row=where, field="file_name")
        try:
            with Image.open(image) as opened:
                opened.verify()
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataInputError(
                f"{image}: not a readable image ({exc})", path=metadata, row=where, field="file_name"
            ) from None


def decode_image(value: Any) -> Any:
    """An 8-bit RGB image from a training row's undecoded image (a path, or bytes from a ``datasets`` source)."""
    import io

    from PIL import Image

    from selma.harness.metrics.images import load_rgb

    if isinstance(value, dict) and value.get("bytes"):
        try:
            with Image.open(io.BytesIO(value["bytes"])) as image:
                return image.convert("RGB")
        except (OSError, SyntaxError) as exc:
            raise DataInputError(f"not a readable image ({exc})", path=value.get("path") or "training data") from None
    path = value.get("path") if isinstance(value, dict) else value
    return load_rgb(Path(path))


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


def data_identity(source: str) -> str:
    """What a training source contains: an imagefolder's ``metadata.jsonl`` and the images it lists (by
    content; other files such as provenance records do not count), else the source's content identity.
    """
    from selma.io import config_hash, content_identity, file_digest

    folder = Path(source)
    metadata = folder / "metadata.jsonl"
    if not metadata.is_file():
        return content_identity(source)
    names = sorted({row["file_name"] for row in read_jsonl(metadata, {"file_name": str})})
    files = [[name, file_digest(inside(folder, name, path=metadata, field="file_name"))] for name in names]
    return "imagefolder:" + config_hash({"metadata": file_digest(metadata), "files": files})[:32]
