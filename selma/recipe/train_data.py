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
    sources: list[Any],
    *,
    image_column: str = "image",
    caption_column: str = "text",
    limit: int | None = None,
    config: str | None = None,
    split: str = "train",
) -> Any:
    """One ``datasets.Dataset`` of (image, text) from any mix of sources, concatenated.

    Several sources make the multi-skill and mixed-data baselines. A source is:

    - a ``datasets.Dataset`` (or a ``DatasetDict``, of which ``split`` is taken);
    - an imagefolder with ``metadata.jsonl`` (``file_name``, ``text``; what ``generate`` writes) or ``metadata.csv``;
    - a folder written by ``save_to_disk`` (``load_from_disk``);
    - a parquet file, or a folder of them;
    - anything else ``datasets.load_dataset`` takes (a hub id, a local loading script), with ``config`` and
      ``split``.
    """
    import datasets

    parts = []
    for source in sources:
        data = _load_source(
            source, config=config, split=split, image_column=image_column, caption_column=caption_column
        )
        name = _describe(source)
        for column in (image_column, caption_column):
            if column not in data.column_names:
                raise DataInputError(
                    f"no column '{column}' (columns: {', '.join(data.column_names)})", path=name, field=column
                )
        data = data.select_columns([image_column, caption_column])
        if image_column != "image" or caption_column != "text":
            data = data.rename_columns({image_column: "image", caption_column: "text"})
        # one schema for every part (sources differ in how they store images), decoded by `decode_image`,
        # which names the file of a broken image
        features = datasets.Features({"image": datasets.Image(decode=False), "text": datasets.Value("string")})
        try:
            parts.append(data.cast(features))
        except (ValueError, TypeError) as exc:
            raise DataInputError(
                f"columns '{image_column}' and '{caption_column}' must hold images and strings ({_first_line(exc)})",
                path=name,
            ) from None
    if not parts:
        raise SelmaError("no training data given")
    combined = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(combined) == 0:
        raise SelmaError(f"training data {', '.join(_describe(s) for s in sources)} is empty")
    if limit is not None:
        combined = combined.select(range(min(limit, len(combined))))
    return combined


def _describe(source: Any) -> str:
    return source if isinstance(source, str) else f"a {type(source).__name__}"


def _saved_to_disk(path: Path) -> bool:
    return any((path / name).is_file() for name in ("dataset_info.json", "dataset_dict.json", "state.json"))


def _load_source(source: Any, *, config: str | None, split: str, image_column: str, caption_column: str) -> Any:
    import datasets

    if isinstance(source, datasets.Dataset):
        return source
    if isinstance(source, datasets.DatasetDict):
        return _split(source, split, "the DatasetDict")
    path = Path(source)
    try:
        if path.is_dir() and ((path / "metadata.jsonl").is_file() or (path / "metadata.csv").is_file()):
            check_image_folder(path, image_column=image_column, caption_column=caption_column)
            return datasets.load_dataset("imagefolder", data_dir=str(path), split="train")
        if path.is_dir() and _saved_to_disk(path):
            data = datasets.load_from_disk(str(path))
            return _split(data, split, source) if isinstance(data, datasets.DatasetDict) else data
        if path.is_file() and path.suffix == ".parquet":
            return datasets.load_dataset("parquet", data_files=[str(path)], split="train")
        if path.is_dir() and not any(path.rglob("*.parquet")):
            check_image_folder(path, image_column=image_column, caption_column=caption_column)  # says what is missing
    except (DataInputError, SelmaError):
        raise
    except Exception as exc:  # datasets raises many types for a damaged folder or file
        raise DataInputError(f"not a readable dataset ({_first_line(exc)})", path=path) from None
    try:  # a hub id, a loading script, or a folder of data files (parquet, with its splits)
        return datasets.load_dataset(str(source), config, split=split)
    except Exception as exc:  # datasets raises many types for an unreachable source
        raise SelmaError(
            f"cannot load training data {source!r} (config {config}, split {split}): {_first_line(exc)}"
        ) from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _split(data: Any, split: str, source: str) -> Any:
    if split not in data:
        raise SelmaError(f"{source}: no split {split!r} (splits: {', '.join(data)})")
    return data[split]


def check_image_folder(folder: Path, *, image_column: str = "image", caption_column: str = "text") -> None:
    """An imagefolder's ``metadata.jsonl``: every line an object with a file name inside the folder (an
    existing, readable image) and a caption; errors name the file, line and field. A ``metadata.csv``
    is left to ``datasets`` to read.
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


def data_identity(source: Any) -> str:
    """What a training source contains: an imagefolder's ``metadata.jsonl`` and the images it lists (by
    content; other files such as provenance records do not count), else the source's content identity.
    """
    from selma.io import config_hash, content_identity, file_digest

    if not isinstance(source, str):  # a datasets object: its fingerprint (content and the operations made on it)
        splits = source.items() if hasattr(source, "items") else [("", source)]
        return "dataset:" + ",".join(f"{name}={data._fingerprint}" for name, data in splits)
    folder = Path(source)
    metadata = folder / "metadata.jsonl"
    if not metadata.is_file():
        return content_identity(source)
    names = sorted({row["file_name"] for row in read_jsonl(metadata, {"file_name": str})})
    files = [[name, file_digest(inside(folder, name, path=metadata, field="file_name"))] for name in names]
    return "imagefolder:" + config_hash({"metadata": file_digest(metadata), "files": files})[:32]
