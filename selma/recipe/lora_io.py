"""Reading diffusers LoRA files into peft configs and state dicts, with architecture checks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.finite import refuse_non_finite
from selma.io import canonical_safetensors

LORA_FILE = "pytorch_lora_weights.safetensors"
log = logging.getLogger(__name__)


def pipeline_class(family: str) -> Any:
    """The diffusers pipeline class of a model family (its LoRA loader and saver)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline


def read_unet_lora(directory: Path, family: str) -> tuple[Any, dict[str, Any]]:
    """The ``LoraConfig`` and peft-format UNet state dict of a LoRA saved by ``save_lora_weights`` (with its
    adapter metadata, or without: then by diffusers' rule).
    """
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft import LoraConfig

    if not (directory / LORA_FILE).is_file():
        raise SelmaError(f"{directory}: no {LORA_FILE}")
    try:
        state, alphas, metadata = pipeline_class(family).lora_state_dict(
            str(directory), weight_name=LORA_FILE, return_lora_metadata=True
        )
    except Exception as exc:  # safetensors and diffusers raise many types for a damaged file
        raise SelmaError(
            f"{directory / LORA_FILE}: not a readable LoRA file ({str(exc).splitlines()[0][:160]})"
        ) from None
    refuse_non_finite(state.items(), directory / LORA_FILE)
    unet_state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    if not unet_state:
        raise SelmaError(f"{directory / LORA_FILE}: holds no UNet LoRA weights")
    peft_state = convert_unet_state_dict_to_peft(unet_state)
    options = {k.removeprefix("unet."): v for k, v in (metadata or {}).items() if k.startswith("unet.")}
    if options:
        known = set(LoraConfig.__dataclass_fields__)
        return LoraConfig(**{k: v for k, v in options.items() if k in known}), peft_state
    return _config_from_tensors(directory, peft_state, alphas), peft_state


def _config_from_tensors(directory: Path, peft_state: dict[str, Any], alphas: dict[str, Any] | None) -> Any:
    """The config of a LoRA saved without adapter metadata, by diffusers' own rule (``get_peft_kwargs``): the
    rank from the ``lora_B`` shapes, alpha from the file's ``.alpha`` entries or else equal to the rank.
    """
    from diffusers.utils.peft_utils import get_peft_kwargs
    from peft import LoraConfig

    ranks = {f"^{k}": v.shape[1] for k, v in peft_state.items() if "lora_B" in k and v.ndim > 1}
    if not ranks:
        raise SelmaError(f"{directory / LORA_FILE}: no lora_B matrices to read the rank from; not a LoRA file?")
    unet_alphas = {k.removeprefix("unet."): v for k, v in (alphas or {}).items() if k.startswith("unet.")}
    config = LoraConfig(**get_peft_kwargs(ranks, unet_alphas or None, peft_state))
    log.warning(
        "%s: no adapter metadata; rank %d read from the tensors, alpha %s (diffusers' rule)",
        directory / LORA_FILE,
        config.r,
        "from the file" if unet_alphas else "= rank",
    )
    return config


def load_into(model: Any, state: dict[str, Any], adapter_name: str, source: Path) -> None:
    """Load a peft state dict into an adapter of ``model``; another architecture's LoRA is an error."""
    from peft import PeftModel
    from peft.utils import set_peft_model_state_dict

    if isinstance(model, PeftModel):
        state = {f"base_model.model.{k}": v for k, v in state.items()}
    try:
        result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    except RuntimeError as exc:  # shape mismatch
        raise SelmaError(f"{source}: a LoRA of another architecture ({str(exc).splitlines()[0][:200]})") from None
    unexpected = [k for k in getattr(result, "unexpected_keys", []) or [] if "lora_" in k]
    if unexpected:
        raise SelmaError(f"{source}: a LoRA of another architecture (unknown layers such as {unexpected[0]})")


def lora_metadata(config: Any) -> dict[str, Any]:
    """A ``LoraConfig`` as metadata with every set sorted, so identical trainings write identical bytes
    whatever ``PYTHONHASHSEED`` is.
    """
    return {k: sorted(v) if isinstance(v, (set, frozenset)) else v for k, v in config.to_dict().items()}


def save_unet_lora(state: dict[str, Any], config: Any, directory: Path, family: str) -> Path:
    """Save a UNet LoRA as ``pytorch_lora_weights.safetensors`` with its config as metadata."""
    directory.mkdir(parents=True, exist_ok=True)
    pipeline_class(family).save_lora_weights(
        save_directory=str(directory),
        unet_lora_layers=state,
        safe_serialization=True,
        unet_lora_adapter_metadata=lora_metadata(config),
    )
    canonical_safetensors(directory / LORA_FILE)
    return directory / LORA_FILE
