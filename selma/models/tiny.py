"""Tiny random-weight Stable Diffusion pipelines of the real architectures, built offline.

They are saved with ``save_pretrained`` and then loaded like any real checkpoint, so every stage
runs through the same ``from_pretrained`` path on a CPU in seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from selma.io import write_folder
from selma.models.portable_init import portable_init

TINY_SEED = 0
TINY_WEIGHTS = 2
"""The version of the tiny models' weights: raised whenever a change here changes their bytes
(2: drawn by :func:`~selma.models.portable_init.portable_init`, the same on every machine)."""


def _text_encoder(vocab_size: int, projection: bool = False) -> object:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _vae() -> object:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )


def build_tiny_pipeline(family: str, prediction_type: str = "epsilon") -> object:
    """A random-weight pipeline of ``family`` (sd1, sd2 or sdxl) at 32 px (latents 16 px), the same
    weights on every machine.
    """
    import torch
    from diffusers import (
        DDIMScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    from selma.models.tokenizer import byte_level_clip_tokenizer

    torch.manual_seed(TINY_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = byte_level_clip_tokenizer(Path(tmp))
    vocab = len(tokenizer)
    common = dict(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    scheduler_kwargs = dict(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type=prediction_type
    )
    if family == "sdxl":
        unet = UNet2DConditionModel(
            **common,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + pooled text 32
            cross_attention_dim=64,  # both text encoders' hidden states, concatenated
        )
        pipe = StableDiffusionXLPipeline(
            vae=_vae(),
            text_encoder=_text_encoder(vocab),
            text_encoder_2=_text_encoder(vocab, projection=True),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=EulerDiscreteScheduler(**scheduler_kwargs, timestep_spacing="leading", steps_offset=1),
        )
        return _portable(pipe, family)
    if family not in ("sd1", "sd2"):
        raise ValueError(f"unknown model family {family!r}")
    unet = UNet2DConditionModel(
        **common,
        cross_attention_dim=32,
        attention_head_dim=8 if family == "sd1" else (2, 4),
        use_linear_projection=family == "sd2",
    )
    scheduler = (
        PNDMScheduler(**scheduler_kwargs, skip_prk_steps=True, steps_offset=1)
        if family == "sd1"
        else DDIMScheduler(**scheduler_kwargs, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    )
    pipe = StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=_text_encoder(vocab),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return _portable(pipe, family)


def _portable(pipe: object, family: str) -> object:
    """``pipe`` with every model component's random weights redrawn by :func:`portable_init`."""
    import torch

    for name, component in pipe.components.items():  # type: ignore[attr-defined]
        if isinstance(component, torch.nn.Module):
            portable_init(component, f"tiny-{family}:{name}")
    return pipe


def save_tiny_pipeline(family: str, prediction_type: str, target: Path) -> Path:
    """Build a tiny pipeline and ``save_pretrained`` it (safetensors) into ``target`` atomically: the same
    bytes on every machine (:func:`~selma.models.portable_init.portable_init`).
    """
    pipe = build_tiny_pipeline(family, prediction_type)
    return write_folder(target, lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True))
