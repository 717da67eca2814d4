"""Real-size models with random weights, built offline from the published configs, for the benchmarks.

- SD 1.5 (``runwayml/stable-diffusion-v1-5``): its UNet, VAE and CLIP ViT-L/14 text encoder configs,
  with the package's byte-level CLIP tokenizer (same model, different vocabulary).
- CLIP ViT-H/14 (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``, the model of PickScore and HPS v2/v2.1),
  from open_clip's ``ViT-H-14`` config.
- BLIP VQA base (``Salesforce/blip-vqa-base``, the answerer of the DSG/TIFA runs here): transformers'
  ``BlipConfig`` defaults are that model's config.

Weights are random, so scores are meaningless; compute, memory traffic and the code paths are the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SD15_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": (320, 640, 1280, 1280),
    "cross_attention_dim": 768,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}
SD15_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
}
CLIP_L_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
OPEN_CLIP_VIT_H_14: dict[str, Any] = {
    "embed_dim": 1024,
    "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24},
}


def save_sd15_pipeline(root: Path, seed: int = 0) -> Path:
    """SD 1.5's architecture with random weights, saved with ``save_pretrained`` into ``root``."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from selma.models.tokenizer import byte_level_clip_tokenizer

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = byte_level_clip_tokenizer(Path(tmp))
    text = CLIPTextConfig(
        **CLIP_L_TEXT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**SD15_VAE),
        text_encoder=CLIPTextModel(text),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**SD15_UNET),
        scheduler=PNDMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return root


def save_clip_vit_h(root: Path) -> Path:
    """CLIP ViT-H/14 (PickScore's and HPS's architecture) with random weights and a CLIP processor."""
    from selma.harness.metrics.tiny import save_tiny_clip

    return save_tiny_clip(root, OPEN_CLIP_VIT_H_14)


def save_blip_vqa_base(root: Path) -> Path:
    """BLIP VQA base (ViT-B/16 at 384 px, BERT-base text encoder and decoder) with random weights."""
    from selma.harness.metrics.tiny import save_tiny_blip_vqa

    return save_tiny_blip_vqa(root, text_config={}, vision_config={})


def timed(fn: Any, repeats: int, warmup: int = 1) -> float:
    """The median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    import statistics
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
