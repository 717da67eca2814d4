"""Checkpoints of a LoRA run: saved atomically with a manifest of their files' sha256, verified before a
resume loads them, pruned to the newest K, and holding the LoRA (not the whole UNet) through accelerate's
save and load hooks.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.finite import check_finite_file
from selma.io import sha256_file, writing_to
from selma.recipe.lora_io import LORA_FILE, pipeline_class, save_unet_lora

MANIFEST = "manifest.json"  # each checkpoint's files and their sha256, checked before a resume loads them
LOSSES = "losses.json"


def latest_checkpoint(out: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder in ``out``."""
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


def save_checkpoint(accelerator: Any, out: Path, step: int, losses: list[float]) -> None:
    """Save ``checkpoint-<step>`` atomically (a run killed while saving leaves no half-written checkpoint),
    with the losses so far and a manifest of its files' sha256.
    """
    from accelerate.utils import set_seed

    tmp = out / f".checkpoint-{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    # training draws nothing from the global generators; seeding them by step makes the saved RNG states
    # (and so the checkpoint's bytes) the same in a resumed run as in an uninterrupted one
    set_seed(int(hashlib.sha256(f"checkpoint\0{step}".encode()).hexdigest()[:8], 16))
    try:  # a full disk leaves no half-written checkpoint behind
        with writing_to(out):
            accelerator.save_state(str(tmp))
        (tmp / LOSSES).write_text(json.dumps(losses), encoding="utf-8")
        manifest = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(out / f"checkpoint-{step}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def verify_checkpoint(checkpoint: Path) -> None:
    """Refuse a checkpoint whose files changed since they were saved (accelerate unpickles some of them)."""
    if not checkpoint.is_dir():
        raise SelmaError(f"{checkpoint}: no such checkpoint folder")
    manifest_path = checkpoint / MANIFEST
    if not manifest_path.is_file():
        raise SelmaError(f"{checkpoint}: no {MANIFEST}; it was not saved by selma-bench and is not loaded")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    present = {p.name for p in checkpoint.iterdir() if p.is_file() and p.name != MANIFEST}
    for name in sorted(present | set(manifest)):
        if name not in manifest or name not in present or sha256_file(checkpoint / name) != manifest[name]:
            raise SelmaError(
                f"{checkpoint / name}: changed, added or removed since the checkpoint was saved; "
                "refusing to load it (train again without --resume, or restore the file)"
            )
    for name in sorted(present):
        if name.endswith(".safetensors"):
            check_finite_file(checkpoint / name)


def prune_checkpoints(out: Path, limit: int | None) -> None:
    """Keep at most ``limit - 1`` checkpoints before a new one is saved (diffusers' convention)."""
    if limit is None:
        return
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in checkpoints[: max(0, len(checkpoints) - limit + 1)]:
        shutil.rmtree(old)


def save_lora(unet: Any, directory: Path, sdxl: bool) -> None:
    """Write the UNet's LoRA as ``pytorch_lora_weights.safetensors`` (``load_lora_weights``' layout)."""
    from peft.utils import get_peft_model_state_dict

    save_unet_lora(get_peft_model_state_dict(unet), unet.peft_config["default"], directory, "sdxl" if sdxl else "sd1")


def register_hooks(accelerator: Any, unet: Any, lora_config: Any, sdxl: bool) -> None:
    """Checkpoints hold the LoRA (not the whole UNet) beside accelerate's optimizer and RNG states."""
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict

    unet_type = type(accelerator.unwrap_model(unet))

    def save_hook(models: list[Any], weights: list[Any], output_dir: str) -> None:
        for model in models:
            if isinstance(accelerator.unwrap_model(model), unet_type):
                save_lora(accelerator.unwrap_model(model), Path(output_dir), sdxl)
            if weights:
                weights.pop()

    def load_hook(models: list[Any], input_dir: str) -> None:
        while models:
            model = accelerator.unwrap_model(models.pop())
            state, _ = pipeline_class("sdxl" if sdxl else "sd1").lora_state_dict(input_dir, weight_name=LORA_FILE)
            state = {k.replace("unet.", "", 1): v for k, v in state.items() if k.startswith("unet.")}
            incompatible = set_peft_model_state_dict(
                model, convert_unet_state_dict_to_peft(state), adapter_name="default"
            )
            if incompatible is not None and getattr(incompatible, "unexpected_keys", None):
                raise SelmaError(f"{input_dir}: unexpected LoRA keys {incompatible.unexpected_keys[:3]}")

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
