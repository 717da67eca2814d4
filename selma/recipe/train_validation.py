"""Validation images of a LoRA run, as diffusers' ``log_validation``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selma.models import ResolvedModel
from selma.recipe.lora_io import pipeline_class
from selma.recipe.train_config import TrainConfig


class ValidationImages:
    """Validation prompts rendered with the LoRA being trained (diffusers' ``log_validation``): PNGs in
    ``<out>/validation/step-<N>/`` and, with a tracker, the same images in its log.
    """

    def __init__(self, model: ResolvedModel, parts: dict[str, Any], config: TrainConfig, out: Path, precision: str):
        self.model, self.parts, self.out, self.precision = model, parts, out, precision
        self.prompts, self.every, self.seed = list(config.validation_prompts), config.validation_steps, config.seed
        self.resolution = config.resolution

    def due(self, step: int) -> bool:
        """Whether ``step`` renders the validation prompts."""
        return bool(self.prompts) and step % self.every == 0

    def done(self, step: int) -> bool:
        """Whether ``step``'s images exist (``prompts.txt`` is written after the last one)."""
        return (self.out / "validation" / f"step-{step}" / "prompts.txt").is_file()

    def render(self, accelerator: Any, unet: Any, step: int) -> Path:
        """Render every prompt at ``step`` (fixed seeds, the model's steps and guidance) and log the images."""
        import contextlib

        import numpy as np
        import torch

        family = self.model.spec.family
        components = {
            k: self.parts[k]
            for k in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
            if self.parts.get(k) is not None
        }
        extra = {} if family == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
        pipe = pipeline_class(family).from_pretrained(
            self.model.source, unet=unet, **components, **extra, **self.model.load_kwargs
        )
        pipe.set_progress_bar_config(disable=True)
        folder = self.out / "validation" / f"step-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        autocast = torch.autocast(accelerator.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        unet.eval()
        images = []
        with torch.no_grad(), autocast:
            for i, prompt in enumerate(self.prompts):
                image = pipe(
                    prompt,
                    num_inference_steps=self.model.spec.steps,
                    guidance_scale=self.model.spec.guidance_scale,
                    height=self.resolution,
                    width=self.resolution,
                    generator=torch.Generator().manual_seed(self.seed + i),
                ).images[0]
                image.save(folder / f"{i:02d}.png")
                images.append(image)
        unet.train()
        (folder / "prompts.txt").write_text("".join(f"{p}\n" for p in self.prompts), encoding="utf-8")
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                for i, image in enumerate(images):
                    tracker.writer.add_image(f"validation/{i:02d}", np.asarray(image), step, dataformats="HWC")
            elif tracker.name == "wandb":
                import wandb

                logged = [wandb.Image(im, caption=p) for im, p in zip(images, self.prompts, strict=True)]
                tracker.log({"validation": logged}, step=step)
        return folder
