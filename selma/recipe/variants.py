"""Variants of a base model, each resolving to a pipeline that generation and the harness use.

``base``, ``expert:<skill>``, ``multi``, ``merged[:<method>]``, ``gt:<name>`` and ``w2s:<weak>``;
a variant trained on generated images may name a data recipe of its study after a ``+``
(``multi+verified``: the same LoRA trained on the images that recipe keeps or renders). Every
trained or merged LoRA lives under ``<workdir>/<model>/`` in a folder named after its variant
(``experts/<skill>``, ``multi``, ``merged-<method>``, ``gt-<name>``, ``w2s-<weak>``, with
``+<recipe>`` appended), which ``train --as`` and ``merge`` write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.finite import check_finite_file
from selma.io import file_digest, safe_id
from selma.models import ResolvedModel, resolve_model
from selma.recipe.lora_io import LORA_FILE

VARIANT = re.compile(
    r"^(?P<kind>base|expert|multi|merged|gt|w2s)(?::(?P<arg>[A-Za-z0-9._-]+))?(?:\+(?P<recipe>[A-Za-z0-9._-]+))?$"
)
_NEEDS_ARG = {"expert", "gt", "w2s"}
GENERATED_DATA = {"expert", "multi", "merged", "w2s"}  # the variants trained on a model's own images


@dataclass(frozen=True)
class VariantName:
    """A parsed variant name: its kind, its argument (skill, merge method, data set, weak model) and the data
    recipe it was trained with (``None``: the study's plain generated images).
    """

    kind: str
    arg: str | None
    recipe: str | None

    @property
    def plain(self) -> str:
        """The name without its recipe."""
        return self.kind + (f":{self.arg}" if self.arg else "")

    @property
    def suffix(self) -> str:
        """``+<recipe>``, or nothing."""
        return f"+{self.recipe}" if self.recipe else ""

    @property
    def merge_method(self) -> str:
        """A merged variant's method (``paper`` when unnamed)."""
        return self.arg or "paper"

    def __str__(self) -> str:
        return self.plain + self.suffix


def parse_variant(variant: str) -> VariantName:
    """Parse and check a variant name (an unknown form is an error listing the forms)."""
    match = VARIANT.match(variant)
    if not match:
        raise SelmaError(
            f"unknown variant {variant!r}; use base, expert:<skill>, multi, merged[:<method>], gt:<name> or "
            "w2s:<weak>, optionally +<recipe>"
        )
    kind, arg, recipe = match.group("kind"), match.group("arg"), match.group("recipe")
    if kind in _NEEDS_ARG and not arg:
        raise SelmaError(f"variant {kind!r} needs a name: {kind}:<name>")
    if kind in ("base", "multi") and arg:
        raise SelmaError(f"variant {kind!r} takes no name")
    if recipe and kind not in GENERATED_DATA:
        raise SelmaError(f"variant {variant!r}: only variants trained on generated images take a +<recipe>")
    return VariantName(kind, arg, recipe)


def model_root(workdir: Path, model: ResolvedModel) -> Path:
    """Where the variants of ``model`` live."""
    return workdir / safe_id(model.spec.name)


def variant_dir(workdir: Path, model: ResolvedModel, variant: str) -> Path | None:
    """The LoRA folder of ``variant`` (``None`` for ``base``); validates the variant syntax."""
    name = parse_variant(variant)
    root, arg = model_root(workdir, model), name.arg
    folder = {
        "base": None,
        "expert": root / "experts" / (arg or ""),
        "multi": root / "multi",
        "merged": root / f"merged-{name.merge_method}",
        "gt": root / f"gt-{arg}",
        "w2s": root / f"w2s-{arg}",
    }[name.kind]
    return folder.with_name(f"{folder.name}+{name.recipe}") if folder is not None and name.recipe else folder


def find_experts(workdir: Path, model: ResolvedModel) -> dict[str, Path]:
    """The expert LoRA folders trained for ``model`` under ``workdir`` (``train --as expert:<skill>``), by skill."""
    folder = model_root(workdir, model) / "experts"
    return {p.name: p for p in sorted(folder.glob("*")) if p.is_dir()}


@dataclass(frozen=True)
class Variant:
    """A base model and, for every variant but ``base``, the LoRA applied to it.

    The LoRA is fused into the base weights by default (diffusers ``fuse_lora``, then the adapter layers
    are dropped), so a variant renders at the base model's speed: a merged LoRA of N rank-128 experts
    has rank 128 N on every attention projection. ``fuse=False`` keeps it as a live adapter.
    """

    model: ResolvedModel
    name: str
    lora: Path | None
    fuse: bool = True

    @property
    def key(self) -> str:
        """The variant, the hash of its LoRA file and how it is applied: what generation caches are keyed by
        (fused and live adapters agree to floating-point rounding, not bit for bit).
        """
        if self.lora is None:
            return self.name
        return f"{self.name}@{file_digest(self.lora / LORA_FILE)[:16]}{'' if self.fuse else ':live'}"

    def load(self, *, device: str = "cpu", dtype: str | None = None) -> Any:
        """The pipeline of this variant, the LoRA loaded with plain diffusers ``load_lora_weights`` and, unless
        ``fuse`` is off, fused into the weights.
        """
        import torch

        from selma.models import load_pipeline

        pipe = load_pipeline(self.model, device=device, dtype=getattr(torch, dtype) if dtype else None)
        if self.lora is not None:
            check_finite_file(self.lora / LORA_FILE)
            try:
                pipe.load_lora_weights(
                    str(self.lora), weight_name=LORA_FILE, adapter_name=safe_id(self.name).replace("-", "_")
                )
            except (ValueError, RuntimeError, KeyError) as exc:
                raise SelmaError(
                    f"{self.lora}: cannot apply to {self.model.spec.name} (a LoRA of another architecture?): "
                    f"{str(exc).splitlines()[0][:200]}"
                ) from None
            if self.fuse:
                pipe.fuse_lora()
                pipe.unload_lora_weights()  # the adapter layers go; the fused weights stay
        return pipe


def resolve_variant(
    model_ref: str,
    variant: str = "base",
    *,
    workdir: Path = Path("selma-work"),
    step: int | None = None,
    fuse: bool = True,
) -> Variant:
    """Resolve a model reference and a variant name to a loadable :class:`Variant`.

    ``step`` picks a trained LoRA's ``checkpoint-<step>`` instead of its final weights (merged variants
    are made from their experts' checkpoints, so they have none); ``fuse=False`` keeps the LoRA live.
    """
    model = resolve_model(model_ref)
    merged = parse_variant(variant).kind == "merged"
    lora = variant_dir(workdir, model, variant)
    if lora is not None and step is not None and not merged:
        lora = lora / f"checkpoint-{step}"
    if lora is not None and not (lora / LORA_FILE).is_file():
        how = "selma-bench merge" if merged else f"selma-bench train --as {variant}"
        raise SelmaError(f"variant {variant!r} of {model.spec.name} has no LoRA at {lora}; make it with `{how}`")
    return Variant(model, variant, lora, fuse)
