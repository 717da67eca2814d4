"""Random weights that are the same bytes on every machine.

torch's CPU ``normal_`` draws different numbers at different CPU capability levels (``avx2``,
``avx512``, ``default``), so a model built with ``torch.manual_seed`` alone differs between machines,
and so does every content hash of it. :func:`portable_init` redraws a module's random parameters from
NumPy's PCG64 (``default_rng``), whose uniform draws are exact integer arithmetic scaled in IEEE double,
identical on every CPU; each tensor's stream is seeded by its name, not by the order of construction.
"""

from __future__ import annotations

import math
import zlib
from typing import Any


def _fan_in(name: str, shape: tuple[int, ...], shapes: dict[str, tuple[int, ...]]) -> int:
    """The inputs a unit of this tensor sees: a weight's ``prod(shape[1:])``; a bias takes its weight's."""
    if len(shape) >= 2:
        return math.prod(shape[1:])
    prefix, _, _ = name.rpartition(".")
    sibling = shapes.get(f"{prefix}.weight" if prefix else "weight")
    if sibling is not None and len(sibling) >= 2:
        return math.prod(sibling[1:])
    return max(1, math.prod(shape))


def portable_init(module: Any, seed: str | int) -> Any:
    """Redraw every randomly initialised floating parameter of ``module`` from a NumPy generator keyed by
    ``seed`` and the parameter's name: uniform with the standard deviation of a transformers model's
    ``config.initializer_range``, else ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (torch's default for linear
    and convolution layers). Parameters the architecture sets to a constant
    (norm scales of one, zero biases, filled scalars) keep their value. Returns ``module``.
    """
    import numpy as np
    import torch

    std = getattr(getattr(module, "config", None), "initializer_range", None)
    parameters = dict(module.named_parameters())
    shapes = {name: tuple(p.shape) for name, p in parameters.items()}
    with torch.no_grad():
        for name, parameter in parameters.items():
            if not parameter.is_floating_point() or parameter.numel() <= 1:
                continue
            flat = parameter.reshape(-1)
            if bool((flat == flat[0]).all()):
                continue
            bound = math.sqrt(3.0) * std if std else 1.0 / math.sqrt(_fan_in(name, shapes[name], shapes))
            rng = np.random.default_rng(zlib.crc32(f"{seed}:{name}".encode()))
            values = rng.uniform(-bound, bound, size=shapes[name])
            parameter.copy_(torch.from_numpy(values).to(parameter.dtype))
    return module
