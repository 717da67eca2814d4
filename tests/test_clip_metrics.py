from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from selma.harness.metrics.base import metrics
from selma.harness.metrics.clip_scores import build_hps_v21, build_pickscore
from selma.harness.metrics.open_clip_convert import convert_open_clip_state_dict
from selma.harness.metrics.tiny import TINY_OPEN_CLIP


def _images() -> list[Any]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)) for _ in range(3)]


def test_pickscore_is_logit_scale_times_cosine(tiny_clip: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    metric = build_pickscore({"model": str(tiny_clip), "processor": str(tiny_clip)})
    images, prompts = _images(), ["a red cat", "two dogs", "a tree " * 40]
    scores = metric.score(images, prompts)
    model, processor = CLIPModel.from_pretrained(tiny_clip), CLIPProcessor.from_pretrained(tiny_clip)
    inputs = processor(text=prompts, images=images, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits_per_image  # logit_scale.exp() x cosine, transformers' own forward
    assert scores == pytest.approx(torch.diagonal(logits).tolist(), abs=1e-4)
    probabilities = metric.preference(images, "a red cat")
    row = torch.softmax(
        model(**processor(text=["a red cat"], images=images, return_tensors="pt")).logits_per_text[0], 0
    )
    assert probabilities == pytest.approx(row.tolist(), abs=1e-5) and sum(probabilities) == pytest.approx(1.0)


def _to_open_clip(model: Any) -> dict[str, torch.Tensor]:
    """The inverse key mapping, written out independently of the converter."""
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for tower, prefix in (("vision_model", "visual.transformer"), ("text_model", "transformer")):
        layers = {int(k.split(".")[3]) for k in state if k.startswith(f"{tower}.encoder.layers.")}
        for i in layers:
            src, dst = f"{tower}.encoder.layers.{i}", f"{prefix}.resblocks.{i}"
            for kind in ("weight", "bias"):
                out[f"{dst}.attn.in_proj_{kind}"] = torch.cat(
                    [state[f"{src}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                )
                out[f"{dst}.attn.out_proj.{kind}"] = state[f"{src}.self_attn.out_proj.{kind}"]
                out[f"{dst}.ln_1.{kind}"] = state[f"{src}.layer_norm1.{kind}"]
                out[f"{dst}.ln_2.{kind}"] = state[f"{src}.layer_norm2.{kind}"]
                out[f"{dst}.mlp.c_fc.{kind}"] = state[f"{src}.mlp.fc1.{kind}"]
                out[f"{dst}.mlp.c_proj.{kind}"] = state[f"{src}.mlp.fc2.{kind}"]
    for kind in ("weight", "bias"):
        out[f"visual.ln_pre.{kind}"] = state[f"vision_model.pre_layrnorm.{kind}"]
        out[f"visual.ln_post.{kind}"] = state[f"vision_model.post_layernorm.{kind}"]
        out[f"ln_final.{kind}"] = state[f"text_model.final_layer_norm.{kind}"]
    out["visual.conv1.weight"] = state["vision_model.embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = state["vision_model.embeddings.class_embedding"]
    out["visual.positional_embedding"] = state["vision_model.embeddings.position_embedding.weight"]
    out["visual.proj"] = state["visual_projection.weight"].t()
    out["token_embedding.weight"] = state["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = state["text_model.embeddings.position_embedding.weight"]
    out["text_projection"] = state["text_projection.weight"].t()
    out["logit_scale"] = state["logit_scale"]
    return out


def test_hps_converter_and_x100_convention(tiny_clip: Path, tmp_path: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_clip)
    open_clip_state = _to_open_clip(model)
    converted = convert_open_clip_state_dict({f"module.{k}": v for k, v in open_clip_state.items()})
    reference = {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    assert converted.keys() == reference.keys()
    assert all(torch.equal(converted[k], reference[k]) for k in reference)
    torch.save(open_clip_state, tmp_path / "hps.pt")
    metric = build_hps_v21({"checkpoint": str(tmp_path / "hps.pt"), "processor": str(tiny_clip)}, config=TINY_OPEN_CLIP)
    size = TINY_OPEN_CLIP["vision_cfg"]["image_size"]  # square images at the model's size: no resize, no padding
    images, prompts = [im.crop((0, 0, size, size)) for im in _images()], ["a red cat", "two dogs", "a tree"]
    processor = CLIPProcessor.from_pretrained(tiny_clip)
    with torch.no_grad():
        logits = model(**processor(text=prompts, images=images, padding=True, return_tensors="pt")).logits_per_image
    cosine = torch.diagonal(logits) / model.logit_scale.exp()
    assert metric.score(images, prompts) == pytest.approx((100 * cosine).tolist(), abs=1e-4)
    assert metric.info.name == "hpsv2.1" and "not comparable" in metric.info.notes


def test_wrong_shape_checkpoint_is_refused(tiny_clip: Path, tmp_path: Path) -> None:
    from transformers import CLIPModel

    state = _to_open_clip(CLIPModel.from_pretrained(tiny_clip))
    state["visual.proj"] = torch.zeros(8, 8)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="wrong shape"):
        build_hps_v21({"checkpoint": str(tmp_path / "bad.pt"), "processor": str(tiny_clip)}, config=TINY_OPEN_CLIP)
    del state["visual.proj"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="not an open_clip checkpoint of this architecture"):
        build_hps_v21({"checkpoint": str(tmp_path / "missing.pt"), "processor": str(tiny_clip)}, config=TINY_OPEN_CLIP)


def test_registry_lists_clip_metrics() -> None:
    assert {"pickscore", "hpsv2", "hpsv2.1"} <= set(metrics.names())
    assert metrics.get("pickscore").info.checkpoints["model"] == "yuvalkirstain/PickScore_v1"


def test_bad_inputs_to_a_scorer(tiny_clip: Path) -> None:
    metric = build_pickscore({"model": str(tiny_clip), "processor": str(tiny_clip)})
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        metric.score(_images()[:2], ["a cat", "  "])
    with pytest.raises(ValueError, match="3 images for 2 prompts"):
        metric.score(_images(), ["a cat", "a dog"])
    metric.score(_images()[:1], ["a very long prompt " * 10])
    assert metric.notes == ["pickscore: 1 prompt(s) longer than 77 tokens were truncated (first: #0)"]


def test_image_modes_become_8_bit_rgb(tmp_path: Path) -> None:
    from selma.errors import DataInputError
    from selma.harness.metrics.images import load_rgb

    gray = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    Image.fromarray(gray).save(tmp_path / "i16.png")
    loaded = np.asarray(load_rgb(tmp_path / "i16.png"))
    assert loaded.shape == (8, 8, 3) and loaded[..., 0].max() == round(63000 / 65535 * 255)
    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    assert np.asarray(load_rgb(tmp_path / "rgba.png"))[0, 0].tolist() == [10, 20, 30]
    Image.new("L", (4, 4), 77).save(tmp_path / "l.png")
    assert np.asarray(load_rgb(tmp_path / "l.png"))[0, 0].tolist() == [77, 77, 77]
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataInputError, match="empty.png: not a readable image"):
        load_rgb(tmp_path / "empty.png")


def test_hps_image_transform_is_resize_max_size_with_zero_padding() -> None:
    from selma.harness.metrics.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, resize_max_size_pixels

    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 60, 3), dtype=np.uint8))  # 60 x 30
    pixels = resize_max_size_pixels([image], 20)[0]
    assert pixels.shape == (3, 20, 20)
    mean, std = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1), torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    raw = pixels * std + mean
    # the longer side scaled to 20 (bicubic, antialiased, on the float tensor), the shorter padded with
    # zeros to a centred square: pad_h // 2 rows on top, the rest below
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    resized = torch.nn.functional.interpolate(tensor, size=(10, 20), mode="bicubic", antialias=True)[0]
    assert torch.allclose(raw[:, 5:15], resized, atol=1e-5)
    assert torch.allclose(raw[:, :5], torch.zeros(3, 5, 20), atol=1e-6)
    assert torch.allclose(raw[:, 15:], torch.zeros(3, 5, 20), atol=1e-6)


def test_hps_text_is_cleaned_as_open_clip_does() -> None:
    from selma.harness.metrics.preprocess import open_clip_clean

    assert open_clip_clean("  Two  DOGS\n playing &amp;amp; rain ") == "Two DOGS playing & rain"
    assert open_clip_clean("caf\u00c3\u00a9 au lait") == "caf\u00e9 au lait"  # ftfy repairs mojibake
