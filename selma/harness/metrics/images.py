"""Reading images to score: every mode converted to 8-bit RGB, and a broken file is an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selma.errors import DataInputError


def load_rgb(path: Path) -> Any:
    """Open ``path`` fully and return an 8-bit RGB PIL image.

    Grayscale, palette and RGBA images are converted (RGBA composited on black, as PIL's
    ``convert`` does); 16-bit and float images are scaled to 8 bits first. A corrupt or truncated
    file raises an error naming it: a broken image never scores silently.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                array = np.asarray(image, dtype=np.float64)
                peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
                image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataInputError(f"not a readable image ({exc})", path=path) from None


def image_sha256(path: Path) -> str:
    """sha256 of an image file's bytes (the key of answer and score caches), remembered for unchanged files."""
    from selma.io import file_digest

    return file_digest(path)
