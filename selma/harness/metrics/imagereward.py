"""ImageReward on transformers BLIP modules, from the official ``ImageReward.pt`` state dict.

The official model is BLIP's ViT-L/16 image encoder, a BERT text encoder that cross-attends to the
image tokens, and an MLP (768→1024→128→64→16→1) on the text [CLS] feature. Text: the
``bert-base-uncased`` tokenizer with BLIP's two added tokens, padded/truncated to 35 tokens.
Image: bicubic resize to 224, centre crop, CLIP mean/std. Output (r − 0.16717362830052426) /
1.0333394966054072. The weights are renamed onto ``BlipVisionModel`` and ``BlipTextModel``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selma.harness.metrics.base import (
    MetricInfo,
    batched,
    check_pairs,
    load_converted_state,
    register_metric,
    truncation_note,
)

MEAN, STD = 0.16717362830052426, 1.0333394966054072
MAX_TOKENS = 35
IMAGE_SIZE = 224

INFO = MetricInfo(
    name="imagereward",
    display_name="ImageReward",
    convention=f"BLIP ViT-L/16 + BERT cross-attention + MLP head; 35-token text; (r - {MEAN}) / {STD}",
    checkpoints={
        "checkpoint": "THUDM/ImageReward/ImageReward.pt",
        "med_config": "THUDM/ImageReward/med_config.json",
        "tokenizer": "bert-base-uncased",
    },
    reference="THUDM/ImageReward @ c1392c6: ImageReward/ImageReward.py",
)


def _torch_modules() -> tuple[Any, Any]:
    import torch

    class RewardHead(torch.nn.Module):
        """The official MLP, with the same layer indices (dropouts are identity at inference)."""

        def __init__(self, width: int) -> None:
            super().__init__()
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(width, 1024),
                torch.nn.Dropout(0.2),
                torch.nn.Linear(1024, 128),
                torch.nn.Dropout(0.2),
                torch.nn.Linear(128, 64),
                torch.nn.Dropout(0.1),
                torch.nn.Linear(64, 16),
                torch.nn.Linear(16, 1),
            )

        def forward(self, features: Any) -> Any:
            return self.layers(features)

    class ImageRewardModel(torch.nn.Module):
        """BLIP vision and text encoders with the reward head."""

        def __init__(self, vision_config: Any, text_config: Any) -> None:
            from transformers.models.blip.modeling_blip import BlipVisionModel
            from transformers.models.blip.modeling_blip_text import BlipTextModel

            super().__init__()
            self.vision = BlipVisionModel(vision_config)
            self.text = BlipTextModel(text_config, add_pooling_layer=False)
            self.mlp = RewardHead(text_config.hidden_size)

        def forward(self, pixel_values: Any, input_ids: Any, attention_mask: Any) -> Any:
            image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state
            image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
            text = self.text(
                input_ids=input_ids,
                attention_mask=attention_mask,
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=image_mask,
            ).last_hidden_state
            return (self.mlp(text[:, 0, :].float()).squeeze(-1) - MEAN) / STD

    return RewardHead, ImageRewardModel


def configs(med_config: dict[str, Any], vision: str = "large", image_size: int = IMAGE_SIZE) -> tuple[Any, Any]:
    """BLIP vision and text configs matching ``BLIP_Pretrain(vit=vision)`` and a BLIP ``med_config``."""
    from transformers import BlipTextConfig, BlipVisionConfig

    width, depth, heads = (
        {"large": (1024, 24, 16), "base": (768, 12, 12)}[vision] if isinstance(vision, str) else vision
    )
    vision_config = BlipVisionConfig(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=16,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
    )
    text_config = BlipTextConfig(
        vocab_size=med_config["vocab_size"],
        hidden_size=med_config["hidden_size"],
        encoder_hidden_size=width,
        intermediate_size=med_config["intermediate_size"],
        num_hidden_layers=med_config["num_hidden_layers"],
        num_attention_heads=med_config["num_attention_heads"],
        max_position_embeddings=med_config["max_position_embeddings"],
        layer_norm_eps=med_config.get("layer_norm_eps", 1e-12),
        hidden_act=med_config.get("hidden_act", "gelu"),
        pad_token_id=med_config.get("pad_token_id", 0),
    )
    return vision_config, text_config


_VISION = [
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^norm\.", "post_layernorm."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
]


def convert_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Rename an ``ImageReward.pt`` state dict onto :class:`ImageRewardModel` keys."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("blip.visual_encoder."):
            name = key.removeprefix("blip.visual_encoder.")
            for pattern, repl in _VISION:
                name, count = re.subn(pattern, repl, name)
                if count:
                    break
            else:
                raise ValueError(f"unexpected ImageReward vision key {key!r}")
            out[f"vision.{name}"] = value
        elif key.startswith("blip.text_encoder."):
            if "position_ids" not in key:
                out[f"text.{key.removeprefix('blip.text_encoder.')}"] = value
        elif key.startswith("mlp."):
            out[key] = value
        # blip.vision_proj / blip.text_proj (the ITC heads) are not used by the reward
    return out


class ImageRewardScorer:
    """Scores (image, prompt) pairs with the converted model, in batches."""

    def __init__(self, model: Any, tokenizer: Any, *, device: str = "cpu", batch_size: int = 8) -> None:
        self.info = INFO
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.device, self.batch_size = device, batch_size
        self.notes: list[str] = []

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
        """One reward per pair (the official output scale)."""
        import torch

        from selma.harness.metrics.preprocess import clip_pixels

        check_pairs(images, prompts)
        note = truncation_note(self.info.name, self.tokenizer, prompts, MAX_TOKENS)
        if note:
            self.notes.append(note)
        scores: list[float] = []
        with torch.no_grad():
            for chunk in batched(list(range(len(images))), self.batch_size):
                size = self.model.vision.config.image_size
                pixels = clip_pixels([images[i] for i in chunk], size).to(self.device)
                text = self.tokenizer(
                    [prompts[i] for i in chunk],
                    padding="max_length",
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                ).to(self.device)
                scores.extend(self.model(pixels, text.input_ids, text.attention_mask).tolist())
        return scores


def blip_tokenizer(path: str) -> Any:
    """``bert-base-uncased`` with the two tokens BLIP adds (``[DEC]``, ``[ENC]``)."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(path)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def load_imagereward(
    checkpoint: str, med_config: str, tokenizer: str, *, vision: Any = "large", image_size: int = IMAGE_SIZE
) -> tuple[Any, Any]:
    """The converted model and its tokenizer; a checkpoint of the wrong shape is a clear error."""
    import torch

    _, model_class = _torch_modules()
    vision_config, text_config = configs(json.loads(Path(med_config).read_text()), vision, image_size)
    model = model_class(vision_config, text_config)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    load_converted_state(model, convert_state_dict(state), checkpoint, "an ImageReward checkpoint")
    return model, blip_tokenizer(tokenizer)


@register_metric(INFO)
def build_imagereward(
    checkpoints: dict[str, str] | None = None, device: str = "cpu", **kwargs: Any
) -> ImageRewardScorer:
    """ImageReward from local paths of ``ImageReward.pt``, ``med_config.json`` and a BERT tokenizer."""
    paths = {**INFO.checkpoints, **(checkpoints or {})}
    model, tokenizer = load_imagereward(paths["checkpoint"], paths["med_config"], paths["tokenizer"], **kwargs)
    return ImageRewardScorer(model, tokenizer, device=device)
