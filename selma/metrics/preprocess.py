"""The image transforms of CLIP-family reference code (torchvision ``Resize`` + ``CenterCrop``), without torchvision.

``Resize(n, BICUBIC)`` scales the shorter side to ``n`` (the longer to ``int(n * long / short)``);
``CenterCrop(n)`` cuts at ``round((size - n) / 2)``; then ``Normalize``. ImageReward resizes the
PIL image (PIL's bicubic filter, then ``ToTensor``); HPS's open_clip resizes the float tensor after
``ToTensor`` (``interpolate(..., "bicubic", antialias=True)``, no rounding): ``resample`` picks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resized_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(size)``: the shorter side becomes ``size``."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _crop_box(width: int, height: int, size: int) -> tuple[int, int]:
    return round((height - size) / 2.0), round((width - size) / 2.0)


def _pil_path(image: Any, size: int) -> Any:
    import torch
    from PIL import Image

    new_w, new_h = resized_shape(*image.size, size)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top, left = _crop_box(new_w, new_h, size)
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _tensor_path(image: Any, size: int) -> Any:
    import torch

    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    new_w, new_h = resized_shape(image.width, image.height, size)
    if (new_w, new_h) != (image.width, image.height):
        tensor = torch.nn.functional.interpolate(
            tensor[None], size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
        )[0]
    top, left = _crop_box(new_w, new_h, size)
    return tensor[:, top : top + size, left : left + size]


def clip_pixels(
    images: Sequence[Any],
    size: int,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
    resample: str = "pil",
) -> Any:
    """A float tensor (N, 3, size, size) of resized, cropped, normalised RGB images."""
    import torch

    path = {"pil": _pil_path, "tensor": _tensor_path}[resample]
    batch = torch.stack([path(image.convert("RGB"), size) for image in images])
    return (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
