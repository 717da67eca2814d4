"""Variants of a base model, each resolving to a pipeline that generation and the harness use.

``base``, ``expert:<skill>``, ``multi``, ``merged[:<method>]``, ``gt:<name>`` and ``w2s:<weak>``.
Every trained or merged LoRA lives under ``<workdir>/<model>/`` in a folder named after its
variant (``experts/<skill>``, ``multi``, ``merged-<method>``, ``gt-<name>``, ``w2s-<weak>``), which
``train --as`` and ``merge`` write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.io import file_digest, safe_id
from selma.lora_io import LORA_FILE
from selma.models import ResolvedModel, resolve_model

VARIANT = re.compile(r"^(?P<kind>base|expert|multi|merged|gt|w2s)(?::(?P<arg>[A-Za-z0-9._-]+))?$")
_NEEDS_ARG = {"expert", "gt", "w2s"}


def model_root(workdir: Path, model: ResolvedModel) -> Path:
    """Where the variants of ``model`` live."""
    return workdir / safe_id(model.spec.name)


def variant_dir(workdir: Path, model: ResolvedModel, variant: str) -> Path | None:
    """The LoRA folder of ``variant`` (``None`` for ``base``); validates the variant syntax."""
    match = VARIANT.match(variant)
    if not match:
        raise SelmaError(
            f"unknown variant {variant!r}; use base, expert:<skill>, multi, merged[:<method>], gt:<name> or w2s:<weak>"
        )
    kind, arg = match.group("kind"), match.group("arg")
    if kind in _NEEDS_ARG and not arg:
        raise SelmaError(f"variant {kind!r} needs a name: {kind}:<name>")
    if kind in ("base", "multi") and arg:
        raise SelmaError(f"variant {kind!r} takes no name")
    root = model_root(workdir, model)
    return {
        "base": None,
        "expert": root / "experts" / (arg or ""),
        "multi": root / "multi",
        "merged": root / f"merged-{arg or 'paper'}",
        "gt": root / f"gt-{arg}",
        "w2s": root / f"w2s-{arg}",
    }[kind]


@dataclass(frozen=True)
class Variant:
    """A base model and, for every variant but ``base``, the LoRA applied to it."""

    model: ResolvedModel
    name: str
    lora: Path | None

    @property
    def key(self) -> str:
        """The variant and the hash of its LoRA file: what generation caches are keyed by."""
        if self.lora is None:
            return self.name
        return f"{self.name}@{file_digest(self.lora / LORA_FILE)[:16]}"

    def load(self, *, device: str = "cpu", dtype: str | None = None) -> Any:
        """The pipeline of this variant, the LoRA loaded with plain diffusers ``load_lora_weights``."""
        import torch

        from selma.models import load_pipeline

        pipe = load_pipeline(self.model, device=device, dtype=getattr(torch, dtype) if dtype else None)
        if self.lora is not None:
            try:
                pipe.load_lora_weights(str(self.lora), adapter_name=safe_id(self.name).replace("-", "_"))
            except (ValueError, RuntimeError, KeyError) as exc:
                raise SelmaError(
                    f"{self.lora}: cannot apply to {self.model.spec.name} (a LoRA of another architecture?): "
                    f"{str(exc).splitlines()[0][:200]}"
                ) from None
        return pipe


def resolve_variant(
    model_ref: str, variant: str = "base", *, workdir: Path = Path("selma-work"), step: int | None = None
) -> Variant:
    """Resolve a model reference and a variant name to a loadable :class:`Variant`.

    ``step`` picks a trained LoRA's ``checkpoint-<step>`` instead of its final weights (merged variants
    are made from their experts' checkpoints, so they have none).
    """
    model = resolve_model(model_ref)
    lora = variant_dir(workdir, model, variant)
    if lora is not None and step is not None and not variant.startswith("merged"):
        lora = lora / f"checkpoint-{step}"
    if lora is not None and not (lora / LORA_FILE).is_file():
        how = "selma-bench merge" if variant.startswith("merged") else f"selma-bench train --as {variant}"
        raise SelmaError(f"variant {variant!r} of {model.spec.name} has no LoRA at {lora}; make it with `{how}`")
    return Variant(model, variant, lora)
