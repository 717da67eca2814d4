"""What a LoRA run feeds its UNet: the frozen components, text embeddings (SD's last hidden state, SDXL's
two penultimate states and pooled output), VAE latents of each batch drawn with a per-step seed, and
the optional on-disk cache of both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.models import ResolvedModel
from selma.recipe.train_data import decode_image, prepare_image


def load_components(model: ResolvedModel, device: Any, vae: str | None = None) -> dict[str, Any]:
    """The frozen tokenizers, text encoders, autoencoder (``vae``: another one) and the UNet to train."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    from selma.models import load_component, load_vae

    source, pinned = model.source, model.load_kwargs
    if vae is not None:
        try:
            autoencoder = AutoencoderKL.from_pretrained(vae)
        except OSError as exc:
            raise SelmaError(
                f"cannot load the training autoencoder {vae!r} ({str(exc).splitlines()[0][:160]}); "
                "give a local copy with --vae PATH"
            ) from None
    else:
        autoencoder = load_vae(model)
    parts: dict[str, Any] = {
        "tokenizer": AutoTokenizer.from_pretrained(source, subfolder="tokenizer", use_fast=False, **pinned),
        "text_encoder": load_component(model, "text_encoder", CLIPTextModel),
        "vae": autoencoder,
        "unet": load_component(model, "unet", UNet2DConditionModel),
        "sdxl": model.spec.family == "sdxl",
    }
    if parts["sdxl"]:
        parts["tokenizer_2"] = AutoTokenizer.from_pretrained(source, subfolder="tokenizer_2", use_fast=False, **pinned)
        parts["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(
            source, subfolder="text_encoder_2", **pinned
        )
    for name in ("vae", "text_encoder", "text_encoder_2", "unet"):
        if name in parts:
            parts[name].requires_grad_(False)
    return parts


class TextEncoder:
    """Frozen text encoding: SD's last hidden state, or SDXL's two penultimate states and pooled output."""

    def __init__(self, parts: dict[str, Any], device: Any) -> None:
        self.parts = parts
        self.device = device

    def __call__(self, captions: list[str]) -> tuple[Any, Any]:
        """The hidden states (and SDXL's pooled embeddings, else ``None``) of ``captions``."""
        import torch

        def ids(tokenizer: Any) -> Any:
            return tokenizer(
                captions,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)

        with torch.no_grad():
            if not self.parts["sdxl"]:
                return self.parts["text_encoder"](ids(self.parts["tokenizer"]), return_dict=False)[0], None
            first = self.parts["text_encoder"](ids(self.parts["tokenizer"]), output_hidden_states=True)
            second = self.parts["text_encoder_2"](ids(self.parts["tokenizer_2"]), output_hidden_states=True)
            hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
            return hidden, second.text_embeds


def time_ids_of(prepared: Any, resolution: int) -> list[int]:
    """SDXL's micro-conditioning: original size, crop corner and target size."""
    return [*prepared.original_size, *prepared.crop_top_left, resolution, resolution]


def step_seed(seed: int, step: int, micro: int, process: int) -> int:
    """The seed of one micro-batch, the same whether or not the run was resumed."""
    digest = hashlib.sha256(f"{seed}\0{step}\0{micro}\0{process}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def encode_batch(
    dataset: Any,
    indices: list[int],
    flips: list[bool],
    vae: Any,
    encoder: TextEncoder,
    resolution: int,
    dtype: Any,
    rng: Any,
) -> tuple[Any, Any, Any, Any]:
    """Latents (drawn with ``rng``), text embeddings, pooled embeddings and time ids of one batch."""
    import torch

    rows = [dataset[i] for i in indices]
    prepared = [prepare_image(decode_image(row["image"]), resolution) for row in rows]
    pixels = torch.stack([p.pixels.flip(-1) if f else p.pixels for p, f in zip(prepared, flips, strict=True)])
    with torch.no_grad():
        dist = vae.encode(pixels.to(vae.device, dtype=vae.dtype)).latent_dist
        sample = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=rng, dtype=dist.mean.dtype).to(
            dist.mean.device
        )
        latents = sample * vae.config.scaling_factor
        latents = latents.to(dtype)
    hidden, pooled = encoder([row["text"] for row in rows])
    time_ids = torch.tensor([time_ids_of(p, resolution) for p in prepared], device=latents.device, dtype=hidden.dtype)
    return latents, hidden, pooled, time_ids


class LatentCache:
    """VAE latent distributions of each image (unflipped and flipped) and its text embeddings, computed once
    and kept on disk as memory-mapped float32 arrays: a batch is read and moved to the device when drawn, so
    the cache scales to SDXL at 1024 px x 10,000 images (about 10 GB of latents) without holding it in
    accelerator or CPU memory. The draw from each distribution is the uncached path's, from the same
    generator, so cached and uncached training see the same latents.
    """

    def __init__(
        self, dataset: Any, vae: Any, encoder: TextEncoder, resolution: int, dtype: Any, folder: Path, progress: bool
    ) -> None:
        import numpy as np
        import torch
        from tqdm.auto import tqdm

        self.vae, self.dtype, self.device = vae, dtype, vae.device
        self.arrays: dict[str, Any] = {}
        with torch.no_grad():
            for i in tqdm(range(len(dataset)), desc="cache latents", disable=not progress):
                row = dataset[i]
                prepared = prepare_image(decode_image(row["image"]), resolution)
                pixels = torch.stack([prepared.pixels, prepared.pixels.flip(-1)]).to(vae.device, dtype=vae.dtype)
                dist = vae.encode(pixels).latent_dist
                hidden, pooled = encoder([row["text"]])
                values = {
                    "mean": dist.mean,
                    "std": dist.std,
                    "hidden": hidden[0],
                    "pooled": None if pooled is None else pooled[0],
                    "time_ids": torch.tensor(time_ids_of(prepared, resolution)),
                }
                for name, value in values.items():
                    if value is None:
                        continue
                    if name not in self.arrays:
                        self.arrays[name] = np.lib.format.open_memmap(
                            folder / f"{name}.npy", mode="w+", dtype=np.float32, shape=(len(dataset), *value.shape)
                        )
                    self.arrays[name][i] = value.detach().float().cpu().numpy()
        for array in self.arrays.values():
            array.flush()

    def close(self) -> None:
        """Release the memory maps (their files can then be removed)."""
        self.arrays.clear()

    def _rows(self, name: str, indices: list[int], dtype: Any) -> Any:
        import numpy as np
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.arrays[name][indices])).to(self.device, dtype=dtype)

    def batch(self, indices: list[int], flips: list[bool], rng: Any) -> tuple[Any, Any, Any, Any]:
        """Latents (a fresh draw), text embeddings, pooled embeddings and SDXL time ids of a batch."""
        import torch

        which = torch.tensor([int(f) for f in flips])
        pick = torch.arange(len(indices))
        means = self._rows("mean", indices, self.vae.dtype)[pick, which]
        stds = self._rows("std", indices, self.vae.dtype)[pick, which]
        draw = torch.randn(means.shape, generator=rng, dtype=means.dtype).to(means.device)
        latents = ((means + stds * draw) * self.vae.config.scaling_factor).to(self.dtype)
        hidden = self._rows("hidden", indices, self.dtype)
        pooled = self._rows("pooled", indices, self.dtype) if "pooled" in self.arrays else None
        time_ids = self._rows("time_ids", indices, hidden.dtype)
        return latents, hidden, pooled, time_ids
