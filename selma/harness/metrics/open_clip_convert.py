"""Converting an open_clip CLIP state dict (HPS v2/v2.1 checkpoints) into a transformers ``CLIPModel``.

Key mapping: open_clip's fused attention ``in_proj`` is split into q/k/v projections, the
projections (stored as ``x @ proj``) are transposed into linear weights, and the rest is renamed.
"""

from __future__ import annotations

import re
from typing import Any

# open_clip's model_configs/ViT-H-14.json (the HPS v2 backbone).
VIT_H_14 = {
    "embed_dim": 1024,
    "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24},
}

_RENAMES = [
    (r"^visual\.conv1\.weight$", "vision_model.embeddings.patch_embedding.weight"),
    (r"^visual\.class_embedding$", "vision_model.embeddings.class_embedding"),
    (r"^visual\.positional_embedding$", "vision_model.embeddings.position_embedding.weight"),
    (r"^visual\.ln_pre\.", "vision_model.pre_layrnorm."),
    (r"^visual\.ln_post\.", "vision_model.post_layernorm."),
    (r"^visual\.transformer\.resblocks\.(\d+)\.", r"vision_model.encoder.layers.\1."),
    (r"^token_embedding\.weight$", "text_model.embeddings.token_embedding.weight"),
    (r"^positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^ln_final\.", "text_model.final_layer_norm."),
    (r"^transformer\.resblocks\.(\d+)\.", r"text_model.encoder.layers.\1."),
    (r"^logit_scale$", "logit_scale"),
]
_BLOCK = [
    (r"\.ln_1\.", ".layer_norm1."),
    (r"\.ln_2\.", ".layer_norm2."),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."),
    (r"\.mlp\.c_proj\.", ".mlp.fc2."),
    (r"\.attn\.out_proj\.", ".self_attn.out_proj."),
]


def clip_config_from_open_clip(config: dict[str, Any]) -> Any:
    """A transformers ``CLIPConfig`` for an open_clip model config (``model_configs/*.json`` shape)."""
    from transformers import CLIPConfig

    vision, text = config["vision_cfg"], config["text_cfg"]
    mlp_ratio = vision.get("mlp_ratio", 4.0)
    vocab = text.get("vocab_size", 49408)
    return CLIPConfig(
        projection_dim=config["embed_dim"],
        vision_config={
            "hidden_size": vision["width"],
            "intermediate_size": int(vision["width"] * mlp_ratio),
            "num_hidden_layers": vision["layers"],
            "num_attention_heads": vision["width"] // vision.get("head_width", 64),
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
        },
        text_config={
            "vocab_size": vocab,
            "hidden_size": text["width"],
            "intermediate_size": int(text["width"] * text.get("mlp_ratio", 4.0)),
            "num_hidden_layers": text["layers"],
            "num_attention_heads": text["heads"],
            "max_position_embeddings": text.get("context_length", 77),
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
            "bos_token_id": vocab - 2,
            "eos_token_id": vocab - 1,
            "pad_token_id": 0,
        },
    )


def convert_open_clip_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Rename and reshape an open_clip state dict into ``CLIPModel`` keys."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key == "visual.proj":
            out["visual_projection.weight"] = value.t().contiguous()
            continue
        if key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
            continue
        if key == "attn_mask":
            continue
        new = key
        for pattern, repl in _RENAMES:
            new, count = re.subn(pattern, repl, new)
            if count:
                break
        else:
            raise ValueError(f"unexpected open_clip key {key!r}")
        for pattern, repl in _BLOCK:
            new = re.sub(pattern, repl, new)
        if new.endswith("attn.in_proj_weight") or new.endswith("attn.in_proj_bias"):
            prefix, kind = new.rsplit(".attn.in_proj_", 1)
            for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                out[f"{prefix}.self_attn.{name}_proj.{kind}"] = part.contiguous()
            continue
        out[new] = value
    return out


def load_open_clip_checkpoint(path: str, config: dict[str, Any] | None = None) -> Any:
    """A ``CLIPModel`` with the weights of an open_clip checkpoint (a ``state_dict`` file)."""
    import torch
    from transformers import CLIPModel

    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    model = CLIPModel(clip_config_from_open_clip(config or VIT_H_14))
    from selma.harness.metrics.base import load_converted_state

    return load_converted_state(
        model, convert_open_clip_state_dict(state), path, "an open_clip checkpoint of this architecture"
    )
