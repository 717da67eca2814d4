from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from selma.suites import DataLocator

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SELMA_BENCH_DATA") or REPO.parent / "shared" / "data")
ANSWERS = DATA / "dsg" / "vqa_answers_release"

if not (DATA / "dsg" / "dsg-1k-anns.csv").is_file():
    raise RuntimeError(f"benchmark data not found at {DATA}: set SELMA_BENCH_DATA to ../shared/data")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs offline, in its own working directory, with its own cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELMA_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SELMA_BENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.delenv("SELMA_BENCH_DATA", raising=False)
    monkeypatch.delenv("SELMA_BENCH_MIRROR", raising=False)


@pytest.fixture
def locator() -> DataLocator:
    return DataLocator.from_env(DATA, offline=True)


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A writable copy of the small DSG and TIFA files, for tests that damage them."""
    target = tmp_path / "data"
    for sub in ("dsg", "tifa"):
        shutil.copytree(DATA / sub, target / sub, ignore=shutil.ignore_patterns("vqa_answers_release"))
    return target


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three tiny random-weight families, saved once per test session."""
    from selma.models.tiny import save_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny")
    families = {"tiny-sd1": ("sd1", "epsilon"), "tiny-sd2": ("sd2", "v_prediction"), "tiny-sdxl": ("sdxl", "epsilon")}
    return {name: save_tiny_pipeline(family, pred, root / name) for name, (family, pred) in families.items()}


TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 30, "layers": 2, "width": 32, "head_width": 8, "patch_size": 6},
    "text_cfg": {"context_length": 77, "vocab_size": 514, "width": 32, "heads": 4, "layers": 2},
}
VQA_WORDS = ["yes", "no", "is", "there", "a", "cat", "red", "dog", "two", "?"]


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny CLIPModel (the open_clip config above) with a local processor."""
    import numpy as np
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    from selma.metrics.open_clip_convert import clip_config_from_open_clip
    from selma.models.tokenizer import byte_level_clip_tokenizer

    root = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    model = CLIPModel(clip_config_from_open_clip(TINY_OPEN_CLIP))
    with torch.no_grad():
        model.logit_scale.fill_(np.log(100.0) - 0.3)
    model.save_pretrained(root)
    tokenizer = byte_level_clip_tokenizer(root / "vocab")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BlipForQuestionAnswering with its processor and a local BERT vocabulary."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    root = tmp_path_factory.mktemp("blip")
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VQA_WORDS]) + "\n")
    tokenizer = BertTokenizer(str(root / "vocab.txt"))
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        encoder_hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=2,
        sep_token_id=3,
        pad_token_id=0,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision)).save_pretrained(root)
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    ).save_pretrained(root)
    return root
