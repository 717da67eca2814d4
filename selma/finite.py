"""Refuse weights with NaN or infinite values wherever a LoRA, checkpoint or model is read.

A diverged training run saves NaN tensors that load, merge and render without an error (black or
noise images, a merged LoRA of NaN); these checks stop such a file at the door with one line naming
it and its first bad tensor.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from selma.errors import SelmaError


def refuse_non_finite(tensors: Iterable[tuple[str, Any]], source: str | Path) -> None:
    """Raise :class:`SelmaError` naming ``source`` and the first tensor with a NaN or infinite value."""
    import torch

    for name, tensor in tensors:
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise SelmaError(
                f"{source}: tensor {name!r} holds NaN or infinite values (a diverged training run or a damaged "
                "file); refusing to use it"
            )


def check_finite_file(path: Path) -> None:
    """Refuse a safetensors file with a non-finite tensor (read one tensor at a time)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        refuse_non_finite(((key, handle.get_tensor(key)) for key in handle.keys()), path)  # noqa: SIM118


def check_finite_modules(components: dict[str, Any], source: str | Path) -> None:
    """Refuse a loaded pipeline (or component) with a non-finite parameter or buffer, naming its folder."""
    import torch

    for name, module in components.items():
        if isinstance(module, torch.nn.Module):
            tensors = [*module.named_parameters(), *module.named_buffers()]
            refuse_non_finite(tensors, Path(source) / name)
