from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selma.harness.metrics.imagereward import MEAN, STD, build_imagereward, configs

MED = {
    "vocab_size": 14,
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
}
VISION = (48, 2, 4)  # width, depth, heads
WORDS = ["a", "red", "cat", "dog", "on"]


def _official_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our model's state dict renamed back to ImageReward.pt's names (written independently)."""
    out = {}
    for key, value in state.items():
        if key.startswith("text."):
            out["blip.text_encoder." + key[5:]] = value
        elif key.startswith("mlp."):
            out[key] = value
        else:
            name = key[len("vision.") :]
            name = name.replace("embeddings.class_embedding", "cls_token")
            name = name.replace("embeddings.position_embedding", "pos_embed")
            name = name.replace("embeddings.patch_embedding.", "patch_embed.proj.")
            name = name.replace("post_layernorm.", "norm.")
            name = re.sub(r"encoder\.layers\.(\d+)\.", r"blocks.\1.", name)
            name = name.replace("layer_norm1", "norm1").replace("layer_norm2", "norm2")
            name = name.replace("self_attn.qkv", "attn.qkv").replace("self_attn.projection", "attn.proj")
            out["blip.visual_encoder." + name] = value
    out["blip.vision_proj.weight"] = torch.zeros(4, VISION[0])  # ITC heads: present in the file, unused
    return out


@pytest.fixture
def checkpoint(tmp_path: Path) -> dict[str, str]:
    from selma.harness.metrics.imagereward import _torch_modules

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    (tmp_path / "med_config.json").write_text(json.dumps({**MED, "vocab_size": 5 + len(WORDS) + 2}))
    _, model_class = _torch_modules()
    torch.manual_seed(0)
    model = model_class(*configs({**MED, "vocab_size": 5 + len(WORDS) + 2}, VISION, 32))
    with torch.no_grad():
        for layer in model.mlp.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, layer.in_features**-0.5)
    torch.save(_official_names(model.state_dict()), tmp_path / "ImageReward.pt")
    return {
        "checkpoint": str(tmp_path / "ImageReward.pt"),
        "med_config": str(tmp_path / "med_config.json"),
        "tokenizer": str(tmp_path),
    }


def test_reward_convention_and_35_token_limit(checkpoint: dict[str, str]) -> None:
    metric = build_imagereward(checkpoint, vision=VISION, image_size=32)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(2)]
    prompts = ["a red cat", "a dog on a red cat " * 10]
    scores = metric.score(images, prompts)
    from selma.harness.metrics.preprocess import clip_pixels

    text = metric.tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    assert text.input_ids.shape == (2, 35)
    with torch.no_grad():
        image_tokens = metric.model.vision(pixel_values=clip_pixels(images, 32)).last_hidden_state
        hidden = metric.model.text(
            input_ids=text.input_ids, attention_mask=text.attention_mask, encoder_hidden_states=image_tokens
        ).last_hidden_state
        raw = metric.model.mlp(hidden[:, 0]).squeeze(-1)
    assert scores == pytest.approx(((raw - MEAN) / STD).tolist(), abs=1e-5)
    assert abs(scores[0] - scores[1]) > 1e-3


def test_wrong_checkpoint_is_refused(checkpoint: dict[str, str], tmp_path: Path) -> None:
    state = torch.load(checkpoint["checkpoint"])
    state["mlp.layers.0.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="wrong shape"):
        build_imagereward({**checkpoint, "checkpoint": str(tmp_path / "bad.pt")}, vision=VISION, image_size=32)
    del state["mlp.layers.0.weight"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="not an ImageReward checkpoint"):
        build_imagereward({**checkpoint, "checkpoint": str(tmp_path / "missing.pt")}, vision=VISION, image_size=32)
