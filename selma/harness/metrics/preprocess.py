"""The image transforms of CLIP-family reference code, without torchvision.

``clip_pixels``: ``Resize(n, BICUBIC)`` scales the shorter side to ``n`` (the longer to
``int(n * long / short)``), ``CenterCrop(n)`` cuts at ``round((size - n) / 2)``, then ``Normalize``.
ImageReward's transform: the PIL image is resized (PIL's bicubic filter), then ``ToTensor``.

``resize_max_size_pixels``: HPS v2's own validation transform (open_clip with
``light_augmentation=True``: ``ToTensor`` then ``ResizeMaxSize``): the longer side is scaled to
``n`` on the float tensor (bicubic, antialiased as torchvision >= 0.17 does by default, no
clamping), the shorter padded with zeros to a centred square, then ``Normalize``.
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


def clip_pixels(
    images: Sequence[Any],
    size: int,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
) -> Any:
    """A float tensor (N, 3, size, size) of resized, cropped, normalised RGB images."""
    import torch

    batch = torch.stack([_pil_path(image.convert("RGB"), size) for image in images])
    return (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _resize_max_size(image: Any, size: int) -> Any:
    import torch

    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    height, width = tensor.shape[1:]
    scale = size / float(max(height, width))
    if scale != 1.0:
        new_h, new_w = round(height * scale), round(width * scale)
        tensor = torch.nn.functional.interpolate(
            tensor[None], size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
        )[0]
        height, width = new_h, new_w
    # HPS pads only after a resize; an image whose longer side is already `size` is padded here too
    # (the reference would pass a non-square tensor to the ViT, which fails)
    pad_h, pad_w = size - height, size - width
    if pad_h or pad_w:
        tensor = torch.nn.functional.pad(tensor, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return tensor


def resize_max_size_pixels(
    images: Sequence[Any],
    size: int,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
) -> Any:
    """A float tensor (N, 3, size, size): HPS v2's ``ToTensor`` + ``ResizeMaxSize`` + ``Normalize``."""
    import torch

    batch = torch.stack([_resize_max_size(image.convert("RGB"), size) for image in images])
    return (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def open_clip_clean(text: str) -> str:
    """open_clip's text cleaning before BPE: ``ftfy.fix_text``, HTML unescaped twice, whitespace collapsed
    (HPS v2's vendored ``tokenizer.py``: ``whitespace_clean(basic_clean(text))``; lower-casing is the
    CLIP tokenizer's own).
    """
    import html
    import re

    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()
