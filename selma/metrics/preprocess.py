"""The image transform of CLIP-family reference code (torchvision ``Resize`` + ``CenterCrop``), without torchvision.

``Resize(n, BICUBIC)`` scales the shorter side to ``n`` (the longer to ``int(n * long / short)``)
with PIL's bicubic filter; ``CenterCrop(n)`` cuts at ``round((size - n) / 2)``; then ``ToTensor``
and ``Normalize``. ImageReward and HPS (open_clip) preprocess exactly so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_center_crop(image: Any, size: int) -> Any:
    """Torchvision's ``Resize(size, BICUBIC)`` then ``CenterCrop(size)`` on a PIL image."""
    from PIL import Image

    width, height = image.size
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def clip_pixels(
    images: Sequence[Any], size: int, mean: Sequence[float] = OPENAI_CLIP_MEAN, std: Sequence[float] = OPENAI_CLIP_STD
) -> Any:
    """A float tensor (N, 3, size, size) of resized, cropped, normalised RGB images."""
    import torch

    arrays = [np.asarray(resize_center_crop(image.convert("RGB"), size), dtype=np.float32) / 255.0 for image in images]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
