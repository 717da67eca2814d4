"""selma-bench's native ImageReward and HPS against the official packages, on shared random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

PROMPTS = [
    "a red cat sitting on a wooden table",
    "Two  DOGS playing in the snow &amp;amp; rain",  # open_clip's cleaning: whitespace, HTML entities, case
    "a lighthouse at night",
]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    shapes = [(256, 256), (300, 240), (240, 320)]  # square, landscape, portrait: resize, crop and pad paths
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in shapes]


@pytest.fixture(scope="module")
def bert_vocab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = sorted({w for p in PROMPTS for w in p.split()})
    directory = tmp_path_factory.mktemp("bert")
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return directory


def test_imagereward_matches_the_official_model(
    bert_vocab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ImageReward.models.BLIP.blip as blip
    import ImageReward.models.BLIP.blip_pretrain as blip_pretrain
    from ImageReward.ImageReward import ImageReward
    from transformers import BertTokenizer

    from selma.harness.metrics.imagereward import build_imagereward

    def local_tokenizer():
        tokenizer = BertTokenizer.from_pretrained(str(bert_vocab))
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        tokenizer.enc_token_id = tokenizer.additional_special_tokens_ids[0]
        return tokenizer

    monkeypatch.setattr(blip, "init_tokenizer", local_tokenizer)
    monkeypatch.setattr(blip_pretrain, "init_tokenizer", local_tokenizer)
    vocab_size = len(local_tokenizer())
    med = {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 768,
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "model_type": "bert",
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": vocab_size,
        "encoder_width": 1024,
        "add_cross_attention": True,
    }
    (tmp_path / "med_config.json").write_text(json.dumps(med))
    torch.manual_seed(0)
    official = ImageReward(med_config=str(tmp_path / "med_config.json"), device="cpu").eval()
    with torch.no_grad():  # a head whose output depends on the features (the default init is nearly flat)
        for layer in official.mlp.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, layer.in_features**-0.5)
                layer.bias.normal_(0, 0.1)
    torch.save(official.state_dict(), tmp_path / "ImageReward.pt")
    paths = {
        "checkpoint": tmp_path / "ImageReward.pt",
        "med_config": tmp_path / "med_config.json",
        "tokenizer": bert_vocab,
    }
    ours = build_imagereward({role: str(path) for role, path in paths.items()})
    images = _images()
    with torch.no_grad():
        reference = [official.score(p, im) for p, im in zip(PROMPTS, images, strict=True)]
    native = ours.score(images, PROMPTS)
    assert native == pytest.approx(reference, abs=1e-5)
    assert max(reference) - min(reference) > 1e-2  # the comparison is not of constants


@pytest.mark.parametrize("version", ["2", "2.1"])
def test_hps_matches_the_official_model(tmp_path: Path, version: str) -> None:
    import hpsv2
    from hpsv2.src.open_clip import create_model_and_transforms, factory, get_tokenizer

    from selma.harness.metrics.clip_scores import build_hps_v2, build_hps_v21
    from selma.models.tokenizer import write_clip_vocab_from_bpe

    config = {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 16, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
    }
    factory._MODEL_CONFIGS["tiny-hps"] = config
    torch.manual_seed(1)
    model, _, preprocess_val = create_model_and_transforms(  # as hpsv2/img_score.py and evaluation.py build it
        "tiny-hps", None, precision="amp", device="cpu", output_dict=True, light_augmentation=True
    )
    model.eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "hps.pt")
    bpe = Path(hpsv2.__file__).parent / "src" / "open_clip" / "bpe_simple_vocab_16e6.txt.gz"
    vocab, merges = write_clip_vocab_from_bpe(bpe, tmp_path / "tok")
    from transformers import CLIPTokenizer

    CLIPTokenizer(str(vocab), str(merges)).save_pretrained(tmp_path / "tok")
    build = build_hps_v2 if version == "2" else build_hps_v21
    ours = build({"checkpoint": str(tmp_path / "hps.pt"), "processor": str(tmp_path / "tok")}, config=config)

    tokenizer = get_tokenizer("tiny-hps")
    images = _images()
    reference = []
    with torch.no_grad():
        for prompt, image in zip(PROMPTS, images, strict=True):  # hpsv2/img_score.py's computation
            outputs = model(preprocess_val(image).unsqueeze(0), tokenizer([prompt]))
            logits = outputs["image_features"] @ outputs["text_features"].T
            reference.append(float(torch.diagonal(logits)[0]))
    assert [s / 100 for s in ours.score(images, PROMPTS)] == pytest.approx(reference, abs=1e-5)
    for prompt in PROMPTS:  # open_clip's cleaning (ftfy, HTML unescaped twice, whitespace, lower case)
        expected = [i for i in tokenizer([prompt])[0].tolist() if i]
        assert ours.tokenizer(ours.clean_text(prompt)).input_ids == expected
